"""Build an NSynth-format corpus from the sampled-instrument SoundFonts that Debian ships.

Usage::

    python -m training.corpus build --out data/corpus [--limit N] [--workers 2] [--cache cache] [--sources DIR]
    python -m training.corpus stats data/corpus

Each *instrument* is one (SoundFont, General MIDI program) pair. Every instrument is
rendered over MIDI 21-108 (bounded by the preset) at velocities 25/50/75/100/127:
3 s held + 1 s release, 22,050 Hz mono, peak-normalised, 16-bit WAV, written as
``<out>/<split>/audio/<note_str>.wav`` plus ``<out>/<split>/examples.json`` in NSynth's
schema (with extra keys ``soundfont``, ``program``, ``preset_name``, ``split``).

Splits are by instrument, never by note:

* ``test``  - every TimGM6mb instrument (genuinely different samples; never used to
  train or choose anything);
* ``valid`` - held-out (sample group, program) instruments, crossed: per family, a quarter
  of the programs is held out of the FluidR3 group and a different quarter out of the
  csound bank (:func:`held_out_programs`). FluidR3 and MuseScore General are one sample
  group (MuseScore reuses many FluidR3 samples), so a program is held out of both or of
  neither: a FluidR3 program in train with its MuseScore twin in valid would leak;
* ``train`` - the rest (every program reaches it through at least one sample group);
* ``dev``   - with ``--sources DIR``: whole real-recording libraries that training never
  sees (``split: dev`` in ``training/sources.lock.json``), to choose epochs and thresholds
  on real recordings. Real libraries marked ``train`` join the train split.

Real libraries (:mod:`training.sources`, rendered by :mod:`training.sfz` with their own key
and velocity mapping) are played as *clips*: single notes held 0.1-4 s, repeated notes and
short phrases, with each library's own release samples; trailing silence is trimmed.

The build is deterministic (the held-out programs come from a seeded draw), resumable
(finished instruments are recorded in ``<out>/.parts/`` and skipped on the next run) and
parallel over worker processes.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from instrunet_core.labels import FAMILIES

from .cli_checks import number_problems, write_json
from .nsynth import FAMILY_NAMES, SOURCE_NAMES, load_split, note_str
from .progress import progress_bar

SAMPLE_RATE = 22050
HOLD_S = 3.0
RELEASE_S = 1.0
PITCH_RANGE = (21, 108)
VELOCITIES = (25, 50, 75, 100, 127)
PEAK = 0.9  # peak after normalisation (-0.9 dBFS): headroom for int16
SILENT_PEAK = 1e-4  # renders quieter than -80 dBFS before normalisation are dropped
SPLITS = ("train", "valid", "test", "dev")
DEFAULT_SEED = 20261124
#: Version of the split rule (a corpus built under another rule is refused, not mixed).
SPLIT_RULE = "crossed-v2"
#: Real-library clips: velocities span this range; train renders about this many clips per instrument.
REAL_VELOCITY_RANGE = (30, 127)
REAL_TRAIN_CLIPS = 260
DEV_VELOCITIES = (60, 110)

#: General MIDI programs (0-based) per family. No synth variants.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "brass": tuple(range(56, 62)),
    "flute": tuple(range(72, 80)),
    "guitar": tuple(range(24, 31)),
    "keyboard": tuple(range(0, 8)),
    "mallet": tuple(range(8, 15)),
    "reed": tuple(range(64, 72)),
    "string": (40, 41, 42, 43, 44, 45, 48, 49, 110),
    "vocal": (52, 53),
}


@dataclasses.dataclass(frozen=True)
class SoundFont:
    key: str
    package: str
    path: str  # inside the package
    license: str
    sample_group: str  # fonts that share recorded samples share a group
    description: str
    #: The Debian package version the corpus is built from (``apt-get download package=version``).
    version: str = ""
    #: SHA-256 of the font file in that version: a font that differs is used, with a warning,
    #: and the corpus summary records it as not pinned (:func:`font_pins`).
    sha256: str = ""


SOUNDFONTS: tuple[SoundFont, ...] = (
    SoundFont(
        "fluidr3",
        "fluid-soundfont-gm",
        "usr/share/sounds/sf2/FluidR3_GM.sf2",
        "MIT",
        "fluidr3",
        "Fluid (R3) General MIDI SoundFont, Frank Wen",
        "3.1-5.3",
        "74594e8f4250680adf590507a306655a299935343583256f3b722c48a1bc1cb0",
    ),
    SoundFont(
        "musescore",
        "musescore-general-soundfont",
        "usr/share/sounds/sf3/MuseScore_General_Full.sf3",
        "MIT",
        "fluidr3",
        "MuseScore General (full), S. Christian Collins; reuses many FluidR3 samples",
        "0.2.1-1",
        "f9a37b36655f23e167c66ec91bef6097c8e99be29286219a54062919eb41aeae",
    ),
    SoundFont(
        "csound",
        "csound-soundfont",
        "usr/share/sounds/sf2/sf_GMbank.sf2",
        "public domain (Debian copyright of csound: 'Public Domain in its license field')",
        "csound",
        "sf_GMbank General MIDI bank shipped with csound",
        "1:6.18.1+dfsg-1",
        "9f39fc53bd3a1a69f13cb486838944eded358b3b6e8afbd6c1c2c33675b2034b",
    ),
    SoundFont(
        "timgm6mb",
        "timgm6mb-soundfont",
        "usr/share/sounds/sf2/TimGM6mb.sf2",
        "GPL-2",
        "timgm6mb",
        "TimGM6mb, Tim Brechbill; genuinely different samples",
        "1.3-5",
        "c5378b62028c920cb11e4803327983fee2f2cdff5dc89c708e39da417e51c854",
    ),
)
TEST_FONT = "timgm6mb"


@dataclasses.dataclass(frozen=True)
class Instrument:
    instrument: int
    instrument_str: str
    family: str
    font: str
    program: int
    split: str


# --------------------------------------------------------------------------- fetching


def default_cache() -> Path:
    return Path(os.environ.get("INSTRUNET_CACHE", Path(__file__).resolve().parent.parent / "cache"))


def fetch_soundfonts(cache: Path, fonts: Sequence[SoundFont] = SOUNDFONTS) -> dict[str, Path]:
    """Path of each SoundFont, fetching its Debian package into ``cache`` when needed.

    A font already installed system-wide (``/<path>``) is used as is; otherwise the package
    is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` under
    ``cache/soundfonts`` (no root needed once apt's lists exist; as root, ``apt-get update``
    is run once when the package is unknown). The pinned version (:attr:`SoundFont.version`)
    is asked for first; when the archive no longer has it, its current one, with a warning.
    Either way a font file whose SHA-256 is not the pinned one is used with a warning
    (:func:`font_pins` says which fonts a corpus was built from).
    """
    out: dict[str, Path] = {}
    root = cache / "soundfonts" / "root"
    debs = cache / "soundfonts" / "debs"
    for font in fonts:
        cached = root / font.path
        if cached.is_file() and font.sha256 and not (Path("/") / font.path).is_file():
            if font_sha256(cached) != font.sha256:  # unpacked before the pins: the pinned one again
                debs.mkdir(parents=True, exist_ok=True)
                deb = _pinned_only(font, debs)
                if deb is not None:  # (else the cached one is used, with the warning below)
                    cached.unlink()
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for candidate in (Path("/") / font.path, cached):
            if candidate.is_file():
                out[font.key] = candidate
                break
        else:
            debs.mkdir(parents=True, exist_ok=True)
            deb = _pinned_deb(font, debs)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            path = root / font.path
            if not path.is_file():
                raise FileNotFoundError(f"{deb}: does not contain {font.path}")
            out[font.key] = path
        _warn_unpinned(font, out[font.key])
    return out


def _deb_version(deb: Path) -> str:
    r = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _pinned_only(font: SoundFont, debs: Path, said: list[str] | None = None) -> Path | None:
    """The pinned version's package in ``debs``, downloaded when missing; ``None`` when the
    archive does not offer it (why, in ``said``)."""
    if not font.version:
        return None

    def pinned() -> Path | None:
        return next(
            (d for d in sorted(debs.glob(f"{font.package}_*.deb")) if _deb_version(d) == font.version), None
        )

    if (deb := pinned()) is not None:
        return deb
    try:
        _apt_download(f"{font.package}={font.version}", debs)
    except RuntimeError as e:
        if said is not None:
            said.append(str(e))
        return None
    return pinned()


def _pinned_deb(font: SoundFont, debs: Path) -> Path:
    """The font's package in ``debs``: the pinned version's, downloaded when missing; else,
    when the archive no longer offers it, the newest there is (with a warning)."""

    def have() -> list[Path]:
        return sorted(debs.glob(f"{font.package}_*.deb"))

    said: list[str] = []
    deb = _pinned_only(font, debs, said)
    if deb is not None:
        return deb
    if font.version:
        warnings.warn(
            f"{font.package} {font.version}, the version the corpus is pinned to, cannot be "
            f"fetched ({'; '.join(said) or 'not in the archive'}); using the archive's current one",
            UserWarning,
            stacklevel=3,
        )
    try:  # the archive's current version
        _apt_download(font.package, debs)
    except RuntimeError:
        if not have():
            raise
    # the package just downloaded (or, when that failed, the newest already there)
    return max(have(), key=lambda d: d.stat().st_mtime_ns)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def font_sha256(path: Path) -> str:
    """SHA-256 of a font file (remembered per path, size and modification time)."""
    st = path.stat()
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _warn_unpinned(font: SoundFont, path: Path) -> None:
    if font.sha256 and font_sha256(path) != font.sha256:
        warnings.warn(
            f"{path}: the {font.key} SoundFont is not the pinned one (sha256 "
            f"{font_sha256(path)[:12]}..., pinned {font.sha256[:12]}... from Debian {font.package} "
            f"{font.version}): a corpus rendered from it differs from the one docs/data.md describes",
            UserWarning,
            stacklevel=3,
        )


def font_pins(fonts: dict[str, Path]) -> list[dict[str, Any]]:
    """Each font of :data:`SOUNDFONTS` as the corpus summary records it: its table entry, and
    for the fonts in ``fonts`` (key to file) the file's SHA-256 and whether it is the pinned one."""
    rows = []
    for f in SOUNDFONTS:
        row: dict[str, Any] = dataclasses.asdict(f)
        if f.key in fonts:
            row["file_sha256"] = font_sha256(fonts[f.key])
            row["pinned"] = row["file_sha256"] == f.sha256
        rows.append(row)
    return rows


def _apt_download(package: str, dest: Path) -> None:
    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)

    if shutil.which("apt-get") is None:
        name = package.split("=")[0]
        raise RuntimeError(
            f"apt-get not found: install Debian package {name} or put its SoundFont in the cache"
        )
    r = attempt()
    if r.returncode != 0 and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        r = attempt()
    if r.returncode != 0:
        raise RuntimeError(f"apt-get download {package} failed: {r.stderr.strip()}")


# --------------------------------------------------------------------------- planning


def held_out_programs(seed: int = DEFAULT_SEED) -> dict[str, dict[str, tuple[int, ...]]]:
    """Programs held out for ``valid``: ``{sample_group: {family: programs}}``, seeded.

    Crossed over the two training sample groups: per family a quarter of the programs (at
    least one) is held out of the FluidR3 group (FluidR3 *and* MuseScore General, which share
    samples) and a *different* quarter out of the csound bank. So every valid instrument is an
    unseen (sample library, program) pair, as every test instrument is, while every program
    still reaches training through the other group. Vocal, with only two GM programs, is the
    clearest case: Choir Aahs is learnt from one library and Voice Oohs from the other.
    """
    rng = np.random.default_rng(seed)
    groups = training_groups()
    held: dict[str, dict[str, tuple[int, ...]]] = {g: {} for g in groups}
    for fam in FAMILIES:
        progs = [int(p) for p in rng.permutation(PROGRAMS[fam])]
        k = max(1, int(round(len(progs) / 4)))
        for i, group in enumerate(groups):
            held[group][fam] = tuple(sorted(progs[i * k : (i + 1) * k]))
    return held


def training_groups() -> tuple[str, ...]:
    """Sample groups of the non-test fonts, in table order (``("fluidr3", "csound")``)."""
    out: list[str] = []
    for font in SOUNDFONTS:
        if font.key != TEST_FONT and font.sample_group not in out:
            out.append(font.sample_group)
    return tuple(out)


def plan_instruments(seed: int = DEFAULT_SEED) -> list[Instrument]:
    """Every (SoundFont, program) instrument with its id, NSynth name and split."""
    held = held_out_programs(seed)
    counters: collections.Counter[str] = collections.Counter()
    plan: list[Instrument] = []
    for font in SOUNDFONTS:
        for fam in FAMILIES:
            for prog in PROGRAMS[fam]:
                if font.key == TEST_FONT:
                    split = "test"
                elif prog in held[font.sample_group][fam]:
                    split = "valid"
                else:
                    split = "train"
                idx = counters[fam]
                counters[fam] += 1
                plan.append(Instrument(len(plan), f"{fam}_acoustic_{idx:03d}", fam, font.key, prog, split))
    return plan


def plan_notes(inst: Instrument, limit_per_instrument: int | None) -> list[tuple[int, int]]:
    """(pitch, velocity) pairs to render for ``inst``."""
    if limit_per_instrument is None:
        return [(p, v) for p in range(PITCH_RANGE[0], PITCH_RANGE[1] + 1) for v in VELOCITIES]
    # Small builds: pitches spread over the middle of the keyboard, velocities cycled.
    n = limit_per_instrument
    pitches = np.linspace(48, 76, n).round().astype(int) if n > 1 else np.array([60])
    return [(int(p), VELOCITIES[(i + 3) % len(VELOCITIES)]) for i, p in enumerate(pitches)]


def limit_plan(plan: list[Instrument], limit: int) -> dict[int, int]:
    """With ``--limit N``: at most N notes per (split, family), spread over up to N instruments.

    Returns instrument id → notes to render for it (instruments not in the dict are skipped).
    """
    by_group: dict[tuple[str, str], list[Instrument]] = collections.defaultdict(list)
    for inst in plan:
        by_group[(inst.split, inst.family)].append(inst)
    chosen: dict[int, int] = {}
    for group in by_group.values():
        # Alternate fonts so that a small build still mixes sample libraries.
        order = sorted(group, key=lambda i: (i.program, i.font))
        take = order[: max(1, min(limit, len(order)))]
        per = math.ceil(limit / len(take))
        left = limit
        for inst in take:
            n = min(per, left)
            if n <= 0:
                break
            chosen[inst.instrument] = n
            left -= n
    return chosen


# --------------------------------------------------------------------------- rendering

_SYNTH: Any = None
_SFIDS: dict[str, int] = {}


def _synth_for(font_key: str, font_path: str) -> tuple[Any, int]:
    global _SYNTH
    import tinysoundfont

    if _SYNTH is None:
        _SYNTH = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    if font_key not in _SFIDS:
        _SFIDS[font_key] = _SYNTH.sfload(font_path)
    return _SYNTH, _SFIDS[font_key]


#: Samples a synthesizer plays (and discards) after its sounds are turned off, before a note:
#: tinysoundfont ends sounds with a quick release, which reached the next note's first samples,
#: so a note depended on what the process rendered before it (a resumed corpus build differed
#: from a fresh one; 256 were enough on FluidR3).
QUIET_SAMPLES = 1024


def silence(synth: Any) -> None:
    """Every sound of ``synth`` off and played out: what it renders next owes nothing to before."""
    synth.sounds_off()
    synth.generate(QUIET_SAMPLES)


def render_note(synth: Any, pitch: int, velocity: int) -> np.ndarray | None:
    """3 s held + 1 s release, mono float32; ``None`` if the preset has no sound there."""
    n_hold, n_rel = int(HOLD_S * SAMPLE_RATE), int(RELEASE_S * SAMPLE_RATE)
    silence(synth)
    if not synth.noteon(0, pitch, velocity):
        return None
    hold = np.frombuffer(synth.generate(n_hold), dtype=np.float32)
    synth.noteoff(0, pitch)
    rel = np.frombuffer(synth.generate(n_rel), dtype=np.float32)
    synth.sounds_off()
    stereo = np.concatenate([hold, rel]).reshape(-1, 2)
    return _normalised(stereo.mean(axis=1))


def _normalised(y: np.ndarray) -> np.ndarray | None:
    """``y`` scaled to the peak :data:`PEAK`, float32; ``None`` when it is silent (empty, its peak
    below :data:`SILENT_PEAK`, or not finite)."""
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if not math.isfinite(peak) or peak < SILENT_PEAK:
        return None
    return (y * (PEAK / peak)).astype(np.float32)


def render_instrument(
    inst: Instrument, font_path: str, out: str, notes: list[tuple[int, int]]
) -> tuple[int, dict[str, Any]]:
    """Render one instrument's notes; returns (instrument id, examples dict)."""
    synth, sfid = _synth_for(inst.font, font_path)
    synth.program_select(0, sfid, 0, inst.program)
    preset = synth.sfpreset_name(sfid, 0, inst.program)
    extra = {"soundfont": inst.font, "program": inst.program, "preset_name": preset}
    rendered = ((pitch, velocity, render_note(synth, pitch, velocity), extra) for pitch, velocity in notes)
    return inst.instrument, _write_notes(out, inst, rendered)


@dataclasses.dataclass(frozen=True)
class RealInstrument:
    """One playable program of a real recorded library (an entry of the lock file)."""

    instrument: int
    instrument_str: str
    family: str
    source: str  # lock key, e.g. "weresax"
    name: str
    split: str
    sample_group: str
    spec: tuple[tuple[str, Any], ...]  # the lock's instrument entry (sfz / pat / cc / ...)

    def entry(self) -> dict[str, Any]:
        return {k: v for k, v in self.spec}


def plan_real(
    lock: dict[str, Any], *, first_id: int, counters: collections.Counter[str]
) -> list[RealInstrument]:
    """Every instrument of every locked library, numbered after the SoundFont instruments."""
    out: list[RealInstrument] = []
    for src in lock["sources"]:
        if src.get("role") == "negative":  # none of the eight: training.others plays them
            continue
        for inst in src["instruments"]:
            fam = inst["family"]
            if fam not in PROGRAMS:
                raise ValueError(f"{src['key']}/{inst['name']}: unknown family {fam!r}")
            idx = counters[fam]
            counters[fam] += 1
            out.append(
                RealInstrument(
                    first_id + len(out),
                    f"{fam}_acoustic_{idx:03d}",
                    fam,
                    src["key"],
                    inst["name"],
                    src["split"],
                    inst.get("sample_group", src["sample_group"]),
                    tuple(sorted((k, _freeze(v)) for k, v in inst.items())),
                )
            )
    return out


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _freeze(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_freeze(x) for x in v]
    return v


def _player(inst: RealInstrument, root: Path, work: Path) -> Any:
    from .sfz import SfzPlayer, pat_to_sfz, patched_sfz

    e = inst.entry()
    if "layout" in e:
        path = layout_sfz(root / e["layout"]["dir"], work / inst.source / f"{inst.name}.sfz")
    elif "pat" in e:
        path = pat_to_sfz(root / e["pat"], work / inst.source / inst.name)
    elif "replace" in e:
        path = patched_sfz(
            root / e["sfz"],
            work / inst.source / f"{inst.name}.sfz",
            sample_dir=root / e["sample_dir"],
            replace=e["replace"],
        )
    else:
        path = root / e["sfz"]
    return SfzPlayer(path, sample_rate=SAMPLE_RATE)


def layout_sfz(folder: Path, out: Path) -> Path:
    """An SFZ file for a folder of one-shot WAVs named ``note<MIDI key>-<anything>.wav`` (one
    recording per key, as the lock's ``layout`` describes): each file sounds on its own key
    only, unstretched, with a short release."""
    import re

    regions = []
    for wav in sorted(folder.glob("note*.wav")):
        m = re.match(r"note(\d{3})", wav.name)
        if m:
            key = int(m.group(1))
            regions.append(f"<region> sample={wav.resolve()} key={key} pitch_keycenter={key}")
    if not regions:
        raise FileNotFoundError(f"{folder}: no note<key>-*.wav files")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("<global> ampeg_release=0.15\n" + "\n".join(regions) + "\n")
    return out


def playable_keys(inst: RealInstrument, keys: Sequence[int]) -> list[int]:
    """The player's keys, within the lock's ``keys`` range when it gives one (a library that
    maps other sounds, such as consonants or spoken words, to the keys outside it)."""
    lo, hi = inst.entry().get("keys", (0, 127))
    return [int(k) for k in keys if lo <= k <= hi]


def real_notes(inst: RealInstrument, keys: Sequence[int], limit: int | None) -> list[tuple[int, int]]:
    """(pitch, velocity) clips to render: train covers every key at several velocities
    (about :data:`REAL_TRAIN_CLIPS` clips), dev every other key at two velocities."""
    keys = [k for k in keys if PITCH_RANGE[0] <= k <= PITCH_RANGE[1]]
    if not keys:
        return []
    if limit is not None:
        pick = np.linspace(0, len(keys) - 1, min(limit, len(keys))).round().astype(int)
        return [(keys[int(i)], DEV_VELOCITIES[j % 2]) for j, i in enumerate(pick)][:limit]
    if inst.split == "dev":
        return [(k, v) for k in keys[::2] for v in DEV_VELOCITIES]
    nv = int(np.clip(math.ceil(REAL_TRAIN_CLIPS / len(keys)), 2, 12))
    vels = sorted({int(v) for v in np.linspace(*REAL_VELOCITY_RANGE, nv).round()})
    return [(k, v) for k in keys for v in vels]


def render_real_instrument(
    inst: RealInstrument, root: str, out: str, limit: int | None, seed: int
) -> tuple[int, dict[str, Any]]:
    """Render one real instrument's clips; returns (instrument id, examples dict)."""
    from .sfz import plan_clip

    player = _player(inst, Path(root), Path(out) / ".parts" / "sfz")
    e = inst.entry()
    cc = {int(k): tuple(v) for k, v in e.get("cc", {}).items()}

    def rendered() -> Iterator[tuple[int, int, np.ndarray | None, dict[str, Any]]]:
        keys = playable_keys(inst, player.keys)
        for pitch, velocity in real_notes(inst, keys, limit):
            rng = np.random.default_rng([seed, inst.instrument, pitch, velocity])
            clip = plan_clip(rng, pitch=pitch, velocity=velocity, keys=keys, cc_ranges=cc)
            y = _normalised(player.render(clip, max_s=HOLD_S + RELEASE_S))
            if y is None or len(y) < SAMPLE_RATE // 20:
                continue
            yield (
                pitch,
                velocity,
                y,
                {
                    "library": inst.source,
                    "preset_name": inst.name,
                    "sample_group": inst.sample_group,
                    "clip": clip.kind,
                    "duration_s": round(len(y) / SAMPLE_RATE, 3),
                },
            )

    return inst.instrument, _write_notes(out, inst, rendered())


def _write_notes(
    out: str, inst: Any, rendered: Iterable[tuple[int, int, np.ndarray | None, dict[str, Any]]]
) -> dict[str, Any]:
    """Write the rendered notes of ``inst`` to ``out/<split>/audio/<note_str>.wav`` (16-bit PCM).

    Parameters
    ----------
    out : str
        The corpus folder.
    inst : Instrument or RealInstrument
    rendered : iterable of (int, int, np.ndarray or None, dict)
        Each note's pitch, velocity, audio at :data:`SAMPLE_RATE` (``None``: silent, skipped)
        and its source's keys of the record.

    Returns
    -------
    dict
        The notes' records (:func:`_note_record`) by note name.
    """
    audio_dir = Path(out) / inst.split / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    idx = int(inst.instrument_str.rsplit("_", 1)[1])
    examples: dict[str, Any] = {}
    for pitch, velocity, y, extra in rendered:
        if y is None:
            continue
        name = note_str(inst.family, "acoustic", idx, pitch, velocity)
        sf.write(audio_dir / f"{name}.wav", y, SAMPLE_RATE, subtype="PCM_16")
        examples[name] = _note_record(inst, name, pitch, velocity, **extra)
    return examples


def _note_record(inst: Any, name: str, pitch: int, velocity: int, **extra: Any) -> dict[str, Any]:
    """The NSynth-format metadata of one rendered note of ``inst`` (plus this source's ``extra`` keys)."""
    return {
        "note": 0,  # renumbered when the split is assembled
        "note_str": name,
        "instrument": inst.instrument,
        "instrument_str": inst.instrument_str,
        "pitch": pitch,
        "velocity": velocity,
        "sample_rate": SAMPLE_RATE,
        "qualities": [0] * 10,
        "qualities_str": [],
        "instrument_family": FAMILY_NAMES.index(inst.family),
        "instrument_family_str": inst.family,
        "instrument_source": SOURCE_NAMES.index("acoustic"),
        "instrument_source_str": "acoustic",
        **extra,
        "split": inst.split,
    }


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=1, sort_keys=True)


def build(
    out: Path,
    *,
    limit: int | None = None,
    workers: int | None = None,
    cache: Path | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    sources: Path | None = None,
) -> dict[str, Any]:
    """Render the corpus into ``out`` (resumable); returns the build summary.

    With ``sources`` (a mirror folder, see :mod:`training.sources`), the real libraries of the
    lock file are verified against their sha256 and rendered too: ``train`` libraries into the
    train split, ``dev`` libraries into the dev split. Without it, the corpus is SoundFonts only.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fonts = fetch_soundfonts(cache or default_cache())
    plan = plan_instruments(seed)
    real: list[RealInstrument] = []
    roots: dict[str, Path] = {}
    lock: dict[str, Any] | None = None
    if sources is not None:
        from .sources import load_lock, verify

        lock = load_lock()
        roots = verify(
            Path(sources), lock, keys=[e["key"] for e in lock["sources"] + lock.get("negatives", [])]
        )
        real = plan_real(lock, first_id=len(plan), counters=collections.Counter(i.family for i in plan))
    if limit is not None:
        chosen = limit_plan(plan, limit)
        jobs = [
            (inst, plan_notes(inst, chosen[inst.instrument])) for inst in plan if inst.instrument in chosen
        ]
    else:
        jobs = [(inst, plan_notes(inst, None)) for inst in plan]
    config = {
        "seed": seed,
        "limit": limit,
        "sample_rate": SAMPLE_RATE,
        "velocities": list(VELOCITIES),
        "pitch_range": list(PITCH_RANGE),
        "hold_s": HOLD_S,
        "release_s": RELEASE_S,
        "split_rule": SPLIT_RULE,
    }
    cfg_path = out / ".parts" / "config.json"
    if cfg_path.is_file() and (before := json.loads(cfg_path.read_text())) != config:
        diff = ", ".join(
            f"{k}: {before.get(k)!r} -> {config.get(k)!r}"
            for k in sorted(set(before) | set(config))
            if before.get(k) != config.get(k)
        )
        raise SystemExit(f"{out}: was built with other settings ({diff}; {cfg_path}); use a new --out folder")
    _write_json(cfg_path, config)
    parts = out / ".parts"
    if real:
        real_cfg = {
            "seed": seed,
            "limit": limit,
            "instruments": [dataclasses.asdict(i) for i in real],
            "real_train_clips": REAL_TRAIN_CLIPS,
            "dev_velocities": list(DEV_VELOCITIES),
        }
        real_path = parts / "sources.json"
        if real_path.is_file():
            _check_additive(json.loads(real_path.read_text()), json.loads(json.dumps(real_cfg)), real_path)
        _write_json(real_path, real_cfg)
    todo = [(i, n) for i, n in jobs if not (parts / f"{i.instrument:04d}.json").is_file()]
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    bar = progress_bar(
        len(jobs), desc="rendering", unit="instrument", initial=len(jobs) - len(todo), enabled=progress
    )
    # Group by font so that each worker loads few fonts (MuseScore takes seconds to load).
    todo.sort(key=lambda j: (j[0].font, j[0].instrument))
    if workers == 1:
        for inst, notes in todo:
            _, ex = render_instrument(inst, str(fonts[inst.font]), str(out), notes)
            _write_json(parts / f"{inst.instrument:04d}.json", ex)
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {
                pool.submit(render_instrument, inst, str(fonts[inst.font]), str(out), notes): inst
                for inst, notes in todo
            }
            for fut in as_completed(futs):
                iid, ex = fut.result()
                _write_json(parts / f"{iid:04d}.json", ex)
                bar.update(1)
    real_todo = [i for i in real if not (parts / f"{i.instrument:04d}.json").is_file()]
    if real_todo:
        print(f"rendering {len(real_todo)} real-library instruments", file=sys.stderr, flush=True)
    if workers == 1 or len(real_todo) <= 1:
        for real_inst in real_todo:
            _, ex = render_real_instrument(real_inst, str(roots[real_inst.source]), str(out), limit, seed)
            _write_json(parts / f"{real_inst.instrument:04d}.json", ex)
    elif real_todo:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rfuts = [
                pool.submit(render_real_instrument, inst, str(roots[inst.source]), str(out), limit, seed)
                for inst in real_todo
            ]
            for fut in as_completed(rfuts):
                iid, ex = fut.result()
                _write_json(parts / f"{iid:04d}.json", ex)
    bar.close()
    _build_others(out, fonts, roots, lock, limit, seed, workers)
    return assemble(out, [inst for inst, _ in jobs] + list(real), fonts=fonts)


def _check_additive(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """A corpus may gain real instruments (sources appended to the lock file), but what it
    already rendered must have been rendered with the same settings."""
    same = {k: v for k, v in old.items() if k != "instruments"} == {
        k: v for k, v in new.items() if k != "instruments"
    }
    before = {i["instrument"]: i for i in old["instruments"]}
    changed = [
        i["name"] for i in new["instruments"] if i["instrument"] in before and before[i["instrument"]] != i
    ]
    if not same or changed or not set(before) <= {i["instrument"] for i in new["instruments"]}:
        raise SystemExit(
            f"{path.parent.parent}: real libraries were rendered with other settings ({path}"
            f"{'; changed: ' + ', '.join(changed[:5]) if changed else ''}); use a new --out folder"
        )


def _build_others(
    out: Path,
    fonts: dict[str, Path],
    roots: dict[str, Path],
    lock: dict[str, Any] | None,
    limit: int | None,
    seed: int,
    workers: int,
) -> None:
    """Render the open-set material (:mod:`training.others`) into each split's ``others/``;
    resumable like the instruments (``.parts/others-<key>.json``)."""
    from .others import plan_font_others, plan_generated_others, plan_locked_others, render_other

    plans = plan_font_others(SOUNDFONTS, TEST_FONT, training_groups())
    if lock is not None:
        plans += plan_locked_others(lock)  # their checkouts were verified with the instruments'
        plans += plan_generated_others()  # the dev split's synthesizers and noises
    if limit is not None:  # small builds: one plan per (split, sound)
        first: dict[tuple[str, str], Any] = {}
        for p in plans:
            first.setdefault((p.split, p.sound), p)
        plans = list(first.values())
    parts = out / ".parts"
    _forget_changed_other_plans(out, plans)
    todo = [p for p in plans if not (parts / f"others-{p.key}.json").is_file()]
    if not todo:
        return
    print(f"rendering {len(todo)} sets of other sounds", file=sys.stderr, flush=True)

    def root_of(p: Any) -> str:
        if p.kind == "generated":
            return ""
        return str(fonts[p.source]) if p.kind.startswith("font") else str(roots[p.source])

    if workers == 1:
        for p in todo:
            key, rec = render_other(p, root=root_of(p), out=str(out), seed=seed, limit=limit)
            _write_json(parts / f"others-{key}.json", rec)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futs = [
            pool.submit(render_other, p, root=root_of(p), out=str(out), seed=seed, limit=limit) for p in todo
        ]
        for fut in as_completed(futs):
            key, rec = fut.result()
            _write_json(parts / f"others-{key}.json", rec)


def _forget_changed_other_plans(out: Path, plans: Sequence[Any]) -> None:
    """A finished set of other sounds is skipped by its key; when its plan has changed since
    (a lock entry's clip count, a generator's), its record and clips are removed so that it is
    rendered again. The plans are remembered in ``.parts/other-plans.json`` (a record from
    before that file existed is taken as current)."""
    parts = out / ".parts"
    path = parts / "other-plans.json"
    seen: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for p in plans:
        spec = json.loads(json.dumps(p.entry()))
        done = parts / f"others-{p.key}.json"
        if done.is_file() and seen.get(p.key, spec) != spec:
            done.unlink()
            clip = re.compile(rf"other_{re.escape(p.key)}-\d+\.wav")
            for f in (out / p.split / "others").glob(f"other_{p.key}-*.wav"):
                if clip.fullmatch(f.name):
                    f.unlink()
        seen[p.key] = spec
    _write_json(path, seen)


def assemble(
    out: Path,
    instruments: Sequence[Instrument | RealInstrument],
    *,
    fonts: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Merge finished instruments into each split's ``examples.json`` and write ``corpus.json``.

    The dev split is written only when a real library feeds it. With ``fonts`` (key to the
    file rendered from), the summary records each font file's SHA-256 and whether it is the
    pinned one (:func:`font_pins`).
    """
    per_split: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    for inst in instruments:
        ex = json.loads((out / ".parts" / f"{inst.instrument:04d}.json").read_text())
        per_split[inst.split].update(ex)
    counter = 0
    for split in SPLITS:
        if split == "dev" and not any(i.split == "dev" for i in instruments):
            continue
        for key in sorted(per_split[split]):
            per_split[split][key]["note"] = counter
            counter += 1
        _write_json(out / split / "examples.json", per_split[split])
    others: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    for part in sorted((out / ".parts").glob("others-*.json")):
        for name, rec in json.loads(part.read_text()).items():
            others[rec["split"]][name] = rec
    for split, recs in others.items():
        if recs:
            _write_json(out / split / "others.json", recs)
    summary = {
        "format": "nsynth-json-wav",
        "sample_rate": SAMPLE_RATE,
        "soundfonts": font_pins(fonts or {}),
        "split_rule": SPLIT_RULE,
        "held_out_programs": {
            g: {f: list(v) for f, v in fams.items()}
            for g, fams in held_out_programs(
                json.loads((out / ".parts" / "config.json").read_text())["seed"]
            ).items()
        },
        "instruments": [dataclasses.asdict(i) for i in instruments if isinstance(i, Instrument)],
        "real_instruments": [
            {k: v for k, v in dataclasses.asdict(i).items() if k != "spec"}
            for i in instruments
            if isinstance(i, RealInstrument)
        ],
        "counts": counts(out),
        "others": {
            split: dict(collections.Counter(r["sound"] for r in recs.values()))
            for split, recs in others.items()
            if recs
        },
    }
    _write_json(out / "corpus.json", summary)
    return summary


def counts(out: Path) -> dict[str, dict[str, dict[str, int]]]:
    """{split: {family: {"notes": n, "instruments": m}}} read back through the NSynth loader."""
    res: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        if not (out / split / "examples.json").is_file():
            continue
        notes = load_split(out / split, check_audio=False)
        fam: dict[str, dict[str, int]] = {}
        for f in FAMILIES:
            sel = [n for n in notes if n.family_str == f]
            fam[f] = {"notes": len(sel), "instruments": len({n.instrument for n in sel})}
        res[split] = fam
    return res


def format_stats(c: dict[str, dict[str, dict[str, int]]]) -> str:
    splits = [s for s in SPLITS if s in c]
    head = f"{'family':<10}" + "".join(f"{s + ' notes/instr':>22}" for s in splits)
    lines = [head, "-" * len(head)]
    for f in FAMILIES:
        lines.append(
            f"{f:<10}" + "".join(f"{c[s][f]['notes']:>15d} / {c[s][f]['instruments']:>4d}" for s in splits)
        )
    lines.append(
        f"{'total':<10}"
        + "".join(
            f"{sum(v['notes'] for v in c[s].values()):>15d} / {sum(v['instruments'] for v in c[s].values()):>4d}"
            for s in splits
        )
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the corpus (resumable)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument(
        "--limit", type=int, default=None, help="at most N notes per split and family (small builds)"
    )
    b.add_argument("--workers", type=int, default=None)
    b.add_argument("--cache", type=Path, default=None, help="where fetched SoundFont packages go")
    b.add_argument("--seed", type=int, default=DEFAULT_SEED)
    b.add_argument("--no-progress", action="store_true")
    b.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="mirror folder of the real libraries in training/sources.lock.json (adds them, and the dev split)",
    )
    s = sub.add_parser("stats", help="notes and instruments per family and split")
    s.add_argument("dir", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        for problem in number_problems(vars(args), positive=("limit", "workers"), non_negative=("seed",)):
            ap.error(problem)
        if args.out.exists() and not args.out.is_dir():
            ap.error(f"--out {args.out}: a file, not a folder")
        from .sources import SourceError

        try:
            summary = build(
                args.out,
                limit=args.limit,
                workers=args.workers,
                cache=args.cache,
                seed=args.seed,
                progress=not args.no_progress,
                sources=args.sources,
            )
        except (SourceError, RuntimeError, OSError, sf.LibsndfileError) as exc:
            # (a failed apt-get download is a RuntimeError; a full disk, soundfile's "System error")
            print(f"training.corpus: error: {args.out}: {exc}", file=sys.stderr)
            return 2
        print(format_stats(summary["counts"]))
    else:
        if not (args.dir / "corpus.json").is_file() and not (args.dir / "train" / "examples.json").is_file():
            print(f"training.corpus: error: {args.dir}: not a corpus folder", file=sys.stderr)
            return 2
        missing = [sp for sp in ("train", "valid", "test") if not (args.dir / sp / "examples.json").is_file()]
        if missing:
            print(f"training.corpus: warning: {args.dir}: no {', '.join(missing)} split", file=sys.stderr)
        try:
            print(format_stats(counts(args.dir)))
        except (OSError, ValueError) as exc:
            print(f"training.corpus: error: {args.dir}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
