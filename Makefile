# The README's two commands:  `make demo`  and  `make test`.
# Both create the project-local environment .venv (Python packages only; the corpus
# builder fetches Debian SoundFont packages itself with apt-get download).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: demo test lint bench models-doc corpus train export examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Runtime only (numpy, onnxruntime, pluggy, soundfile, soxr) + matplotlib for --plot.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[plot]'
	touch $@

# Everything the tests need: runtime, training (TensorFlow, tf2onnx, pedalboard), dev tools,
# the baseline model plugin, and tinysoundfont (--no-deps: its pyaudio requirement is for
# playback only and does not build).
$(VENV)/.dev: pyproject.toml plugins/instrunet-baseline/pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[plot,train,dev]' -e plugins/instrunet-baseline
	$(PIP) install --no-deps tinysoundfont
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/instrunet classify examples/solo_flute.wav examples/ensemble.flac
	$(BIN)/instrunet analyze examples/ensemble.flac --json out/ensemble.json --plot out/ensemble.png

test: $(VENV)/.dev
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check instrunet_core training export tests benchmarks plugins

# The seed's path uses the trained seed_v3 when runs/seed_v3 has one (else an untrained copy:
# same speed, different weights).
SEED_KERAS := runs/seed_v3/seed_v3.keras
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.run --out docs/benchmarks.md $(if $(wildcard $(SEED_KERAS)),--seed-model $(SEED_KERAS))

# docs/models.md from the committed training reports and the artifacts (seed_v3 is exported
# into runs/, not shipped); measures every model's latency side by side in one run.
models-doc: $(VENV)/.dev
	$(BIN)/python -m benchmarks.models_table \
	  family-2.0.0=training/reports/default/2.0.0/metrics.json:instrunet_core/models/family/2.0.0 \
	  family-1.0.0=training/reports/default/1.0.0/metrics.json:instrunet_core/models/family/1.0.0 \
	  baseline=training/reports/baseline/1.0.0/metrics.json:plugins/instrunet-baseline/src/instrunet_baseline/models/baseline/1.0.0 \
	  seed_v3=training/reports/seed_v3/1.0.0/metrics.json:runs/seed_v3/artifact/seed_v3/1.0.0 \
	  --out docs/models.md --intro benchmarks/models_intro.md --outro benchmarks/models_outro.md \
	  --experiments training/reports/experiments/*

# SOURCES: mirror folder of the real libraries in training/sources.lock.json (adds them and the
# dev split; `python -m training.sources fetch --sources DIR` fills it on a machine with internet).
SOURCES ?=
corpus: $(VENV)/.dev
	$(BIN)/python -m training.corpus build --out data/corpus $(if $(SOURCES),--sources $(SOURCES))

train: $(VENV)/.dev
	$(BIN)/python -m training.train --model default --corpus data/corpus --out runs/default

examples: $(VENV)/.dev
	$(BIN)/python -m training.examples --out examples

clean:
	rm -rf $(VENV) out .pytest_cache
