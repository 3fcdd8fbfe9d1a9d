"""Nearest-neighbour search over embeddings (``instrunet_core.search``, ``instrunet search``).

The tiny open-set graph of tests/conftest.py embeds each window as three band means (tones and
noise point different ways); the last test searches real cuts of the bundled examples with the
shipped default model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone
from test_open_set import _noise, _open_set_dir

import instrunet_core as inet
from instrunet_core.cli import main as cli_main
from instrunet_core.errors import InputError
from instrunet_core.registry import Registry
from instrunet_core.search import Library, Match, Moment, same_weights

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def open_model(tmp_path: Path) -> inet.Model:
    return inet.load_model(_open_set_dir(tmp_path))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "lib"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "tone_440.wav", tone(4.0), SR)
    sf.write(d / "sub" / "tone_330.flac", tone(4.0, freq=330.0), SR)
    sf.write(d / "noise.wav", _noise(4.0), SR)
    return d


def test_nearest_ranks_by_cosine_similarity_and_leaves_out_the_query(
    open_model: inet.Model, folder: Path
) -> None:
    files = sorted(str(p) for p in folder.rglob("*.*"))
    lib = Library.embed(open_model, files)
    assert len(lib) == 3 and lib.vectors.shape == (3, 3) and lib.model["name"] == "openset"
    q = str(folder / "tone_440.wav")
    query = open_model.embed(q).vector
    ranked = lib.nearest(query, k=10)
    # itself first (similarity 1), then the other tone, the noise last
    assert [Path(m.path).name for m in ranked] == ["tone_440.wav", "tone_330.flac", "noise.wav"]
    assert ranked[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert ranked[1].similarity > 0.99 > ranked[2].similarity
    left = lib.nearest(
        query, k=1, exclude=[str(folder / "." / "tone_440.wav")]
    )  # the same file, spelled otherwise
    assert [Path(m.path).name for m in left] == ["tone_330.flac"]
    assert Match("a", 0.5).to_dict() == {"path": "a", "similarity": 0.5}
    assert Match("a", 0.5, Moment(1.0, 3.95, 0.9)).to_dict()["where"] == {
        "start": 1.0,
        "end": 3.95,
        "similarity": 0.9,
    }
    assert Library().nearest(query) == []
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        lib.nearest(query, k=0)
    with pytest.raises(InputError, match="the query has 2 values"):
        lib.nearest([1.0, 0.0])


def test_read_takes_what_embed_writes_and_names_the_line_of_a_bad_record(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(str(p) for p in folder.rglob("*.*"))
    assert cli_main(["embed", *files, "--model", str(open_model.path)]) == 0
    index = tmp_path / "lib.jsonl"
    index.write_text(capsys.readouterr().out + "\n")  # a trailing blank line is skipped
    lib = Library.read(index)
    assert lib.paths == files
    np.testing.assert_allclose(lib.vectors, Library.embed(open_model, files).vectors, rtol=1e-6)

    good = index.read_text().splitlines()[0]
    rec = json.loads(good)
    assert (rec["schema"], rec["path"]) == ("instrunet.embedding/1", str(files[0]))
    assert rec["instrunet_version"] == inet.__version__
    old = {k: v for k, v in rec.items() if k not in ("schema", "instrunet_version")}
    assert Library.read(io.StringIO(json.dumps(old))).paths == [str(files[0])]  # lines from before the keys
    cases = {
        "'instrunet.analysis/3' document, not an embedding record": json.dumps(
            {**rec, "schema": "instrunet.analysis/3"}
        ),
        "not an embedding record": json.dumps({"path": "x"}),
        "'model' is not an object": json.dumps({**rec, "model": "family"}),
        "not a list of numbers": json.dumps({**rec, "vector": ["a", "b", "c"]}),
        "finite numbers": json.dumps({**rec, "vector": [1.0, float("nan"), 0.0]}),
        "4 values": json.dumps({**rec, "vector": [0.5, 0.5, 0.5, 0.5]}),
        "cannot be compared": json.dumps(
            {**rec, "model": {**rec["model"], "sha256": "0" * 64, "embedding_sha256": "0" * 64}}
        ),
        "a window lacks": json.dumps({**rec, "windows": [{"start": 0.0, "vector": [1, 0, 0]}]}),
        "is not a number": json.dumps(
            {**rec, "windows": [{"start": "soon", "end": 1.0, "silent": False, "vector": [1, 0, 0]}]}
        ),
        "one finite vector of 3 values": json.dumps(
            {**rec, "windows": [{"start": 0.0, "end": 1.0, "silent": False, "vector": [1, 0]}]}
        ),
        "'vector' is not a non-empty": json.dumps(
            {**rec, "windows": [{"start": 0.0, "end": 1.0, "silent": False, "vector": []}]}
        ),
    }
    for msg, line in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(good + "\n" + line + "\n")
        with pytest.raises(InputError, match=msg) as e:
            Library.read(bad)
        assert str(e.value).startswith(f"{bad}:2:"), str(e.value)
    # a line that is not JSON: alone, not a library; beside whole records, a record cut short
    # (a full disk, `embed` stopped by a signal: an interruption audit) left out and said, and
    # a record `embed >>` appended to it read from where it starts
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(InputError, match=f"{bad}:1: not JSON"):
        Library.read(bad)
    second = index.read_text().splitlines()[1]
    bad.write_text(good + "\n" + second[: len(second) // 2] + "\n")
    with pytest.warns(
        RuntimeWarning, match=r"bad\.jsonl: line 2: not a whole record \(a write cut short\?\): left out"
    ):
        assert Library.read(bad).paths == [files[0]]
    bad.write_text(good + "\n" + second[: len(second) // 2] + second + "\n")
    with pytest.warns(RuntimeWarning, match="line 2: not a whole record"):
        assert Library.read(bad).paths == files[:2]
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not a text file"):
        Library.read(tmp_path / "bin.jsonl")
    with pytest.raises(InputError, match="cannot read"):
        Library.read(tmp_path / "missing.jsonl")


def test_where_is_the_window_most_like_the_query(
    open_model: inet.Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recording of noise, silence, then a tone: a tone query is most like its tone, a noise
    query its noise; the same from `instrunet embed --windows` output; a recording named by two
    libraries is ranked once."""
    f = tmp_path / "noise_gap_tone.wav"
    sf.write(f, np.concatenate([_noise(6.0), np.zeros(3 * SR, np.float32), tone(6.0)]), SR)
    lib = Library.embed(open_model, [str(f)], windows=True)
    for query, lo, hi in ((tone(4.0), 9.0, 15.0), (_noise(4.0), 0.0, 6.0)):
        (m,) = lib.nearest(open_model.embed(query, SR).vector)
        assert m.where is not None and lo - 1.5 <= m.where.start and m.where.end <= hi + 1.5, m.where
        assert m.where.similarity > 0.99
    assert (
        Library.embed(open_model, [str(f)]).nearest(open_model.embed(tone(4.0), SR).vector)[0].where is None
    )

    model = ["--model", str(open_model.path)]
    assert cli_main(["embed", str(f), "--windows", *model]) == 0
    index = tmp_path / "w.jsonl"
    index.write_text(capsys.readouterr().out)
    from_file = Library.read(index)
    q = tmp_path / "q.wav"
    sf.write(q, tone(4.0), SR)
    a = from_file.nearest(open_model.embed(q).vector)[0].where
    b = lib.nearest(open_model.embed(q).vector)[0].where
    assert a is not None and b is not None  # the JSON keeps times to 0.1 ms
    assert (a.start, a.end, a.similarity) == pytest.approx((b.start, b.end, b.similarity), abs=1e-4)
    assert (
        cli_main(["search", str(q), str(index), str(tmp_path / "noise_gap_tone.wav"), "--where", *model]) == 0
    )
    out, err = capsys.readouterr()
    (line,) = out.splitlines()  # named twice, ranked once, counted once
    assert "1 of 1 recordings" in err
    assert line.split()[1] == str(f) and " at 0:" in line
    assert cli_main(["search", str(q), str(index), "--where", "--json", *model]) == 0
    doc = json.loads(capsys.readouterr().out)
    from test_output import _valid

    _valid("search.json", doc)
    assert doc["instrunet_version"] == inet.__version__
    assert doc["matches"][0]["where"]["start"] >= 7.5


