"""Sounds that are none of the eight families: the open-set material ("other").

The models answer "none of the eight" when a window holds sound that no family explains:
drums, synthesizers, organs and electric basses (NSynth files those as families of their
own), speech, sound effects and noise. What teaches them that, each kind from an honest
origin:

* **SoundFont renders** (:func:`plan_font_others`): General MIDI programs outside the eight
  families (:data:`OTHER_PROGRAMS`) played as notes, repeated notes and phrases, and the fonts'
  drum kits played as random patterns (:func:`drum_pattern`), from the same four Debian fonts
  and with the same split by font as the instruments: the FluidR3 group and the csound bank
  feed ``train`` (a quarter of each category's programs, crossed between the two groups as
  for the instruments, feeds ``valid``), TimGM6mb feeds ``test``;
* **locked recordings**, the ``negatives`` list of ``training/sources.lock.json``
  (:func:`plan_locked_others`): SFZ drum kits played as patterns or as single hits left to
  ring out (:func:`one_shot`, an instrument's ``one_shots``), and recordings (speech,
  drum hits, synth loops, ambience, keyboard clicks) cut or strung into clips; their ``split``
  says where they go (``dev`` sources build the open-set dev set, which nothing trains on);
* **generated noise** (:func:`noise`): white, pink, brown, mains hum with harmonics,
  crackle, made at example time by :mod:`training.dataset` (no files); and, for the open-set
  dev set only (its real sources lack synthesizers), generated synthesizer tones
  (:func:`synth`) and noises rendered into files (:func:`plan_generated_others`);
* **generated oscillator tones for training** (:func:`oscillators`, the train split's
  ``generated-oscillators``): what no font program sounds like, a bare electronic oscillator,
  made by a different generator from the dev set's :func:`synth` (band-limited additive
  waves, wavetable morphs, pulse-width modulation, hard sync, ring modulation and chiptune
  arpeggios, through block-wise Butterworth filters), so that the dev set's synthesizers stay a
  test of what training learnt, not of the same code.

Layout inside the corpus: ``<corpus>/<split>/others.json`` (name → record) and
``<corpus>/<split>/others/<name>.wav`` (22,050 Hz mono, 16-bit, peak 0.9, like the notes).
The NSynth-format ``examples.json`` stays instruments only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

__all__ = [
    "OTHER_PROGRAMS",
    "DRUM_KITS",
    "Other",
    "OtherPlan",
    "plan_font_others",
    "plan_locked_others",
    "render_other",
    "load_others",
    "drum_pattern",
    "one_shot",
    "noise",
    "synth",
    "oscillators",
    "plan_generated_others",
    "NOISE_KINDS",
]

SAMPLE_RATE = 22050
PEAK = 0.9
CLIP_S = 4.0

#: General MIDI programs (0-based) that are none of the eight families, by kind of sound.
#: Left out because they sit too close to a family: accordion, harmonica and bandoneon (free
#: reeds), acoustic bass (an upright, plucked: the string family's contrabass), the choir and
#: halo pads (voices), guitar fret noise and breath noise (parts of a guitar and a flute),
#: tinkle bell and steel drums (tuned like mallets).
OTHER_PROGRAMS: dict[str, tuple[int, ...]] = {
    "organ": (16, 17, 18, 19, 20),
    "bass": (33, 34, 35, 36, 37, 38, 39),
    "synth": tuple(p for p in range(80, 104) if p not in (91, 94)),
    "percussion": (113, 115, 116, 117, 118, 119),
    "sfx": (122, 123, 124, 125, 126, 127),
}
#: Drum kit presets (bank 128) tried in every font; a font that lacks one is skipped.
DRUM_KITS: tuple[int, ...] = (0, 8, 16, 24, 25, 32, 40, 48)
#: Clips per program (per kit for drums).
CLIPS_PER_PROGRAM = {"organ": 30, "bass": 30, "synth": 24, "percussion": 24, "sfx": 24, "drums": 80}
#: Pitch ranges played per kind (MIDI).
PITCHES = {"organ": (36, 84), "bass": (28, 55), "synth": (40, 88), "percussion": (45, 80), "sfx": (48, 72)}
NOISE_KINDS = ("white", "pink", "brown", "hum", "crackle")


@dataclasses.dataclass(frozen=True)
class Other:
    """One rendered or cut clip of "other" sound, as read back from ``others.json``."""

    name: str
    path: Path
    sound: str  # drums / organ / bass / synth / percussion / sfx / speech / ambience / ...
    source: str  # SoundFont key or lock key
    sample_group: str
    split: str
    duration_s: float


@dataclasses.dataclass(frozen=True)
class OtherPlan:
    """One program, kit or locked recording set to render into clips."""

    key: str  # unique, used for the .parts record: "fluidr3-synth-081", "lock-<key>-<name>"
    sound: str
    source: str
    sample_group: str
    split: str
    kind: str  # "font", "font-drums", "sfz", "sfz-drums", "recordings"
    spec: tuple[tuple[str, Any], ...]  # program / kit / font path / sfz path / files

    def entry(self) -> dict[str, Any]:
        return dict(self.spec)


def plan_font_others(fonts: Sequence[Any], test_font: str, groups: Sequence[str]) -> list[OtherPlan]:
    """Programs and kits of every font. ``fonts``: the corpus's ``SoundFont`` records;
    ``groups``: the training sample groups (FluidR3's, csound's), for the crossed valid rule."""
    plans: list[OtherPlan] = []
    for font in fonts:
        for sound, progs in OTHER_PROGRAMS.items():
            for i, prog in enumerate(progs):
                plans.append(
                    OtherPlan(
                        f"{font.key}-{sound}-{prog:03d}",
                        sound,
                        font.key,
                        font.sample_group,
                        _font_split(font, test_font, groups, i),
                        "font",
                        (("bank", 0), ("program", prog)),
                    )
                )
        for i, kit in enumerate(DRUM_KITS):
            plans.append(
                OtherPlan(
                    f"{font.key}-drums-{kit:03d}",
                    "drums",
                    font.key,
                    font.sample_group,
                    _font_split(font, test_font, groups, i),
                    "font-drums",
                    (("bank", 128), ("program", kit)),
                )
            )
    return plans


def _font_split(font: Any, test_font: str, groups: Sequence[str], index: int) -> str:
    """Every fourth program of a kind is valid, offset by the font's group so that the two
    training groups hold out different programs (each program still reaches training)."""
    if font.key == test_font:
        return "test"
    return "valid" if index % 4 == 2 * groups.index(font.sample_group) % 4 else "train"


def plan_locked_others(lock: dict[str, Any]) -> list[OtherPlan]:
    """Every entry of the lock's ``negatives`` list: played from its SFZ instruments
    (``play: sfz``; as drum patterns when its ``sound`` is ``drums``) or cut from its
    recordings (``play: audio``: every audio file under ``files``, less ``exclude``)."""
    plans: list[OtherPlan] = []
    for src in lock.get("negatives", []):
        sound = src["sound"]
        if src["play"] == "sfz":
            for inst in src["instruments"]:
                plans.append(
                    OtherPlan(
                        f"lock-{src['key']}-{inst['name']}",
                        sound,
                        src["key"],
                        inst.get("sample_group", src["sample_group"]),
                        src["split"],
                        "sfz-drums" if sound == "drums" else "sfz",
                        tuple(sorted((k, _freeze(v)) for k, v in inst.items())),
                    )
                )
        elif src["play"] == "audio":
            rec = {"files": src["files"], "exclude": src.get("exclude", []), **src.get("cut", {})}
            plans.append(
                OtherPlan(
                    f"lock-{src['key']}",
                    sound,
                    src["key"],
                    src["sample_group"],
                    src["split"],
                    "recordings",
                    tuple(sorted((k, _freeze(v)) for k, v in rec.items())),
                )
            )
        else:
            raise ValueError(f"{src['key']}: unknown play {src['play']!r}")
    return plans


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


# --------------------------------------------------------------------------- clips


def one_shot(rng: np.random.Generator, keys: Sequence[int]) -> list[tuple]:
    """One hit of one of ``keys`` at 0-0.3 s, velocity 40-127, left to ring out: a drum
    sample as a sample library or a one-shot folder holds it (``one_shots`` in the lock)."""
    ks = sorted(set(int(k) for k in keys))
    if not ks:
        return []
    k = ks[int(rng.integers(len(ks)))]
    return [(float(rng.uniform(0.0, 0.3)), k, int(rng.integers(40, 128)), 0.1)]


def drum_pattern(rng: np.random.Generator, keys: Sequence[int], *, seconds: float = 3.6) -> list[tuple]:
    """A random groove or fill as ``(onset_s, key, velocity, hold_s)`` events over ``keys``
    (the kit's playable keys): kick on some beats, snare on back beats, hats or rides in
    eighths or sixteenths, toms and cymbals here and there, 60-180 bpm; or a sparse pattern
    of single hits (a third of the time), as drums appear under a mix."""
    have = set(int(k) for k in keys)

    def pick(cands: Sequence[int]) -> int | None:
        c = [k for k in cands if k in have]
        return int(c[int(rng.integers(len(c)))]) if c else None

    if not have:
        return []
    events: list[tuple] = []
    if rng.random() < 1 / 3:
        t = float(rng.uniform(0.0, 0.3))
        while t < seconds:
            k = sorted(have)[int(rng.integers(len(have)))]
            events.append((t, k, int(rng.integers(40, 128)), 0.1))
            t += float(rng.uniform(0.1, 0.9))
        return events
    bpm = float(rng.uniform(60, 180))
    step = 60.0 / bpm / 4  # sixteenths
    kick, snare = pick((35, 36)), pick((38, 40, 37, 39))
    hat = pick((42, 44, 46, 51, 59, 53))
    toms = [k for k in (41, 43, 45, 47, 48, 50) if k in have]
    cymbals = [k for k in (49, 57, 52, 55) if k in have]
    hat_every = 2 if rng.random() < 0.6 else 1
    n = int(seconds / step)
    for s in range(n):
        t = s * step + float(rng.normal(0, 0.004))
        if t < 0:
            continue
        beat, sub = divmod(s, 4)
        if kick is not None and sub == 0 and (beat % 2 == 0 or rng.random() < 0.3):
            events.append((t, kick, int(rng.integers(90, 128)), 0.1))
        if snare is not None and sub == 0 and beat % 2 == 1:
            events.append((t, snare, int(rng.integers(80, 128)), 0.1))
        if hat is not None and s % hat_every == 0:
            events.append((t, hat, int(rng.integers(40, 100)), 0.05))
        if toms and rng.random() < 0.04:
            events.append((t, toms[int(rng.integers(len(toms)))], int(rng.integers(70, 120)), 0.1))
        if cymbals and s == 0 and rng.random() < 0.5:
            events.append((t, cymbals[int(rng.integers(len(cymbals)))], int(rng.integers(70, 120)), 0.5))
    return events


def _melodic_events(rng: np.random.Generator, lo: int, hi: int) -> list[tuple]:
    """A held note (half), a repeated note or a short phrase: ``(onset_s, key, velocity, hold_s)``."""
    pitch = int(rng.integers(lo, hi + 1))
    vel = int(rng.integers(50, 128))
    u = rng.random()
    if u < 0.5:
        return [(0.0, pitch, vel, float(np.exp(rng.uniform(np.log(0.2), np.log(3.5)))))]
    events, t = [], 0.0
    for _ in range(int(rng.integers(2, 6))):
        d = float(rng.uniform(0.1, 0.7))
        p = pitch if u < 0.7 else int(np.clip(pitch + rng.integers(-7, 8), lo, hi))
        events.append((t, p, int(np.clip(vel + rng.integers(-15, 16), 1, 127)), d))
        t += d + float(rng.uniform(0.0, 0.25))
    return events


def _render_font_events(synth: Any, chan: int, events: Sequence[tuple], seconds: float) -> np.ndarray:
    """Play ``events`` on a tinysoundfont channel, ``seconds`` long, mono float32."""
    from .corpus import silence

    sr = SAMPLE_RATE
    marks = sorted(
        [(round(t * sr), 1, k, v) for t, k, v, _ in events]
        + [(round((t + h) * sr), 0, k, 0) for t, k, _, h in events]
    )
    total = int(seconds * sr)
    out: list[np.ndarray] = []
    pos = 0
    silence(synth)  # (nothing of what was rendered before reaches these events)
    for at, on, key, vel in marks:
        at = min(at, total)
        if at > pos:
            out.append(np.frombuffer(synth.generate(at - pos), dtype=np.float32))
            pos = at
        if on:
            synth.noteon(chan, key, vel)
        else:
            synth.noteoff(chan, key)
    if total > pos:
        out.append(np.frombuffer(synth.generate(total - pos), dtype=np.float32))
    synth.sounds_off()
    return np.concatenate(out).reshape(-1, 2).mean(axis=1) if out else np.zeros(0, np.float32)


def _finish(y: np.ndarray) -> np.ndarray | None:
    """Trailing silence (below -60 dB of the peak) trimmed, peak-normalised; ``None`` if silent
    or shorter than 0.1 s."""
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if not math.isfinite(peak) or peak < 1e-4:
        return None
    loud = np.flatnonzero(np.abs(y) > peak * 1e-3)
    y = y[: int(loud[-1]) + 1 + SAMPLE_RATE // 20]
    if y.size < SAMPLE_RATE // 10:
        return None
    return (y * (PEAK / peak)).astype(np.float32)


_SYNTHS: dict[str, tuple[Any, int]] = {}


def _font_synth(path: str) -> tuple[Any, int]:
    """One synthesizer per font and process (loading MuseScore General takes seconds)."""
    if path not in _SYNTHS:
        import tinysoundfont

        synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
        _SYNTHS[path] = (synth, synth.sfload(path))
    return _SYNTHS[path]


def render_other(
    plan: OtherPlan, *, root: str, out: str, seed: int, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """Render (or cut) one plan's clips into ``<out>/<split>/others/``; returns
    ``(plan.key, {name: record})``. ``root``: the font file for SoundFont plans, the source's
    checkout for locked ones; ``limit``: at most this many clips (small builds)."""
    e = plan.entry()
    audio_dir = Path(out) / plan.split / "others"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, *plan.key.encode()])
    clips: list[np.ndarray] = []
    if plan.kind in ("font", "font-drums"):
        player, sfid = _font_synth(root)
        drums = plan.kind == "font-drums"
        if player.sfpreset_name(sfid, e["bank"], e["program"]) is None:
            return plan.key, {}
        chan = 9 if drums else 0
        player.program_select(chan, sfid, e["bank"], e["program"], is_drums=drums)
        for _ in range(_count(CLIPS_PER_PROGRAM["drums" if drums else plan.sound], limit)):
            events = drum_pattern(rng, range(35, 82)) if drums else _melodic_events(rng, *PITCHES[plan.sound])
            end = max((t + h for t, _, _, h in events), default=0.0)
            clips.append(_render_font_events(player, chan, events, min(CLIP_S, end + 1.0)))
    elif plan.kind in ("sfz", "sfz-drums"):
        from .sfz import Clip, Event, SfzPlayer

        player = SfzPlayer(Path(root) / e["sfz"], sample_rate=SAMPLE_RATE)
        keys = list(player.keys)
        for _ in range(_count(int(e.get("clips", 80)), limit)):
            if plan.kind == "sfz-drums" and e.get("one_shots"):
                events = one_shot(rng, keys)
            elif plan.kind == "sfz-drums":
                events = drum_pattern(rng, keys)
            else:
                lo, hi = min(keys), max(keys)
                events = _melodic_events(rng, max(lo, 28), min(hi, 96))
            if not events:
                continue
            clip = Clip("pattern", tuple(Event(t, int(k), int(v), float(h)) for t, k, v, h in events))
            clips.append(player.render(clip, max_s=CLIP_S))
    elif plan.kind == "generated":
        for _ in range(_count(int(e["clips"]), limit)):
            n = int(rng.uniform(1.0, CLIP_S) * SAMPLE_RATE)
            if e.get("generator") == "oscillators":
                clips.append(oscillators(rng, n))
            else:
                clips.append(synth(rng, n) if plan.sound == "synth" else noise(rng, n))
    elif plan.kind == "recordings":
        clips.extend(_cut_recordings(rng, Path(root), e)[: _count(10**9, limit)])
    else:
        raise ValueError(f"{plan.key}: unknown kind {plan.kind!r}")
    records: dict[str, Any] = {}
    for i, y in enumerate(clips):
        fin = _finish(y)
        if fin is None:
            continue
        name = f"other_{plan.key}-{i:03d}"
        sf.write(audio_dir / f"{name}.wav", fin, SAMPLE_RATE, subtype="PCM_16")
        records[name] = {
            "name": name,
            "sound": plan.sound,
            "source": plan.source,
            "sample_group": plan.sample_group,
            "split": plan.split,
            "duration_s": round(len(fin) / SAMPLE_RATE, 3),
            **({"program": e["program"], "bank": e["bank"]} if "program" in e else {}),
        }
    return plan.key, records


def _count(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".gsm")


def _cut_recordings(rng: np.random.Generator, root: Path, e: dict[str, Any]) -> list[np.ndarray]:
    """Clips of 1-4 s from the listed recordings (folders: every audio file under them, less
    those under ``exclude``): up to ``per_file`` (default 2) cut from a long file; short files
    (single hits, clicks, spoken words) strung together with 0-0.4 s gaps until the clip is
    full. At most ``clips`` (default 300) in all."""
    from instrunet_core.audio import load_audio
    from instrunet_core.errors import DecodeError

    skip = [root / x for x in e.get("exclude", [])]
    files: list[Path] = []
    for rel in e["files"]:
        p = root / rel
        found = sorted(p.rglob("*")) if p.is_dir() else [p]
        files.extend(
            f
            for f in found
            if f.suffix.lower() in AUDIO_SUFFIXES
            and f.is_file()
            and not any(f.is_relative_to(x) for x in skip)
        )
    if not files:
        raise FileNotFoundError(f"{root}: no audio files under {e['files']}")
    per_file, limit = int(e.get("per_file", 2)), int(e.get("clips", 300))
    order = [int(i) for i in rng.permutation(len(files))]
    out: list[np.ndarray] = []
    pos = 0

    def load(i: int) -> np.ndarray:
        try:
            return load_audio(files[order[i]], target_sr=SAMPLE_RATE)
        except DecodeError:  # a collection's empty or broken file (asterisk ships a 0-frame one)
            return np.zeros(0, np.float32)

    while len(out) < limit and pos < len(order):
        y = load(pos)
        pos += 1
        if y.size == 0:
            continue
        n = int(rng.uniform(1.0, CLIP_S) * SAMPLE_RATE)
        if y.size >= n:
            for _ in range(per_file):
                a = int(rng.integers(0, y.size - n + 1))
                out.append(y[a : a + n])
            continue
        pieces = [y]
        while sum(len(q) for q in pieces) < n and pos < len(order):
            pieces.append(np.zeros(int(rng.uniform(0.0, 0.4) * SAMPLE_RATE), np.float32))
            pieces.append(load(pos))
            pos += 1
        out.append(np.concatenate(pieces)[:n])
    return out[:limit]


def load_others(split_dir: str | Path) -> list[Other]:
    """The split's "other" clips (empty when the corpus has none), sorted by name."""
    meta = Path(split_dir) / "others.json"
    if not meta.is_file():
        return []
    data = json.loads(meta.read_text())
    return [
        Other(
            name=k,
            path=Path(split_dir) / "others" / f"{k}.wav",
            sound=str(v["sound"]),
            source=str(v["source"]),
            sample_group=str(v["sample_group"]),
            split=str(v["split"]),
            duration_s=float(v["duration_s"]),
        )
        for k, v in sorted(data.items())
    ]


#: Sounds made by code for the open-set dev set (whose real sources lack synthesizers):
#: ``(sound, clips)``; training draws its generated noise at example time instead.
GENERATED_DEV = (("synth", 150), ("noise", 100))

#: Oscillator tones made by code for the train split (:func:`oscillators`): clips.
GENERATED_TRAIN_OSCILLATORS = 2000


def plan_generated_others() -> list[OtherPlan]:
    """Generated synthesizer tones and noises for the dev split (:data:`GENERATED_DEV`), and
    the train split's oscillator tones (:data:`GENERATED_TRAIN_OSCILLATORS`)."""
    dev = [
        OtherPlan(f"generated-{sound}", sound, "generated", "generated", "dev", "generated", (("clips", n),))
        for sound, n in GENERATED_DEV
    ]
    train = OtherPlan(
        "generated-oscillators",
        "synth",
        "generated-oscillators",
        "generated-oscillators",
        "train",
        "generated",
        (("clips", GENERATED_TRAIN_OSCILLATORS), ("generator", "oscillators")),
    )
    return [*dev, train]


# --------------------------------------------------------------------------- generated sound


def synth(rng: np.random.Generator, n: int, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of a subtractive or FM synthesizer, peak 0.9: a note or an arpeggio of
    saw, square, pulse, a detuned "supersaw" or two-operator FM, through a resonant low-pass
    whose cut-off sweeps, with an attack-decay-sustain-release envelope."""
    t = np.arange(n) / sr
    n_notes = 1 if rng.random() < 0.5 else int(rng.integers(3, 9))
    base = float(440 * 2 ** ((rng.integers(28, 84) - 69) / 12))
    steps = rng.choice([0, 3, 4, 5, 7, 12], size=n_notes)
    f = np.repeat(base * 2 ** (steps / 12), int(np.ceil(n / n_notes)))[:n]
    phase = 2 * np.pi * np.cumsum(f) / sr
    kind = ("saw", "square", "pulse", "supersaw", "fm")[int(rng.integers(5))]
    if kind == "saw":
        y = 2 * ((phase / (2 * np.pi)) % 1.0) - 1
    elif kind == "square":
        y = np.sign(np.sin(phase))
    elif kind == "pulse":
        y = np.where((phase / (2 * np.pi)) % 1.0 < rng.uniform(0.1, 0.3), 1.0, -1.0)
    elif kind == "supersaw":
        y = sum(2 * ((phase * (1 + d) / (2 * np.pi)) % 1.0) - 1 for d in rng.uniform(-0.01, 0.01, 5))
    else:
        index = rng.uniform(1, 8) * np.exp(-t * rng.uniform(0.5, 5))
        y = np.sin(phase + index * np.sin(phase * rng.choice([1.0, 2.0, 3.5])))
    # resonant low-pass (two one-pole stages with feedback), cut-off sweeping
    cut = np.exp(np.linspace(np.log(rng.uniform(300, 6000)), np.log(rng.uniform(300, 6000)), n))
    a = np.exp(-2 * np.pi * cut / sr)
    res = rng.uniform(0.0, 0.6)
    z1 = z2 = 0.0
    out = np.empty(n)
    for i in range(n):
        x = y[i] - res * z2
        z1 = (1 - a[i]) * x + a[i] * z1
        z2 = (1 - a[i]) * z1 + a[i] * z2
        out[i] = z2
    att, dec, sus, rel = (
        rng.uniform(0.002, 0.3),
        rng.uniform(0.05, 0.8),
        rng.uniform(0.2, 1.0),
        rng.uniform(0.05, 0.5),
    )
    env = np.interp(t, [0, att, att + dec, max(att + dec, t[-1] - rel), t[-1] + 1e-9], [0, 1, sus, sus, 0])
    out = out * env
    return (out * (PEAK / max(float(np.abs(out).max()), 1e-9))).astype(np.float32)


#: :func:`oscillators`' waves.
OSCILLATOR_KINDS = ("additive", "wavetable", "pwm", "sync", "ring", "chip")


def _midi_hz(k: float) -> float:
    return float(440.0 * 2 ** ((k - 69) / 12))


def _additive(phase: np.ndarray, f: np.ndarray, amps: np.ndarray, sr: int) -> np.ndarray:
    """``sum_k amps[k] sin((k+1) phase)``, each partial silent where it passes 0.45 sr
    (band-limited: no aliasing); ``f``: the instantaneous fundamental."""
    y = np.zeros(len(phase))
    for k, a in enumerate(amps, start=1):
        if a == 0.0:
            continue
        keep = k * f < 0.45 * sr
        if not keep.any():
            break
        y += a * np.sin(k * phase) * keep
    return y


def _random_spectrum(rng: np.random.Generator, n_partials: int) -> np.ndarray:
    k = np.arange(1, n_partials + 1, dtype=float)
    amps = k ** -rng.uniform(0.3, 2.0) * rng.uniform(0.2, 1.0, n_partials)
    if rng.random() < 0.3:  # odd partials only, a hollow wave
        amps[1::2] = 0.0
    if rng.random() < 0.3:  # a formant-like bump
        centre = rng.uniform(2, n_partials)
        amps *= 1 + 4 * np.exp(-0.5 * ((k - centre) / rng.uniform(1, 4)) ** 2)
    return amps


def _pitch_track(rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A melody's fundamental per sample, its gate (1 while a note sounds) and its note starts:
    one held note, a line of 2-8 notes (with or without glide) or a fast chiptune arpeggio."""
    style = ("held", "line", "arp")[int(rng.integers(3))]
    root = float(rng.integers(30, 86))
    if style == "held":
        keys, lens = [root], [n]
    else:
        count = int(rng.integers(2, 9)) if style == "line" else int(rng.uniform(8, 20) * n / sr)
        count = max(count, 2)
        steps = rng.choice([-12, -7, -5, -3, 0, 2, 3, 4, 5, 7, 10, 12], size=count)
        if style == "line":  # a walk within two octaves, notes of random lengths
            keys = list(root + np.cumsum(steps) % 24 - 12)
            cuts = np.sort(rng.choice(np.arange(1, n), size=count - 1, replace=False))
            lens = list(np.diff([0, *cuts, n]))
        else:  # an arpeggio: equal steps, the last one takes what is left
            keys = list(root + steps % 19)
            lens = [n // count] * (count - 1) + [n - (n // count) * (count - 1)]
    f = np.concatenate([np.full(int(m), _midi_hz(k)) for k, m in zip(keys, lens, strict=True)])[:n]
    starts = [int(x) for x in np.cumsum([0, *lens[:-1]])]
    if style == "line" and rng.random() < 0.5:  # portamento: glide between the notes
        tau = int(rng.uniform(0.01, 0.12) * sr)
        kern = np.exp(-np.arange(4 * tau) / tau)
        g = np.convolve(np.log(f), kern / kern.sum())[:n]
        g[: 4 * tau] = np.log(f[: 4 * tau])
        f = np.exp(g)
    gate = np.ones(n)
    if style != "held" and rng.random() < 0.6:  # detached notes: a gap before each next one
        for s, m in zip(starts, lens, strict=True):
            gate[s + int(m * rng.uniform(0.5, 0.9)) : s + int(m)] = 0.0
    if rng.random() < 0.4:  # an LFO on the pitch: vibrato or a slow drift
        t = np.arange(n) / sr
        f = f * 2 ** (rng.uniform(5, 40) / 1200 * np.sin(2 * np.pi * rng.uniform(0.2, 7) * t))
    return f, gate, starts


def _block_filter(rng: np.random.Generator, y: np.ndarray, sr: int, block: int = 256) -> np.ndarray:
    """A 2nd-order Butterworth low-, band- or high-pass whose cut-off follows an envelope or an
    LFO, recomputed every ``block`` samples with the filter state carried over."""
    from scipy.signal import butter, lfilter, lfilter_zi

    n = len(y)
    kind = ("lowpass", "lowpass", "bandpass", "highpass")[int(rng.integers(4))]
    lo, hi = rng.uniform(200, 1500), rng.uniform(2000, 9000)
    t = np.arange(0, n, block) / sr
    if rng.random() < 0.5:
        shape = np.exp(-t / rng.uniform(0.05, 1.5))  # an envelope closing the filter
    else:
        shape = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 6) * t + rng.uniform(0, 6.3))
    cuts = lo * (hi / lo) ** shape
    out = np.empty(n)
    zi = None
    for i, c in enumerate(cuts):
        w = min(float(c) / (sr / 2), 0.95)
        if kind == "bandpass":
            b, a = butter(1, [w / 1.5, min(w * 1.5, 0.97)], btype="bandpass")
        else:
            b, a = butter(2, w, btype=kind)
        if zi is None:
            zi = lfilter_zi(b, a) * y[0]
        seg = y[i * block : (i + 1) * block]
        out[i * block : i * block + len(seg)], zi = lfilter(b, a, seg, zi=zi)
    return out


def oscillators(rng: np.random.Generator, n: int, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of bare electronic oscillators, peak 0.9, for training's "other": one of
    :data:`OSCILLATOR_KINDS` (band-limited additive waves of random spectra, a wavetable
    morphing between two such waves, a pulse whose width an LFO moves, a hard-synced wave whose
    ratio sweeps, two oscillators ring-modulated, a square-wave chiptune arpeggio), played as a
    held note, a line (glides, gaps, vibrato) or an arpeggio, sometimes as a 2-4 voice chord,
    through a filter whose cut-off moves and an amplitude envelope per note. A generator of its
    own, apart from the dev set's :func:`synth`."""
    kind = OSCILLATOR_KINDS[int(rng.integers(len(OSCILLATOR_KINDS)))]
    f, gate, starts = _pitch_track(rng, n, sr)
    voices = [1.0]
    if kind != "chip" and rng.random() < 0.3:  # a chord: 2-4 voices over the line
        voices += [
            float(2 ** (s / 12))
            for s in rng.choice([3, 4, 7, 10, 12], size=int(rng.integers(1, 4)), replace=False)
        ]
    y = np.zeros(n)
    n_partials = int(rng.integers(6, 48))
    for v in voices:
        fv = f * v * 2 ** (rng.normal(0, 6) / 1200)  # each voice a few cents apart
        phase = 2 * np.pi * np.cumsum(fv) / sr + rng.uniform(0, 6.3)
        if kind == "additive":
            w = _additive(phase, fv, _random_spectrum(rng, n_partials), sr)
        elif kind == "wavetable":
            a, b = _random_spectrum(rng, n_partials), _random_spectrum(rng, n_partials)
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 3) * np.arange(n) / sr)
            w = (1 - mix) * _additive(phase, fv, a, sr) + mix * _additive(phase, fv, b, sr)
        elif kind == "pwm":
            width = 0.5 + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(0.1, 5) * np.arange(n) / sr)
            w = np.where((phase / (2 * np.pi)) % 1.0 < width, 1.0, -1.0)
            w = np.convolve(w, np.ones(3) / 3, mode="same")  # a little smoothing against aliasing
        elif kind == "sync":
            ratio = np.exp(np.linspace(np.log(rng.uniform(1.0, 2.0)), np.log(rng.uniform(1.5, 5.0)), n))
            master = (phase / (2 * np.pi)) % 1.0
            w = 2 * ((master * ratio) % 1.0) - 1
            w = np.convolve(w, np.ones(3) / 3, mode="same")
        elif kind == "ring":
            ring_ratio = float(rng.choice([1.41, 1.73, 2.5, 3.14, 0.5 * rng.uniform(1, 7)]))
            w = _additive(phase, fv, _random_spectrum(rng, 8), sr) * np.sin(phase * ring_ratio)
        else:  # chip: a square wave, stepping fast
            w = np.where(np.sin(phase) >= 0, 1.0, -1.0) * (0.25 if rng.random() < 0.5 else 1.0)
        y += w / len(voices)
    if kind != "chip" or rng.random() < 0.3:
        y = _block_filter(rng, y, sr)
    # amplitude: attack-decay-sustain per note, the gate for the release
    env = np.zeros(n)
    att, dec, sus = rng.uniform(0.001, 0.15), rng.uniform(0.05, 0.6), rng.uniform(0.3, 1.0)
    for s, e in zip(starts, [*starts[1:], n], strict=True):
        t = np.arange(e - s) / sr
        env[s:e] = np.interp(t, [0, att, att + dec, 1e9], [0, 1, sus, sus])
    release = np.exp(-1.0 / (rng.uniform(0.02, 0.3) * sr))
    amp = env * gate
    out = np.empty(n)
    level = 0.0
    for i in range(n):  # a one-pole release: the note fades where the gate closes
        level = amp[i] if amp[i] >= level else level * release + amp[i] * (1 - release)
        out[i] = level
    y = y * out
    if rng.random() < 0.3:  # an echo
        d = int(rng.uniform(0.08, 0.4) * sr)
        if d < n:
            y[d:] += rng.uniform(0.2, 0.5) * y[:-d]
    y = np.nan_to_num(y)
    return (y * (PEAK / max(float(np.abs(y).max()), 1e-9))).astype(np.float32)


