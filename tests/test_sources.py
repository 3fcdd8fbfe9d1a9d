"""The lock file of real recorded libraries: pinned, licensed, no reserved source, disjoint splits."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import training.corpus as corpus
from training import sources

LOCK = sources.load_lock()
PERMISSIVE = ("CC0", "CC-BY", "CC BY", "public domain", "MIT", "GPL")
#: Sources reserved for evaluation: never fetched, trained, selected or tuned on. Kept here, not in
#: training/, so that the training code and its lock file never name them.
RESERVED = ("philharmonia", "salamander", "tonejs", "mellotron", "nsynth")
#: Every locked entry, whatever its list (sources, pending, negatives, impulse responses).
ALL = [e for name in sources.LISTS for e in LOCK.get(name, [])]
SOUNDS = ("drums", "synth", "speech", "noise", "ambience")


def _text(entry: dict) -> str:
    return json.dumps(entry).lower()


def test_reserved_sources_are_absent() -> None:
    for e in ALL:
        text = _text(e)
        for word in RESERVED:
            assert word not in text, (e["key"], word)
    # The Discord GM bank's acoustic grand pianos are the Salamander Grand Piano: never listed.
    for e in ALL:
        for path in e["files"] + [i.get("sfz", "") for i in e.get("instruments", [])]:
            assert not re.search(r"00[12]-(acoustic grand|bright acoustic) piano", path.lower()), path


def test_every_source_is_pinned_and_licensed() -> None:
    keys = [e["key"] for e in ALL]
    assert len(keys) == len(set(keys))
    for e in ALL:
        assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]), e["key"]
        assert e["license_file"] and any(p.lower() in e["license"].lower() for p in PERMISSIVE), e["key"]
        if e["kind"] == "git":
            assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]) and "/" in e["repo"], e["key"]
        else:
            assert e["kind"] == "deb" and e["version"] and re.fullmatch(r"[0-9a-f]{64}", e["deb_sha256"]), e[
                "key"
            ]
        assert e["files"], e["key"]
    for e in LOCK["sources"] + LOCK["negatives"]:
        assert e["split"] in ("train", "dev"), e["key"]
    for e in LOCK["sources"]:
        assert e["instruments"], e["key"]
        for i in e["instruments"]:
            assert i["family"] in corpus.PROGRAMS, (e["key"], i)
    for e in LOCK["impulse_responses"]:
        assert e["use"] in ("room", "device"), e["key"]


def test_training_licences_allow_training() -> None:
    # GPL and share-alike material may only be heard by dev (never trained on, never redistributed).
    for e in LOCK["sources"] + LOCK["negatives"]:
        if e["split"] == "train":
            lic = e["license"].split(" (")[0].lower()
            assert any(p in lic for p in ("cc0", "cc-by-", "public domain", "mit")), e["key"]
            assert "-sa" not in lic and "gpl" not in lic and "nc" not in lic.split("-"), e["key"]


def test_every_instrument_says_how_it_is_played() -> None:
    for e in LOCK["sources"]:
        for i in e["instruments"]:
            assert sum(k in i for k in ("sfz", "pat", "layout")) == 1, (e["key"], i)
            if "keys" in i:
                lo, hi = i["keys"]
                assert 0 <= lo <= hi <= 127, (e["key"], i)


def test_negatives_are_marked_and_split_apart_from_instruments() -> None:
    by_split: dict[str, set[str]] = collections.defaultdict(set)
    for e in LOCK["negatives"]:
        assert e["role"] == "negative" and e["sound"] in SOUNDS, e["key"]
        assert e["play"] in ("sfz", "audio"), e["key"]
        if e["play"] == "sfz":
            assert e["instruments"] and all("sfz" in i and "family" not in i for i in e["instruments"]), e[
                "key"
            ]
        by_split[e["split"]].add(e["sample_group"])
    assert not by_split["train"] & by_split["dev"]
    # both splits hold drums and speech; no negative shares recordings with an instrument library
    for split in ("train", "dev"):
        assert {"drums", "speech"} <= {e["sound"] for e in LOCK["negatives"] if e["split"] == split}, split
    instrument_groups = {
        i.get("sample_group", e["sample_group"]) for e in LOCK["sources"] for i in e["instruments"]
    }
    assert not (by_split["train"] | by_split["dev"]) & instrument_groups


def test_splits_are_disjoint_by_library_and_sample_group() -> None:
    plan = corpus.plan_instruments()
    real = corpus.plan_real(LOCK, first_id=len(plan), counters=collections.Counter(i.family for i in plan))
    by_split: dict[str, set[str]] = collections.defaultdict(set)
    libs: dict[str, set[str]] = collections.defaultdict(set)
    for i in real:
        by_split[i.split].add(i.sample_group)
        libs[i.source].add(i.split)
    assert all(len(s) == 1 for s in libs.values()), libs  # a library feeds one split
    assert not by_split["train"] & by_split["dev"]
    # No real library shares a sample group with a SoundFont (train/valid) or with the test font.
    font_groups = {f.sample_group for f in corpus.SOUNDFONTS}
    assert not (by_split["train"] | by_split["dev"]) & font_groups
    # ids and names continue after the SoundFont plan without collisions
    assert [i.instrument for i in real] == list(range(len(plan), len(plan) + len(real)))
    assert len({i.instrument_str for i in plan} | {i.instrument_str for i in real}) == len(plan) + len(real)
    # the dev set covers every family the real libraries can give
    assert {i.family for i in real if i.split == "dev"} == set(corpus.PROGRAMS)


def test_content_sha256_and_verify(tmp_path: Path) -> None:
    root = tmp_path / "owner+lib"
    (root / "Samples").mkdir(parents=True)
    (root / "Samples" / "a.wav").write_bytes(b"RIFF....")
    (root / "lib.sfz").write_text("<region> sample=Samples/a.wav\n")
    digest = sources.content_sha256(root, ["lib.sfz", "Samples"])
    lock = {
        "sources": [
            {
                "key": "lib",
                "kind": "git",
                "repo": "owner/lib",
                "commit": "0" * 40,
                "files": ["lib.sfz", "Samples"],
                "sha256": digest,
            }
        ],
        "impulse_responses": [],
    }
    assert sources.verify(tmp_path, lock) == {"lib": root}
    (root / "Samples" / "a.wav").write_bytes(b"RIFF..!.")
    with pytest.raises(sources.SourceError, match="sha256"):
        sources.verify(tmp_path, lock)
    with pytest.raises(sources.SourceError, match="missing checkout of owner/other"):
        sources.verify(tmp_path, {"sources": [{**lock["sources"][0], "key": "o", "repo": "owner/other"}]})


def _git(*args: str, cwd: Path) -> str:
    who = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, **who}
    )
    return out.stdout.strip()


def test_fetch_clones_the_pinned_revision_from_local_copies(tmp_path: Path) -> None:
    """``fetch --from MIRRORS`` clones each repository from ``MIRRORS/owner+name/repo`` (a bare
    copy, as a mirror tool leaves it) at the lock's commit, then verifies it; no network."""
    work = tmp_path / "work"
    (work / "Samples").mkdir(parents=True)
    (work / "Samples" / "a.wav").write_bytes(b"RIFF-one")
    (work / "lib.sfz").write_text("<region> sample=Samples/a.wav\n")
    (work / "Reserved").mkdir()
    (work / "Reserved" / "piano.wav").write_bytes(b"RIFF-reserved for evaluation")
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "one", cwd=work)
    pinned = _git("rev-parse", "HEAD", cwd=work)
    reserved_blob = _git("rev-parse", "HEAD:Reserved/piano.wav", cwd=work)
    digest = sources.content_sha256(work, ["lib.sfz", "Samples"])
    (work / "Samples" / "a.wav").write_bytes(b"RIFF-two")  # a later commit the lock does not pin
    _git("commit", "-qam", "two", cwd=work)
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    _git("clone", "-q", "--bare", str(work), str(mirrors / "owner+lib" / "repo"), cwd=tmp_path)
    entry = {
        "key": "lib",
        "kind": "git",
        "repo": "owner/lib",
        "commit": pinned,
        "files": ["lib.sfz", "Samples"],
        "sha256": digest,
    }
    lock = {"sources": [entry], "impulse_responses": []}
    out = tmp_path / "sources"
    sources.fetch(out, lock, mirrors=mirrors)
    assert (out / "owner+lib" / "Samples" / "a.wav").read_bytes() == b"RIFF-one"
    assert sources.verify(out, lock) == {"lib": out / "owner+lib"}
    # what the lock does not name is neither checked out nor downloaded (a bank's pianos that
    # are reserved for evaluation): a partial clone, a checkout of the lock's paths alone
    assert not (out / "owner+lib" / "Reserved").exists()
    objects = _git("rev-list", "--objects", "--all", "--missing=print", cwd=out / "owner+lib").splitlines()
    assert "?" + reserved_blob in objects  # known by name, its content never fetched
    assert not any(line.startswith(reserved_blob) for line in objects)
    with pytest.raises(sources.SourceError, match="no local copy of owner/other"):
        sources.fetch(
            tmp_path / "elsewhere", {"sources": [{**entry, "repo": "owner/other"}]}, mirrors=mirrors
        )