def test_same_weights_is_the_sha256_when_both_have_one() -> None:
    a = {"name": "family", "version": "2.1.0", "sha256": "a" * 64, "provider": "CPUExecutionProvider"}
    assert same_weights(a, {**a, "provider": "CUDAExecutionProvider"})
    assert not same_weights(a, {**a, "sha256": "b" * 64})
    assert same_weights({"name": "m", "version": "1.0.0"}, {"name": "m", "version": "1.0.0"})
    assert not same_weights({"name": "m", "version": "1.0.0"}, {"name": "m", "version": "1.0.1"})


def test_the_same_weights_under_another_manifest_are_not_searched_together(
    open_model: inet.Model, folder: Path
) -> None:
    """An upgrade audit: vectors of one ONNX file read through two manifests (another front end:
    cosine 0.82 for the same file) were ranked together; records name their manifest since 0.2.0,
    and the digest of what decides their vectors since 2026-12-07 (``embedding_sha256``: then
    another manifest with the same digest is searched with them). Records without the digest
    follow the manifests."""
    lib = Library.embed(open_model, [str(folder / "tone_440.wav")])
    digest = lib.model["manifest_sha256"]
    assert digest == open_model.manifest.raw["manifest_sha256"]
    assert lib.model["embedding_sha256"] == open_model.manifest.embedding_sha256
    relabelled = {**lib.model, "manifest_sha256": "f" * 64}  # other thresholds, the same vectors
    lib.add("y.wav", [0.0, 1.0, 0.0], relabelled, origin="y.jsonl:1")
    refronted = {**relabelled, "embedding_sha256": "d" * 64}  # another front end
    with pytest.raises(InputError, match=r"z.jsonl:1: embedded by openset .*whose vectors differ"):
        lib.add("z.wav", [0.0, 1.0, 0.0], refronted, origin="z.jsonl:1")
    lib = Library.embed(open_model, [str(folder / "tone_440.wav")])
    other = {k: v for k, v in relabelled.items() if k != "embedding_sha256"}
    with pytest.raises(
        InputError,
        match=r"x.jsonl:1: embedded by openset .*\(manifest_sha256 ffffffffffff\), but this search uses "
        rf"openset .* under another manifest \({digest[:12]}: .*--model openset@",
    ):
        lib.add("x.wav", [1.0, 0.0, 0.0], other, origin="x.jsonl:1")
    query = open_model.embed(str(folder / "noise.wav"))
    assert lib.nearest(query, k=1)  # the same model folder: searched
    query.model["manifest_sha256"] = "f" * 64
    assert lib.nearest(query, k=1)  # the same vectors under another manifest
    del query.model["embedding_sha256"]  # (a query from before the digest: its manifest decides)
    with pytest.raises(InputError, match="the query was embedded by openset .* under another manifest"):
        lib.nearest(query, k=1)
    # a record written before records named their manifest stands with either; the first named
    # manifest is then the library's
    old = Library()
    old.add(
        "a.wav", [1.0, 0.0, 0.0], {k: v for k, v in other.items() if k != "manifest_sha256"}, origin="o:1"
    )
    old.add("b.wav", [0.0, 1.0, 0.0], lib.model, origin="o:2")
    with pytest.raises(InputError, match="under another manifest"):
        old.add("c.wav", [0.0, 0.0, 1.0], other, origin="o:3")