# --------------------------------------------------------------------------- generated noise


def noise(rng: np.random.Generator, n: int, kind: str | None = None, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of generated non-instrument sound, peak 0.9: white, pink (-3 dB/octave),
    brown (-6 dB/octave), mains hum (50 or 60 Hz and harmonics, a little noise) or crackle
    (sparse clicks on faint noise); ``kind`` drawn when ``None``."""
    kind = kind or NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    if kind in ("white", "pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sr)
        f[0] = f[1]
        spec *= f ** {"white": 0.0, "pink": -0.5, "brown": -1.0}[kind]
        spec[0] = 0.0  # no DC offset
        y = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / sr
        base = 50.0 if rng.random() < 0.5 else 60.0
        y = np.zeros(n)
        for h in range(1, 8):
            y += rng.uniform(0.1, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.3))
        y = y + 0.01 * rng.standard_normal(n)
    elif kind == "crackle":
        y = 0.02 * rng.standard_normal(n)
        clicks = rng.integers(0, n, size=int(rng.uniform(5, 60) * n / sr))
        y[clicks] += rng.uniform(-1, 1, size=clicks.size)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")
    y = np.asarray(y, dtype=np.float64)
    return (y * (PEAK / max(float(np.abs(y).max()), 1e-9))).astype(np.float32)
