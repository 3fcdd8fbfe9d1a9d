"""The SoundFont corpus builder: a tiny real build, the split rule on the full plan, resuming, stats."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import training.corpus as corpus
from instrunet_core.labels import FAMILIES
from training.nsynth import load_audio, load_split

SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # On a fresh machine this fetches the Debian SoundFont packages (apt-get download): CI builds for real.
    out = tmp_path_factory.mktemp("corpus")
    assert corpus.main(["build", "--out", str(out), "--limit", "2", "--workers", "1", "--no-progress"]) == 0
    return out


# --------------------------------------------------------------------------- the plan (no rendering)


def test_plan_splits_by_instrument_and_program() -> None:
    plan = corpus.plan_instruments()
    fonts = {f.key: f for f in corpus.SOUNDFONTS}
    assert len(plan) == len(fonts) * sum(len(p) for p in corpus.PROGRAMS.values())
    assert [i.instrument for i in plan] == list(range(len(plan)))
    assert len({i.instrument_str for i in plan}) == len(plan)
    assert len({(i.font, i.program) for i in plan}) == len(plan)
    for split in SPLITS:
        assert {i.family for i in plan if i.split == split} == set(FAMILIES), split
    # test: exactly the TimGM6mb instruments
    assert {i.split for i in plan if i.font == corpus.TEST_FONT} == {"test"}
    assert {i.font for i in plan if i.split == "test"} == {corpus.TEST_FONT}
    # valid/train: within a sample group a program has one split (so never FluidR3 vs MuseScore)
    split_of: dict[tuple[str, int], set[str]] = collections.defaultdict(set)
    for i in plan:
        if i.font != corpus.TEST_FONT:
            split_of[(fonts[i.font].sample_group, i.program)].add(i.split)
    assert all(len(s) == 1 for s in split_of.values()), split_of
    held = corpus.held_out_programs()
    assert set(held) == set(corpus.training_groups()) == {"fluidr3", "csound"}
    for i in plan:
        if i.font != corpus.TEST_FONT:
            assert (i.split == "valid") == (i.program in held[fonts[i.font].sample_group][i.family])
    # per sample group: no program in both train and valid
    groups: dict[str, dict[str, set[int]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for i in plan:
        groups[fonts[i.font].sample_group][i.split].add(i.program)
    for group, by_split in groups.items():
        assert not by_split["train"] & by_split["valid"], group
    assert fonts["fluidr3"].sample_group == fonts["musescore"].sample_group
    # crossed: every program is trained on through at least one sample group
    trained = {i.program for i in plan if i.split == "train"}
    assert trained == {p for progs in corpus.PROGRAMS.values() for p in progs}


def test_held_out_programs_are_seeded() -> None:
    a, b = corpus.held_out_programs(), corpus.held_out_programs()
    assert a == b
    assert a != corpus.held_out_programs(seed=1)
    for fam in FAMILIES:
        by_group = [set(a[g][fam]) for g in corpus.training_groups()]
        for progs in by_group:
            assert 1 <= len(progs) < len(corpus.PROGRAMS[fam]) and progs <= set(corpus.PROGRAMS[fam])
        assert not by_group[0] & by_group[1], fam  # a different quarter from each group


# --------------------------------------------------------------------------- a small real build


def _examples(root: Path, split: str) -> dict:
    return json.loads((root / split / "examples.json").read_text())


def test_every_split_has_every_family(small_corpus: Path) -> None:
    for split in SPLITS:
        notes = load_split(small_corpus / split)
        assert {n.family_str for n in notes} == set(FAMILIES), split
        assert all(n.extra["split"] == split for n in notes)
    assert (small_corpus / "corpus.json").is_file()


def test_wav_format_and_loader(small_corpus: Path) -> None:
    n_expected = int((corpus.HOLD_S + corpus.RELEASE_S) * corpus.SAMPLE_RATE)
    for split in SPLITS:
        for note in load_split(small_corpus / split):
            info = sf.info(note.path)
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (
                22050,
                1,
                "PCM_16",
                n_expected,
            )
            y = load_audio(note)
            assert y.dtype == np.float32 and y.shape == (n_expected,)
            assert 0.5 < float(np.abs(y).max()) <= corpus.PEAK + 1e-3


def test_no_instrument_in_two_splits(small_corpus: Path) -> None:
    fonts = {f.key: f for f in corpus.SOUNDFONTS}
    seen_inst: dict[int, str] = {}
    seen_pair: dict[tuple[str, int], str] = {}
    group_programs: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    numbers = []
    for split in SPLITS:
        for e in _examples(small_corpus, split).values():
            assert seen_inst.setdefault(e["instrument"], split) == split
            assert seen_pair.setdefault((e["soundfont"], e["program"]), split) == split
            group_programs[(fonts[e["soundfont"]].sample_group, split)].add(e["program"])
            numbers.append(e["note"])
    assert sorted(numbers) == list(range(len(numbers)))
    for group in {f.sample_group for f in corpus.SOUNDFONTS}:
        assert not group_programs[(group, "train")] & group_programs[(group, "valid")], group


def test_resume_renders_nothing_and_is_identical(small_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {s: (small_corpus / s / "examples.json").read_bytes() for s in SPLITS}
    wav_times = {p: p.stat().st_mtime_ns for p in small_corpus.glob("*/audio/*.wav")}

    def refuse(*args, **kwargs):
        raise AssertionError("a finished instrument was rendered again")

    monkeypatch.setattr(corpus, "render_instrument", refuse)
    corpus.build(small_corpus, limit=2, workers=1, progress=False)
    assert {s: (small_corpus / s / "examples.json").read_bytes() for s in SPLITS} == before
    assert {p: p.stat().st_mtime_ns for p in small_corpus.glob("*/audio/*.wav")} == wav_times


def test_other_settings_refused(small_corpus: Path) -> None:
    with pytest.raises(SystemExit, match=r"other settings \(limit: 2 -> 3;"):
        corpus.build(small_corpus, limit=3, workers=1, progress=False)


def test_a_note_owes_nothing_to_what_was_rendered_before(small_corpus: Path) -> None:
    """The synthesizer ended sounds with a quick release that reached the next note's first
    samples: a resumed build differed from a fresh one (a tools audit: 42 samples of a vocal
    note). A note rendered after another instrument's is the note rendered first."""
    tinysoundfont = pytest.importorskip("tinysoundfont")
    font = next(f for f in corpus.SOUNDFONTS if f.key == "fluidr3")
    path = str(corpus.fetch_soundfonts(corpus.default_cache(), [font])["fluidr3"])

    def synth(program: int):  # a fresh synthesizer (the builder shares one per process)
        s = tinysoundfont.Synth(samplerate=corpus.SAMPLE_RATE)
        sfid = s.sfload(path)
        s.program_select(0, sfid, 0, program)
        return s, sfid

    s, _ = synth(53)
    first = corpus.render_note(s, 60, 100)
    s, sfid = synth(48)
    corpus.render_note(s, 72, 127)  # strings, loud, before it
    s.program_select(0, sfid, 0, 53)
    after = corpus.render_note(s, 60, 100)
    assert first is not None and after is not None and np.array_equal(first, after)