def test_cli_search(
    open_model: inet.Model,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_output import _valid

    model = ["--model", str(open_model.path)]
    q = str(folder / "tone_440.wav")
    # a folder, embedded now; the query (which is in it) is left out
    assert cli_main(["search", q, str(folder), "-k", "5", *model]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert [Path(p).name for _, p in rows] == ["tone_330.flac", "noise.wav"]
    assert float(rows[0][0]) > 0.99 > float(rows[1][0])
    assert "2 of 3 recordings" in err
    # `instrunet embed FOLDER`: every audio file under it, recursively, by its resolved path
    assert cli_main(["embed", str(folder), *model]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == sorted(str(p.resolve()) for p in folder.rglob("*.*"))
    # `instrunet embed` output, searched with --json (valid against instrunet_core/schema/search.json)
    assert cli_main(["embed", str(folder / "noise.wav"), str(folder / "sub" / "tone_330.flac"), *model]) == 0
    index = tmp_path / "lib.jsonl"
    index.write_text(capsys.readouterr().out)
    assert cli_main(["search", q, str(index), "--top", "1", "--json", *model]) == 0
    doc = json.loads(capsys.readouterr().out)
    _valid("search.json", doc)
    assert doc["library_size"] == 2 and [Path(m["path"]).name for m in doc["matches"]] == ["tone_330.flac"]
    # `instrunet embed ... | instrunet search QUERY -`: the library from stdin
    monkeypatch.setattr("sys.stdin", io.StringIO(index.read_text()))
    assert cli_main(["search", q, "-", *model]) == 0
    assert [Path(line.split()[1]).name for line in capsys.readouterr().out.splitlines()] == [
        "tone_330.flac",
        "noise.wav",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("{not json\n"))
    assert cli_main(["search", q, "-", *model]) == 1
    assert "instrunet: error: -:1: not JSON" in capsys.readouterr().err  # named as on the command line
    assert cli_main(["search", "-", "-", *model]) == 2
    assert "stdin cannot be both" in capsys.readouterr().err
    # a library file that cannot be decoded: said, left out, exit 1; the others still searched
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + b"\x00" * 64)
    assert cli_main(["search", q, str(index), str(broken), *model]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and f"{broken}:" in err
    # vectors of another model: refused, naming the file and line
    other = tmp_path / "other.jsonl"
    rec = json.loads(index.read_text().splitlines()[0])
    other.write_text(
        json.dumps(
            {
                **rec,
                "model": {**rec["model"], "name": "family", "sha256": "1" * 64, "embedding_sha256": "1" * 64},
            }
        )
        + "\n"
    )
    assert cli_main(["search", q, str(other), *model]) == 1
    assert f"{other}:1: embedded by family" in capsys.readouterr().err
    # a query that is not there; -k 0
    assert cli_main(["search", str(tmp_path / "nope.wav"), str(folder), *model]) == 1
    assert "nope.wav" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["search", q, str(folder), "-k", "0", *model])


def test_search_with_the_default_model_finds_the_other_half_of_the_flute(
    tmp_path: Path, installed_registry: Registry
) -> None:
    """Real audio, the shipped default: the two halves of the solo flute are nearer each other
    than either is to the ensemble's keyboard opening or its full middle."""
    y, sr = sf.read(EXAMPLES / "solo_flute.wav", dtype="float32")
    e, sr2 = sf.read(EXAMPLES / "ensemble.flac", dtype="float32")
    cuts = {
        "flute_a.wav": (y[: int(3.2 * sr)], sr),
        "flute_b.wav": (y[int(3.3 * sr) :], sr),
        "keys.wav": (e[: int(3.8 * sr2)], sr2),
        "tutti.wav": (e[int(10 * sr2) : int(18 * sr2)], sr2),
    }
    for name, (a, rate) in cuts.items():
        sf.write(tmp_path / name, a, rate)
    model = inet.load_model(registry=installed_registry)
    lib = Library.embed(model, sorted(str(p) for p in tmp_path.iterdir()))
    for q, want in (("flute_a.wav", "flute_b.wav"), ("flute_b.wav", "flute_a.wav")):
        (best,) = lib.nearest(model.embed(tmp_path / q).vector, k=1, exclude=[str(tmp_path / q)])
        assert Path(best.path).name == want


def test_audit_malformed_records_are_one_error_naming_the_file_and_line(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(open_model.path)]
    q = str(folder / "tone_440.wav")
    assert cli_main(["embed", str(folder / "noise.wav"), *model]) == 0
    good = capsys.readouterr().out.splitlines()[0]
    rec = json.loads(good)
    sounding = {"start": 0.0, "end": 1.0, "silent": False}
    cases = {
        "JSON nested too deeply": "[" * 100_000,
        "Exceeds the limit": '{"path": "x", "model": {}, "vector": [' + "9" * 5000 + "]}",
        "'vector' is not a list of numbers": json.dumps({**rec, "vector": [10**400, 0, 0]}),
        "the windows' vectors are not all of one size": json.dumps(
            {**rec, "windows": [{**sounding, "vector": [1, 0, 0]}, {**sounding, "vector": [1, 0]}]}
        ),
        "a window's 'start' or 'end' is not a number": json.dumps(
            {**rec, "windows": [{**sounding, "start": 10**400, "vector": [1, 0, 0]}]}
        ),
        "the path holds a NUL byte": json.dumps({**rec, "path": "a\x00b"}),
        "'path' is not a string": json.dumps({**rec, "path": ["a"]}),
        "finite numbers": '{"path": "x", "model": {}, "vector": [1e999, 0, 0]}',
    }
    bad = tmp_path / "bad.jsonl"
    for says, line in cases.items():
        bad.write_text(good + "\n" + line + "\n")
        # (window vectors are read only for --where: a scale audit; then they are checked)
        where = ["--where"] if "window" in says else []
        assert cli_main(["search", q, str(bad), *model, *where]) == 1, says
        out, err = capsys.readouterr()
        assert err == f"instrunet: error: {bad}:2: " + err.split(":2: ", 1)[1] and says in err, err
        assert out == "" and len(err.splitlines()) == 1
    with pytest.raises(InputError, match="a path cannot hold a NUL byte"):
        Library.read(str(tmp_path / "a\x00b.jsonl"))


@pytest.mark.filterwarnings("error")  # no numpy overflow warning either
def test_audit_vectors_of_any_finite_size_give_cosines_in_minus_one_to_one(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(open_model.path)]
    assert cli_main(["embed", str(folder / "noise.wav"), "--windows", *model]) == 0
    rec = json.loads(capsys.readouterr().out)
    del rec["file_size"], rec["file_mtime_ns"]  # hand-made records of no file: nothing to check
    lines = []
    for name, scale in (("unit", 1.0), ("big", 3e38), ("huge", 1e300), ("tiny", 1e-300)):
        vector = [scale * x for x in (1.0, 2.0, 3.0)]
        windows = [{**w, "vector": vector} for w in rec["windows"]]
        lines.append(json.dumps({**rec, "path": name, "vector": vector, "windows": windows}))
    (tmp_path / "lib.jsonl").write_text("\n".join(lines) + "\n")
    q = str(folder / "tone_440.wav")
    assert cli_main(["search", q, str(tmp_path / "lib.jsonl"), "--where", "--json", *model]) == 0
    matches = json.loads(capsys.readouterr().out)["matches"]
    assert sorted(m["path"] for m in matches) == ["big", "huge", "tiny", "unit"]
    sims = {m["path"]: m["similarity"] for m in matches}
    assert all(-1.0 <= s <= 1.0 for s in sims.values())
    assert sims["big"] == sims["huge"] == sims["tiny"] == pytest.approx(sims["unit"], abs=1e-6)
    assert all(m["where"]["similarity"] == pytest.approx(sims["unit"], abs=1e-6) for m in matches)
    lib = Library.read(tmp_path / "lib.jsonl")
    np.testing.assert_allclose(np.linalg.norm(lib.vectors, axis=1), 1.0, rtol=1e-6)
    assert [m.similarity for m in lib.nearest([3.0, 6.0, 9.0])] == [pytest.approx(1.0, abs=1e-6)] * 4
    assert all(m.similarity <= 1.0 for m in lib.nearest([3.0, 6.0, 9.0]))


def test_audit_relative_paths_changed_files_and_hops(
    open_model: inet.Model,
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An embeddings audit (2026-12-06): a library written with relative paths and searched from
    another folder ranked the query as its own best match and counted files twice; a file
    rewritten since it was embedded kept its old vector (an appended record did not replace
    it); a library made with another --hop was compared without a word."""
    import os

    model = ["--model", str(open_model.path)]
    monkeypatch.chdir(folder)
    assert cli_main(["embed", "tone_440.wav", "noise.wav", *model]) == 0
    lib = tmp_path / "rel.jsonl"
    lib.write_text(capsys.readouterr().out)
    recs = [json.loads(x) for x in lib.read_text().splitlines()]
    st = os.stat(folder / "tone_440.wav")
    assert recs[0]["path"] == str(folder / "tone_440.wav")  # resolved: the same file from anywhere
    assert (recs[0]["file_size"], recs[0]["file_mtime_ns"]) == (st.st_size, st.st_mtime_ns)
    assert recs[0]["hop"] == pytest.approx(1.5, abs=0.02)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["search", str(folder / "tone_440.wav"), str(lib), str(folder), "--json", *model]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["library_size"] == 3 and str(folder / "tone_440.wav") not in [
        m["path"] for m in doc["matches"]
    ]

    # rewritten since: left out with a warning; embedded again and appended: the new vector counts
    sf.write(folder / "noise.wav", tone(4.0, freq=330.0), SR)
    os.utime(folder / "noise.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    assert cli_main(["search", str(folder / "sub" / "tone_330.flac"), str(lib), *model]) == 0
    cap = capsys.readouterr()
    assert f"{folder / 'noise.wav'}: changed since it was embedded (size or time); left out" in cap.err
    assert "noise.wav" not in cap.out
    assert cli_main(["embed", str(folder / "noise.wav"), *model]) == 0
    with open(lib, "a") as f:
        f.write(capsys.readouterr().out)
    q = open_model.embed(str(folder / "sub" / "tone_330.flac")).vector
    read = Library.read(lib)
    assert len(read) == 2 and read.drop_stale() == []
    (best,) = read.nearest(q, k=1)
    assert best.path == str(folder / "noise.wav") and best.similarity > 0.99  # now a tone
    (folder / "noise.wav").unlink()
    assert Library.read(lib).drop_stale() == [(str(folder / "noise.wav"), "gone")]

    # another hop: refused, with the way out; without --hop the library's hop is used
    assert cli_main(["search", str(folder / "tone_440.wav"), str(lib), "--hop", "0.5", *model]) == 1
    err = capsys.readouterr().err
    assert "the library's vectors were made with a hop of 1.509 s, not this search's 0.511 s" in err
    assert "search with --hop 1.509" in err
    assert cli_main(["embed", str(folder / "sub" / "tone_330.flac"), "--hop", "0.5", *model]) == 0
    line = capsys.readouterr().out
    lib05 = tmp_path / "hop05.jsonl"
    lib05.write_text(line)  # without --hop, the search takes the library's hop (0.511 s)
    assert cli_main(["search", str(folder / "tone_440.wav"), str(lib05), "--json", *model]) == 0
    assert json.loads(capsys.readouterr().out)["matches"][0]["similarity"] > 0.99
    with open(lib, "a") as f:
        f.write(line)
    with pytest.raises(
        InputError, match=r"rel\.jsonl:4: embedded with a hop of 0\.511 s, but this library's"
    ):
        Library.read(lib)


def test_audit_paths_hard_links_model_hint_workers_and_stdin_twice(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Path objects were a TypeError in Library.embed; a query given through a hard link was
    its own best match; the other-model hint left out the version (following it failed again);
    `embed - -` said 'seek(0)', a hint for Python callers; the vectors could be written to."""
    import os

    from instrunet_core import model as model_mod

    files = sorted(folder.rglob("*.*"))
    lib = Library.embed(open_model, files)  # Path objects
    assert len(lib) == 3 and lib.hop == pytest.approx(1.5, abs=0.02)
    with pytest.raises(ValueError):
        lib.vectors[0, 0] = 1.0  # read-only, as documented
    link = tmp_path / "hard.wav"
    os.link(folder / "tone_440.wav", link)
    q = open_model.embed(link).vector
    assert [Path(m.path).name for m in lib.nearest(q, exclude=link)] == ["tone_330.flac", "noise.wav"]
    other = {**lib.model, "sha256": "0" * 64, "embedding_sha256": "0" * 64, "version": "9.9.9"}
    with pytest.raises(InputError, match=r"choose that model with --model openset@9\.9\.9"):
        lib.add("x.wav", [1.0, 0.0, 0.0], other, origin="x.jsonl:1")
    assert cli_main(["embed", "-", "-", "--model", str(open_model.path)]) == 2
    assert "stdin ('-') can be read only once" in capsys.readouterr().err
    seen: list[int | None] = []
    real = model_mod.Model.embed

    def spy(self: inet.Model, *a: object, **kw: object) -> object:
        seen.append(kw.get("workers"))  # type: ignore[arg-type]
        return real(self, *a, **kw)  # type: ignore[arg-type]

    model_mod.Model.embed = spy  # type: ignore[assignment,method-assign]
    try:
        args = ["--model", str(open_model.path), "--workers", "1"]
        assert cli_main(["search", str(folder / "noise.wav"), str(folder), *args]) == 0
        assert cli_main(["embed", str(folder / "noise.wav"), *args]) == 0
    finally:
        model_mod.Model.embed = real  # type: ignore[method-assign]
    assert seen and set(seen) == {1}  # --workers reaches the classifier


def test_embedding_json_holds_the_shortest_text_of_each_float32(open_model: inet.Model, folder: Path) -> None:
    """Vectors were written as float64 text (``0.019561031833291054``), twice what float32
    needs; the shortest decimal that reads back as the same float32 is written instead."""
    emb = open_model.embed(folder / "noise.wav")
    d = emb.to_dict()
    np.testing.assert_array_equal(np.array(d["vector"], np.float32), emb.vector)
    np.testing.assert_array_equal(np.array([w["vector"] for w in d["windows"]], np.float32), emb.windows)
    assert all(len(repr(v)) <= 16 for v in d["vector"])  # at most 9 significant digits
    assert json.loads(json.dumps(d))["vector"] == d["vector"]


def test_audit_silent_query_and_empty_library_are_said(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR * 2, np.float32), SR)
    sf.write(folder / "quiet.wav", np.zeros(SR * 2, np.float32), SR)  # a silent library recording
    assert (
        cli_main(
            ["search", str(folder / "noise.wav"), str(folder), "--where", "--model", str(open_model.path)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "quiet.wav  (silent)" in out and "(no windows)" not in out
    (folder / "quiet.wav").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    model = ["--model", str(open_model.path)]
    assert cli_main(["search", str(silent), str(folder), *model]) == 0
    assert "the query is silent (no window has sound): it is similar to nothing" in capsys.readouterr().err
    assert cli_main(["search", str(folder / "noise.wav"), str(folder), *model]) == 0
    assert "2 of 3 recordings (the query among them, left out)" in capsys.readouterr().err
    assert cli_main(["search", str(folder / "noise.wav"), str(empty), *model]) == 0
    err = capsys.readouterr().err
    assert f"{empty}: no audio files under it" in err and "the library holds no recordings" in err
    assert cli_main(["embed", str(empty), *model]) == 0
    assert f"{empty}: no audio files under it" in capsys.readouterr().err


def test_embed_writes_its_line_in_pieces_the_same_text(open_model: inet.Model) -> None:
    """`embed --windows` built the whole line as nested lists of Python floats and one string (1.2
    GB for 6 hours, a resources audit): it is written row by row, the same characters as before."""
    from instrunet_core.analysis import embedding_json_chunks

    emb = open_model.embed(np.concatenate([tone(3.0), np.zeros(SR, np.float32), _noise(3.0)]), SR)
    head = {"schema": "x", "path": "/a b/c.wav"}
    for windows in (True, False):
        for tail in ({}, {"file_size": 12, "file_mtime_ns": 3}):
            whole = json.dumps(inet.output.jsonable({**head, **emb.to_dict(windows=windows), **tail}))
            pieces = list(embedding_json_chunks(head, emb, tail, windows=windows))
            assert "".join(pieces) == whole
            assert len(pieces) == (len(emb.times) + 2 if windows else 1)


def test_audit2_stdin_records_hard_links_other_models_and_early_streams(
    open_model: inet.Model,
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second embeddings audit (2026-12-06): three `embed -` records collapsed into one (each
    was taken for the file `$PWD/-`); a hard link was two recordings; a query embedded by
    another model of the same size was ranked without a word; a stream's `embedding()` before
    its first window raised numpy's reshape error; `Library.embed(model, "a.wav")` read the
    path letter by letter and ignored the hop of `into`; a byte-order mark refused the index."""
    import os

    import instrunet_core.writers as writers_mod

    model = ["--model", str(open_model.path)]
    lines = []
    for name in ("tone_440.wav", "noise.wav", "sub/tone_330.flac"):
        with open(folder / name, "rb") as f:
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f.read())))
        assert cli_main(["embed", "-", *model]) == 0
        lines.append(capsys.readouterr().out)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes(b"")  # a file named '-' here is not standard input either
    lib = Library.read(io.StringIO("".join(lines)))
    assert lib.paths == ["-", "-", "-"] and "-" not in lib and lib.drop_stale() == []
    q = open_model.embed(str(folder / "tone_440.wav"))
    assert [round(m.similarity, 2) for m in lib.nearest(q, exclude=str(tmp_path / "-"))][:1] == [1.0]

    link = tmp_path / "hard.wav"
    os.link(folder / "tone_440.wav", link)
    both = Library.embed(open_model, [str(folder / "tone_440.wav"), str(link)])
    assert len(both) == 1 and both.paths == [str(link)] and str(folder / "tone_440.wav") in both

    # a query from other weights: refused when it comes as an Embedding, with its model
    other = inet.Embedding(
        q.vector,
        q.windows,
        q.times,
        q.silent,
        {**q.model, "sha256": "0" * 64, "embedding_sha256": "0" * 64},
        q.hop,
    )
    with pytest.raises(InputError, match=r"the query was embedded by openset .*this library holds"):
        both.nearest(other)
    with pytest.raises(InputError, match=r"hop of 0\.5 s, but this library's vectors have 1\.509 s"):
        both.nearest(inet.Embedding(q.vector, q.windows, q.times, q.silent, q.model, 0.5))
    assert both.nearest(q)[0].similarity == pytest.approx(1.0, abs=1e-5)

    clf = inet.Classifier(open_model, embeddings=True)
    clf.process(np.zeros(1000, np.float32), SR)
    early = clf.embedding()  # no window yet: the zero vector, as for silence
    assert early.vector.shape == (open_model.embedding_dim,) and not early.vector.any()
    assert early.windows.shape == (0, open_model.embedding_dim)

    with pytest.raises(
        InputError, match=r"files must be a list of paths, got one str \(one file: \[path\]\)"
    ):
        Library.embed(open_model, str(folder / "noise.wav"))
    fine = Library.embed(open_model, [str(folder / "noise.wav")], hop=1.0)
    Library.embed(open_model, [str(folder / "sub" / "tone_330.flac")], into=fine)  # takes its hop
    assert len(fine) == 2 and fine.hop == pytest.approx(1.0, abs=0.02)

    index = tmp_path / "bom.jsonl"
    index.write_bytes(b"\xef\xbb\xbf" + "".join(lines[:2]).replace("\n", "\r\n").encode())
    assert len(Library.read(index)) == 2

    # each record goes out with its newline in one write: appends side by side stay whole lines
    writes: list[str] = []
    monkeypatch.setattr(writers_mod, "write_stdout", writes.append)
    assert cli_main(["embed", str(folder / "noise.wav"), str(folder / "tone_440.wav"), *model]) == 0
    records = [w for w in writes if w]  # (an empty write flushes at the end)
    assert len(records) == 2 and all(w.endswith("}\n") and w.count("\n") == 1 for w in records)


def test_audit2_a_stale_file_given_again_is_not_said_to_be_left_out(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    model = ["--model", str(open_model.path)]
    assert cli_main(["embed", str(folder), *model]) == 0
    index = tmp_path / "lib.jsonl"
    index.write_text(capsys.readouterr().out)
    st = os.stat(folder / "noise.wav")
    os.utime(folder / "noise.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert cli_main(["search", str(folder / "tone_440.wav"), str(index), str(folder), *model]) == 0
    cap = capsys.readouterr()
    assert "left out" not in cap.err.replace("(the query among them, left out)", "")
    assert "noise.wav" in cap.out  # embedded again from the folder
    assert cli_main(["search", str(folder / "tone_440.wav"), str(index), *model]) == 0
    assert "noise.wav: changed since it was embedded (size or time); left out" in capsys.readouterr().err


def test_analysis_json_with_embeddings_writes_the_rows_one_at_a_time(
    open_model: inet.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`analyze --embed --json` built every window's vector as nested Python lists (about 80 MB
    an hour): the rows are encoded one at a time, into the same text as json.dumps(indent=2)."""
    from instrunet_core import analysis as analysis_mod
    from instrunet_core.writers import write_json

    audio = np.concatenate([tone(3.0), np.zeros(SR, np.float32), _noise(5.0)])
    an = inet.analyze(audio, SR, model=open_model, embeddings=True, analyzers=False)
    want = json.dumps(an.to_dict(), indent=2, allow_nan=False) + "\n"
    listed: list[bool] = []
    real = analysis_mod.Embedding.to_dict

    def spy(self: Any, *, windows: bool = True) -> dict[str, Any]:
        listed.append(windows)
        return real(self, windows=windows)

    monkeypatch.setattr(analysis_mod.Embedding, "to_dict", spy)
    write_json(an, tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text() == want and listed == [False]


def test_a_signal_during_the_vectors_text_is_not_lost() -> None:
    """An interruption audit (2026-12-06): numpy's str -> float64 cast drops an exception a
    signal handler raises while it runs, so Ctrl-C or SIGTERM while `embed --windows` encoded
    its vectors was ignored and the command ended with exit 0."""
    import signal

    from instrunet_core.analysis import _short_floats

    a = np.random.default_rng(0).standard_normal((400, 512)).astype(np.float32)

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    import time

    t0 = time.perf_counter()
    _short_floats(a)
    took = time.perf_counter() - t0
    old = signal.signal(signal.SIGALRM, handler)
    delays = [took * k / 8 + 1e-3 for k in range(8)]  # the signal at every stage of the work
    try:
        raised = 0
        for d in delays:
            signal.setitimer(signal.ITIMER_REAL, d)
            try:
                _short_floats(a)
                time.sleep(2.0)  # where a signal that arrives after the work is raised
            except KeyboardInterrupt:
                raised += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert raised == len(delays)
    assert _short_floats(np.float32([0.1, 1e-8])) == [0.1, 1e-08]


def test_search_says_when_the_library_holds_vectors_of_an_earlier_instrunet(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade audit: a library embedded before 0.2.0 (no hop recorded; the last window was
    not yet aligned to the end) was searched without a word, though today's vectors of the same
    files differ (cosine down to 0.98; the top match changed for 4 of 10 queries)."""
    model_dir = str(_open_set_dir(tmp_path / "m"))
    lib = tmp_path / "lib.jsonl"
    assert cli_main(["embed", str(folder), "--model", model_dir]) == 0
    lib.write_text(capsys.readouterr().out)
    q = str(folder / "tone_440.wav")
    assert cli_main(["search", q, str(lib), "--model", model_dir]) == 0
    assert "earlier instrunet" not in capsys.readouterr().err
    records = [json.loads(line) for line in lib.read_text().splitlines()]
    for r in records[:2]:
        del r["hop"]
    lib.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli_main(["search", q, str(lib), "--model", model_dir]) == 0
    err = capsys.readouterr().err
    assert (
        "instrunet: warning: 2 vectors of the library embedded by an earlier instrunet (before 0.2.0" in err
    )


def test_library_records_no_run_wrote_are_one_error(tmp_path: Path) -> None:
    """A fuzzing audit: a hop of 310 digits (np.isfinite of an int beyond float64), a path with a
    lone surrogate, and window times negative, reversed or of 300 digits: tracebacks, or times
    printed as they were."""
    model = {"name": "m", "version": "1.0.0", "sha256": "a" * 64}
    lines = {
        "hop": {"path": "x", "model": model, "vector": [1.0], "hop": 10**309},
        "path": {"path": "\ud800", "model": model, "vector": [1.0]},
        "neg": {
            "path": "x",
            "model": model,
            "vector": [1.0],
            "windows": [{"start": -100, "end": -50, "silent": False, "vector": [1.0]}],
        },
        "rev": {
            "path": "x",
            "model": model,
            "vector": [1.0],
            "windows": [{"start": 5, "end": 1, "silent": False, "vector": [1.0]}],
        },
        "huge": {
            "path": "x",
            "model": model,
            "vector": [1.0],
            "windows": [{"start": 1e300, "end": 1e301, "silent": False, "vector": [1.0]}],
        },
    }
    said = {
        "hop": "x.jsonl:1: 'hop' is not a number of seconds > 0",
        "path": "x.jsonl:1: the path is not a file name this system can encode",
        "neg": "x.jsonl:1: a window's time span is not 'start' <= 'end'",
        "rev": "x.jsonl:1: a window's time span is not 'start' <= 'end'",
        "huge": "x.jsonl:1: a window's time span is not 'start' <= 'end'",
    }
    for key, rec in lines.items():
        f = tmp_path / "x.jsonl"
        f.write_text(json.dumps(rec) + "\n")
        with pytest.raises(InputError) as e:
            Library.read(f)
        assert f"{tmp_path}/{said[key]}" in str(e.value), (key, str(e.value))


def test_a_search_holds_each_vector_once_and_reads_window_vectors_only_for_where(
    open_model: inet.Model, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scale audit: a search of 100,000 vectors held them twice once the matrix was made (each
    as a row and as a row of it: 449 MB traced for 205 MB of vectors), and read every record's
    window vectors though only --where uses them (185 MB and 6.2 s against 101 MB and 0.67 s)."""
    lib = Library.embed(open_model, sorted(str(p) for p in folder.rglob("*.*")))
    m = lib.vectors
    assert all(np.shares_memory(row, m) for row in lib._rows)  # views of the one matrix
    model = ["--model", str(open_model.path)]
    assert cli_main(["embed", str(folder), "--windows", *model]) == 0
    f = tmp_path / "w.jsonl"
    f.write_text(capsys.readouterr().out)
    plain = Library.read(f, windows=False)
    assert all(w is None for w in plain._windows) and len(plain) == 3
    assert any(w is not None for w in Library.read(f)._windows)
    q = str(folder / "tone_440.wav")
    assert cli_main(["search", q, str(f), *model]) == 0 and " at " not in capsys.readouterr().out
    assert cli_main(["search", q, str(f), *model, "--where"]) == 0
    assert " at " in capsys.readouterr().out


def test_one_network_and_front_end_under_two_manifests_embed_alike_and_are_searched_together(
    tmp_path: Path, installed_registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """family 3.0.0 and 3.1.0 (and family-compact 2.1.0) are one ONNX file read through one front
    end with other thresholds and detection rules, and 3.2.0 adds a gate after that network: their
    vectors are the same, so a library embedded with 3.0.0 is searched with 3.2.0 (it was
    refused as another manifest's); the default since 3.3.0, another network, refuses it.
    Records written before they named their vectors' digest are read as the installed artifact
    their manifest names; another front end or network is still refused."""
    from instrunet_core.output import model_info
    from instrunet_core.registry import embedding_digests

    old_default = inet.load_model("family", "3.0.0", registry=installed_registry)
    default = inet.load_model("family", "3.2.0", registry=installed_registry)
    newest = inet.load_model(registry=installed_registry)
    assert (newest.name, newest.version) == ("family", "3.3.0")
    assert newest.manifest.embedding_sha256 not in (None, default.manifest.embedding_sha256)
    compact = inet.load_model("family-compact", "2.1.0", registry=installed_registry)
    before = inet.load_model("family", "2.1.0", registry=installed_registry)
    assert (default.name, default.version) == ("family", "3.2.0")
    key = default.manifest.embedding_sha256
    assert key and old_default.manifest.embedding_sha256 == key == compact.manifest.embedding_sha256
    assert before.manifest.embedding_sha256 not in (None, key)  # another network
    assert inet.load_model("family", "1.0.0", registry=installed_registry).manifest.embedding_sha256 is None
    assert old_default.manifest.raw["manifest_sha256"] != default.manifest.raw["manifest_sha256"]
    known = embedding_digests(registry=installed_registry)
    assert known[old_default.manifest.raw["manifest_sha256"]] == key

    y, sr = sf.read(EXAMPLES / "solo_flute.wav", dtype="float32")
    e, sr2 = sf.read(EXAMPLES / "ensemble.flac", dtype="float32")
    sf.write(tmp_path / "flute.wav", y, sr)
    sf.write(tmp_path / "ensemble.wav", e[: 6 * sr2], sr2)
    a, b = old_default.embed(tmp_path / "flute.wav"), default.embed(tmp_path / "flute.wav")
    np.testing.assert_array_equal(a.vector, b.vector)
    assert a.model["embedding_sha256"] == b.model["embedding_sha256"] == key
    assert "embedding_sha256" not in model_info(default)  # only embedding records and searches

    # the library of 3.0.0's records (one written before records named the digest), the default's query
    lib = Library(model=model_info(default, embedding=True), known=known)
    lib.add("flute.wav", a.vector, a.model, origin="lib:1")
    unnamed = {k: v for k, v in a.model.items() if k != "embedding_sha256"}
    ens = old_default.embed(tmp_path / "ensemble.wav")
    lib.add("ensemble.wav", ens.vector, unnamed, origin="lib:2")
    assert [m.path for m in lib.nearest(b, k=2)] == ["flute.wav", "ensemble.wav"]
    # without `known`, such a record joins only a library of its own weights and manifest (as before)
    with pytest.raises(InputError, match=r"lib:2: embedded by family 3\.0\.0 .*--model family@3\.0\.0"):
        Library(model=model_info(default, embedding=True)).add("e.wav", ens.vector, unnamed, origin="lib:2")
    # the same ONNX file through another front end: another digest, refused whatever the manifests say
    other_fe = {**a.model, "embedding_sha256": "e" * 64}
    with pytest.raises(InputError, match=r"lib:3: embedded by family 3.0.0 .*whose vectors differ"):
        lib.add("x.wav", a.vector, other_fe, origin="lib:3")
    q = default.embed(tmp_path / "flute.wav")
    q.model["embedding_sha256"] = "e" * 64
    with pytest.raises(InputError, match="the query was embedded by family 3.2.0 .*which differ"):
        lib.nearest(q, k=1)
    # another network: refused
    with pytest.raises(InputError, match=r"lib:4: embedded by family 2.1.0 .*whose vectors differ"):
        lib.add(
            "y.wav",
            np.ones(before.embedding_dim or 1),
            before.embed(tmp_path / "flute.wav").model,
            origin="lib:4",
        )

    # `instrunet embed --model family@3.0.0` then `instrunet search` with the default
    assert (
        cli_main(
            ["embed", str(tmp_path / "flute.wav"), str(tmp_path / "ensemble.wav"), "--model", "family@3.0.0"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert all(json.loads(line)["model"]["embedding_sha256"] == key for line in lines)
    index = tmp_path / "lib.jsonl"
    # the second record as an instrunet before this change wrote it: no embedding_sha256
    rec = json.loads(lines[1])
    del rec["model"]["embedding_sha256"]
    index.write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    query = tmp_path / "query.wav"
    sf.write(query, y[: 3 * sr], sr)
    # the default (3.3.0, another network) refuses it, naming the line and the model that reads it
    assert cli_main(["search", str(query), str(index)]) == 1
    err = capsys.readouterr().err
    assert f"{index}:1: embedded by family 3.0.0" in err and "--model family@3.0.0" in err, err
    assert cli_main(["search", str(query), str(index), "--json", "--model", "family@3.2.0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    from test_output import _valid

    _valid("search.json", doc)
    assert doc["model"]["version"] == "3.2.0" and doc["model"]["embedding_sha256"] == key
    assert [Path(m["path"]).name for m in doc["matches"]] == ["flute.wav", "ensemble.wav"]
    # the library from family 2.1.0 instead: refused, naming the file and line
    assert cli_main(["embed", str(tmp_path / "flute.wav"), "--model", "family@2.1.0"]) == 0
    index.write_text(capsys.readouterr().out)
    assert cli_main(["search", str(query), str(index)]) == 1
    assert f"{index}:1: embedded by family 2.1.0" in capsys.readouterr().err


def test_the_vectors_digest_reads_what_a_manifest_means_and_old_records_resolve_by_their_file(
    tmp_path: Path, installed_registry: Registry
) -> None:
    """An audit: the digest changed with how a manifest wrote a value (fmin 0 or 0.0, fmax null
    or the Nyquist rate); a record from before records named their manifest (its ONNX file only)
    of the default's network was refused by the default; the Python API's refusal did not say how
    to read old records as the installed models they name."""
    from instrunet_core.manifest import seal_manifest, validate_manifest
    from instrunet_core.output import model_info
    from instrunet_core.registry import embedding_digests

    default = inet.load_model("family", "3.2.0", registry=installed_registry)  # 3.0.0's network
    raw = json.loads((default.path / "manifest.json").read_text())
    raw.pop("manifest_sha256")
    spelled = {**raw, "front_end": {**raw["front_end"], "fmin": 0, "fmax": 11025.0, "top_db": 80}}
    a = validate_manifest(seal_manifest(raw), where="a").embedding_sha256
    assert a == validate_manifest(seal_manifest(spelled), where="b").embedding_sha256
    other_fe = {**raw, "front_end": {**raw["front_end"], "top_db": 60.0}}
    assert a != validate_manifest(seal_manifest(other_fe), where="c").embedding_sha256
    # a record naming 3.0.0's ONNX file only (before 0.2.0): the file of 3.0.0, 3.1.0 and
    # family-compact 2.1.0, which all embed alike, so `known` maps it
    old = inet.load_model("family", "3.0.0", registry=installed_registry)
    ancient = {k: v for k, v in model_info(old).items() if k in ("name", "version", "sha256", "task")}
    known = embedding_digests(registry=installed_registry)
    assert known[old.manifest.sha256] == default.manifest.embedding_sha256
    lib = Library(model=model_info(default, embedding=True), known=known)
    lib.add("a.wav", np.ones(128), ancient, origin="lib:1")
    with pytest.raises(
        InputError, match=r"lib:1: .*Library\(known=instrunet_core\.registry\.embedding_digests\(\)\)"
    ):
        Library(model=model_info(default, embedding=True)).add("a.wav", np.ones(128), ancient, origin="lib:1")
    # Library.read takes `known` too
    index = tmp_path / "lib.jsonl"
    index.write_text(json.dumps({"path": "x.wav", "model": ancient, "vector": [1.0] * 128}) + "\n")
    assert len(Library.read(index, known=known)) == 1


def test_every_packaged_weights_sha256_claim_holds(installed_registry: Registry) -> None:
    """A manifest's embedding.weights_sha256 says its graph embeds as another ONNX file: for every
    packaged artifact that says so, the file is packaged and the two embed bit for bit alike."""
    from instrunet_core.features import batch_features
    from instrunet_core.registry import list_models

    entries = [e for e in list_models(registry=installed_registry) if e.manifest is not None]
    by_file = {e.manifest.sha256: e for e in entries if e.manifest is not None}
    claims = [
        e for e in entries if e.manifest is not None and (e.manifest.embedding or {}).get("weights_sha256")
    ]
    assert claims, "family 3.2.0 claims 3.1.0's network"
    y = sf.read(EXAMPLES / "ensemble.flac", dtype="float32")[0].mean(axis=1)
    x = batch_features(np.stack([y[i * 30000 : i * 30000 + 65024] for i in range(4)]))
    for e in claims:
        assert e.manifest is not None and e.manifest.embedding is not None
        named = by_file[e.manifest.embedding["weights_sha256"]]
        a = inet.load_model(e.path).outputs_features(x, embedding=True).embedding
        b = inet.load_model(named.path).outputs_features(x, embedding=True).embedding
        np.testing.assert_array_equal(a, b)
