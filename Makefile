# The README's two commands:  `make demo`  and  `make test`.
# Both create the project-local environment .venv (Python packages only; the corpus
# builder fetches Debian SoundFont packages itself with apt-get download).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: cli-doc demo app app-screenshots test lint bench bench-frontend bench-pedalboard models-doc corpus train export examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Runtime only (numpy, onnxruntime, pluggy, soundfile, soxr) + matplotlib for --plot.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[plot]'
	touch $@

# Everything the tests need: runtime, training (TensorFlow, tf2onnx, pedalboard), dev tools,
# the plugins in plugins/ (baseline model, pedalboard adapters, the condition analyzer with
# Praat's parselmouth, which only its tests use, the web app with its browser-test tools:
# Playwright, pypdf), and tinysoundfont (--no-deps: its pyaudio requirement is for playback only
# and does not build). The app's browser test drives Debian's chromium (never a downloaded
# browser): installed with apt-get when missing (as root, or through sudo).
# plugins/instrunet-ray brings ray[data] (measured here: ~45-70 s and ~600 MB, less than TensorFlow).
# examples/node: onnxruntime-node for the waveform-in example's test (npm ci; the package's
# postinstall download of CUDA binaries is skipped, its CPU binaries are in the npm package).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEV_PLUGINS := plugins/instrunet-baseline plugins/instrunet-pedalboard 'plugins/instrunet-condition[test]' \
  'plugins/instrunet-app[test]' plugins/instrunet-ray plugins/instrunet-large
$(VENV)/.dev: pyproject.toml $(wildcard plugins/*/pyproject.toml) examples/node/package-lock.json | $(BIN)/python
	$(PIP) install -e '.[plot,train,dev]' $(addprefix -e ,$(DEV_PLUGINS))
	$(PIP) install --no-deps tinysoundfont
	if command -v npm >/dev/null; then cd examples/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error; \
	else echo "note: npm not found; tests/test_waveform.py skips the Node.js example"; fi
	command -v chromium >/dev/null || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }
	touch $@

# The web app alone: the runtime, the condition analyzer and the app plugin (no training packages).
$(VENV)/.app: pyproject.toml plugins/instrunet-condition/pyproject.toml plugins/instrunet-app/pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[plot]' -e plugins/instrunet-condition -e plugins/instrunet-app
	touch $@

# Starts the web app on http://127.0.0.1:8501 (Ctrl-C stops it).
app: $(VENV)/.app
	$(BIN)/instrunet-app

# docs/app_result.png (1280 px), docs/app_phone.png (390 px), docs/app_report.png (the PDF's first
# page) and docs/app_report_pages.png (every page side by side; pdftoppm is in poppler-utils),
# from the browser test; quantised to 256 colours to keep them small.
app-screenshots: $(VENV)/.dev
	command -v pdftoppm >/dev/null || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y poppler-utils; }
	rm -rf out/app
	INSTRUNET_APP_SCREENSHOTS=out/app $(BIN)/python -m pytest -q tests/test_app_browser.py
	pdftoppm -png -r 80 -f 1 -l 1 -singlefile out/app/app_report.pdf out/app/app_report
	pdftoppm -png -r 40 out/app/app_report.pdf out/app/page
	$(BIN)/python -c "import glob; from PIL import Image; p = [Image.open(f) for f in sorted(glob.glob('out/app/page-*.png'))]; \
	  o = Image.new('RGB', (sum(i.width + 8 for i in p), max(i.height for i in p)), 'white'); \
	  [o.paste(i, (sum(j.width + 8 for j in p[:k]), 0)) for k, i in enumerate(p)]; o.save('out/app/app_report_pages.png')"
	$(BIN)/python -c "import sys; from PIL import Image; [Image.open(f'out/app/{n}.png').convert('RGB').quantize(256).save(f'docs/{n}.png', optimize=True) for n in ('app_result', 'app_phone', 'app_report', 'app_report_pages')]"

demo: $(VENV)/.runtime
	$(BIN)/instrunet classify examples/solo_flute.wav examples/ensemble.flac
	$(BIN)/instrunet analyze examples/ensemble.flac --json out/ensemble.json --plot out/ensemble.png

# CI runs this: lint, format and types on every package (pyproject.toml names them), then the tests.
test: lint
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy

# The seed's path uses the trained seed_v3 when runs/seed_v3 has one (else an untrained copy:
# same speed, different weights).
SEED_KERAS := runs/seed_v3/seed_v3.keras
# The previous default, family 2.1.0, is measured beside the default in the same run (--versus);
# family-compact (the default's network with its own thresholds) on its own
# (docs/benchmarks-compact.md); about 3-5 minutes each.
SEED_ARG = $(if $(wildcard $(SEED_KERAS)),--seed-model $(SEED_KERAS))
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks.run --out docs/benchmarks.md --versus family@2.1.0 $(SEED_ARG)
	$(BIN)/python -m benchmarks.run --model family-compact --out docs/benchmarks-compact.md $(SEED_ARG)

# docs/speed.md's front-end section: numpy and in-graph front ends side by side, one window.
bench-frontend: $(VENV)/.dev
	$(BIN)/python -m benchmarks.frontend --doc docs/speed.md

# docs/cli.md's "Help" section from the parser (tests/test_cli.py checks it is current).
cli-doc: $(VENV)/.runtime
	$(BIN)/python docs/cli_help.py

# docs/pedalboard.md's measurements: process_file on a one-hour file (peak RSS, time).
bench-pedalboard: $(VENV)/.dev
	$(BIN)/python -m benchmarks.pedalboard_file --doc docs/pedalboard.md

# docs/models.md from the committed training reports and the artifacts (seed_v3 is exported
# into runs/, not shipped); measures every model's latency side by side in one run.
models-doc: $(VENV)/.dev
	$(BIN)/python -m benchmarks.models_table --out docs/models.md

# SOURCES: mirror folder of the real libraries in training/sources.lock.json (adds them and the
# dev split; `python -m training.sources fetch --sources DIR` fills it on a machine with internet).
SOURCES ?=
corpus: $(VENV)/.dev
	$(BIN)/python -m training.corpus build --out data/corpus $(if $(SOURCES),--sources $(SOURCES))

train: $(VENV)/.dev
	$(BIN)/python -m training.train --model default --corpus data/corpus --out runs/default --report-dir runs/default/report

examples: $(VENV)/.dev
	$(BIN)/python -m training.examples --out examples

clean:
	rm -rf $(VENV) out .pytest_cache