def test_stats_cli(small_corpus: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert corpus.main(["stats", str(small_corpus)]) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert all(s in lines[0] for s in SPLITS)
    c = corpus.counts(small_corpus)
    for fam in FAMILIES:
        (row,) = [ln for ln in lines if ln.split()[0] == fam]
        numbers = [int(x) for x in row.replace("/", " ").split()[1:]]
        assert numbers == [v for s in SPLITS for v in (c[s][fam]["notes"], c[s][fam]["instruments"])]
    total = [int(x) for x in lines[-1].replace("/", " ").split()[1:]]
    assert total[0::2] == [len(_examples(small_corpus, s)) for s in SPLITS]
    assert corpus.main(["stats", str(tmp_path)]) == 2
    assert "not a corpus folder" in capsys.readouterr().err


def test_spectrogram_figure(small_corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from training.figures import main as figures_main
    from training.figures import pick_examples

    ex = pick_examples(load_split(small_corpus / "valid"), per_family=2, seed=0)
    assert set(ex) == set(FAMILIES) and all(len(v) == 2 for v in ex.values())
    assert all(len({n.instrument for n in v}) == 2 for v in ex.values())  # different instruments
    assert (
        figures_main(
            [
                "--corpus",
                str(small_corpus),
                "--split",
                "train",
                "test",
                "--per-family",
                "2",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    for split in ("train", "test"):
        png = tmp_path / f"s_{split}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 400_000


def test_without_a_mirror_folder_the_corpus_is_soundfonts_only(small_corpus: Path) -> None:
    # CI builds from the Debian fonts alone: no real library, no dev split.
    assert not (small_corpus / "dev").exists()
    assert json.loads((small_corpus / "corpus.json").read_text())["real_instruments"] == []


def test_layout_libraries_and_key_ranges(tmp_path: Path) -> None:
    """A WAV-only library (one file per key) becomes an SFZ map; ``keys`` limits what is played."""
    from training.sfz import SfzPlayer

    folder = tmp_path / "notes"
    folder.mkdir()
    t = np.arange(22050) / 22050
    for key in (60, 62, 64):
        hz = 440 * 2 ** ((key - 69) / 12)
        sf.write(
            folder / f"note{key:03d}-do.wav", (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 22050
        )
    player = SfzPlayer(corpus.layout_sfz(folder, tmp_path / "x.sfz"), sample_rate=22050)
    assert list(player.keys) == [60, 62, 64]
    inst = corpus.RealInstrument(
        0, "vocal_acoustic_000", "vocal", "lib", "x", "dev", "g", (("keys", [61, 64]),)
    )
    assert corpus.playable_keys(inst, player.keys) == [62, 64]


def test_a_set_of_other_sounds_whose_plan_changed_is_rendered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other sounds resume by plan key; a plan whose clip count changed (the lock's, a
    generator's) is rendered again, its old clips removed; an unchanged one is skipped."""
    from training import others

    def plan(n: int) -> list[others.OtherPlan]:
        return [
            others.OtherPlan(
                "generated-test", "noise", "generated", "generated", "train", "generated", (("clips", n),)
            )
        ]

    def build(n: int) -> dict[str, object]:
        monkeypatch.setattr(others, "plan_font_others", lambda *a, **k: plan(n))
        corpus._build_others(tmp_path, {}, {}, None, None, 1, 1)
        return json.loads((tmp_path / ".parts" / "others-generated-test.json").read_text())

    assert len(build(3)) == 3
    wavs = sorted((tmp_path / "train" / "others").glob("*.wav"))
    times = [p.stat().st_mtime_ns for p in wavs]
    assert len(build(3)) == 3  # unchanged: nothing rendered again
    assert [p.stat().st_mtime_ns for p in wavs] == times
    assert len(build(2)) == 2  # the count changed: rendered again, the third clip gone
    assert len(list((tmp_path / "train" / "others").glob("*.wav"))) == 2
    assert json.loads((tmp_path / ".parts" / "other-plans.json").read_text())["generated-test"] == {
        "clips": 2
    }


# --------------------------------------------------------------------------- pinned SoundFonts


FONT_PATH = "usr/share/sounds/sf2/Fake.sf2"


def _font(sha256: str) -> corpus.SoundFont:
    return corpus.SoundFont(
        "fake", "fake-soundfont", FONT_PATH, "MIT", "fake", "a test file", "1.0-1", sha256
    )


def _deb(tmp_path: Path, version: str, content: bytes) -> Path:
    """A Debian package ``fake-soundfont`` of ``version`` holding ``content`` as the font."""
    import subprocess

    tree = tmp_path / f"pkg-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: fake-soundfont\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    (tree / FONT_PATH).parent.mkdir(parents=True)
    (tree / FONT_PATH).write_bytes(content)
    deb = tmp_path / f"fake-soundfont_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True
    )
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb builds the test packages")
def test_fonts_are_fetched_at_their_pinned_version_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SoundFonts were rendered from whatever version apt offered. They are asked for at the
    pinned version; a font unpacked in the cache by an earlier build that is not the pinned one
    is unpacked again from the pinned package (a review); a font that still differs (the
    archive lost the pinned version) is used with a warning."""
    import hashlib
    import warnings

    pinned_bytes, other_bytes = b"RIFF the pinned font", b"RIFF a later version's font"
    archive = {"1.0-1": _deb(tmp_path, "1.0-1", pinned_bytes), "2.0-1": _deb(tmp_path, "2.0-1", other_bytes)}
    asked: list[str] = []

    def download(package: str, dest: Path) -> None:  # apt-get download, from the fake archive
        asked.append(package)
        version = package.split("=")[1] if "=" in package else "2.0-1"
        if version not in archive:
            raise RuntimeError(f"apt-get download {package} failed: E: Version '{version}' was not found")
        shutil.copy(archive[version], dest / archive[version].name)

    monkeypatch.setattr(corpus, "_apt_download", download)
    font = _font(hashlib.sha256(pinned_bytes).hexdigest())
    cache = tmp_path / "cache"
    stale = cache / "soundfonts" / "root" / FONT_PATH
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"RIFF unpacked by a build before the pins")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert corpus.fetch_soundfonts(cache, [font]) == {"fake": stale}
    assert stale.read_bytes() == pinned_bytes and asked == ["fake-soundfont=1.0-1"]
    # the archive no longer has the pinned version: its current one, said
    gone = corpus.SoundFont(**{**corpus.dataclasses.asdict(font), "version": "0.9-1"})
    other = tmp_path / "cache2"
    with pytest.warns(UserWarning) as said:
        assert corpus.fetch_soundfonts(other, [gone]) == {"fake": other / "soundfonts" / "root" / FONT_PATH}
    text = " ".join(str(w.message) for w in said)
    assert "fake-soundfont 0.9-1, the version the corpus is pinned to, cannot be fetched" in text
    assert "Fake.sf2: the fake SoundFont is not the pinned one" in text
    assert (other / "soundfonts" / "root" / FONT_PATH).read_bytes() == other_bytes
    # built again: the pinned version is asked for, and without it the cached font is kept
    # (it was deleted and the current package fetched and unpacked again on every build)
    asked.clear()
    with pytest.warns(UserWarning, match="not the pinned one"):
        corpus.fetch_soundfonts(other, [gone])
    assert asked == ["fake-soundfont=0.9-1"]
    rows = {r["key"]: r for r in corpus.font_pins({"fluidr3": stale})}
    assert (
        rows["fluidr3"]["file_sha256"] == hashlib.sha256(pinned_bytes).hexdigest()
        and rows["fluidr3"]["pinned"] is False
    )


def test_the_corpus_summary_records_which_fonts_were_pinned(small_corpus: Path) -> None:
    rows = {r["key"]: r for r in json.loads((small_corpus / "corpus.json").read_text())["soundfonts"]}
    assert set(rows) == {f.key for f in corpus.SOUNDFONTS}
    for f in corpus.SOUNDFONTS:
        row = rows[f.key]
        assert row["version"] == f.version and len(row["sha256"]) == 64
        # this machine's fonts are the Debian versions the table pins (a new Debian release
        # would be seen here first, and docs/data.md updated with it)
        assert row["file_sha256"] == f.sha256 and row["pinned"] is True, (f.key, row)


def test_the_data_card_quotes_the_pins() -> None:
    card = (Path(__file__).resolve().parent.parent / "docs" / "data.md").read_text()
    for f in corpus.SOUNDFONTS:
        assert f"`{f.package}` {f.version} |" in card and f"`{f.sha256}`" in card, f.key
