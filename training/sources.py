"""Real recorded instrument libraries and impulse responses, pinned in ``sources.lock.json``.

Usage::

    python -m training.sources verify --sources DIR     # every source present and matching its sha256
    python -m training.sources fetch  --sources DIR     # clone / download the pinned revisions (needs internet)
    python -m training.sources fetch  --sources DIR --from MIRRORS   # clone from local copies instead
    python -m training.sources hash   --sources DIR     # recompute the sha256 fields (after changing the lock)

The lock file lists, per source: where it comes from (a GitHub repository at a commit, or a
Debian package at a version), its licence and licence file, its sample group, the split it
feeds (``train`` or ``dev``), the files used, and ``sha256``: a digest over those files
(:func:`content_sha256`), so a mirror folder and a fresh download are checked the same way.

A *mirror folder* (``--sources DIR``) holds one checkout per repository, named
``owner+name`` (``DIR/sfzinstruments+karoryfer.weresax/``), and Debian packages either as
``DIR/debs/<package>_<version>_all.deb`` or unpacked under ``DIR/root/``. What is missing
there can be fetched by :func:`fetch` on a machine with internet (``git`` over https,
``apt-get download``), or cloned from local copies of the repositories (``--from MIRRORS``:
``MIRRORS/owner+name``, or ``MIRRORS/owner+name/repo``, plain or bare) where only the package
registries are reachable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LOCK", "LISTS", "load_lock", "source_root", "content_sha256", "verify", "fetch", "ir_files"]

LOCK = Path(__file__).resolve().parent / "sources.lock.json"


class SourceError(RuntimeError):
    """A source is missing, or differs from its lock entry."""


def load_lock(path: Path = LOCK) -> dict[str, Any]:
    """The lock file as a dict (the lists named in :data:`LISTS`)."""
    return json.loads(Path(path).read_text())


def _dir_name(entry: dict[str, Any]) -> str:
    return entry["repo"].replace("/", "+")


def source_root(entry: dict[str, Any], sources: Path) -> Path:
    """Folder that the entry's ``files`` are relative to (a checkout, or an unpacked package).

    Raises
    ------
    SourceError
        When the mirror folder holds neither the checkout nor the package.
    """
    sources = Path(sources)
    if entry["kind"] == "git":
        root = sources / _dir_name(entry)
        if not root.is_dir():
            raise SourceError(
                f"{root}: missing checkout of {entry['repo']}@{entry['commit'][:12]} "
                f"(run: python -m training.sources fetch --sources {sources})"
            )
        return root
    if entry["kind"] == "deb":
        root = sources / "root"
        probe = root / entry["files"][0]
        if not probe.is_file():
            debs = sorted((sources / "debs").glob(f"{entry['package']}_{entry['version']}_*.deb"))
            if not debs:
                raise SourceError(
                    f"{sources}: missing Debian package {entry['package']} {entry['version']} "
                    f"(run: python -m training.sources fetch --sources {sources})"
                )
            _check_deb(debs[0], entry)
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
        return root
    raise SourceError(f"{entry.get('key')}: unknown kind {entry['kind']!r}")


def _check_deb(deb: Path, entry: dict[str, Any]) -> None:
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != entry["deb_sha256"]:
        raise SourceError(f"{deb}: sha256 {digest} differs from the lock's {entry['deb_sha256']}")


def _files(root: Path, paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        full = root / p
        if full.is_file():
            out.append(full)
        elif full.is_dir():
            out.extend(f for f in full.rglob("*") if f.is_file() and ".git" not in f.relative_to(root).parts)
        else:
            raise SourceError(f"{full}: listed in the lock file but missing")
    return sorted(set(out))


def content_sha256(root: Path, paths: Sequence[str]) -> str:
    """sha256 over ``"<relative path>\\t<sha256 of file>\\n"`` lines of every file under ``paths``.

    Line endings are hashed as stored: check out with ``core.autocrlf=false`` (the default
    on Linux).
    """
    h = hashlib.sha256()
    for f in _files(Path(root), paths):
        fh = hashlib.sha256()
        with open(f, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                fh.update(chunk)
        h.update(f"{f.relative_to(root).as_posix()}\t{fh.hexdigest()}\n".encode())
    return h.hexdigest()


#: Lists of the lock file whose entries are checked, fetched and hashed alike: ``sources`` (instrument
#: libraries the corpus builder plays: SFZ files, GUS patches, or WAV files described by a ``layout``;
#: an instrument's ``keys`` limits the keys played), ``negatives`` (open-set material that is none of
#: the eight families: ``role: negative``, a ``sound``, played from SFZ or cut from recordings) and
#: ``impulse_responses``.
LISTS = ("sources", "negatives", "impulse_responses")


def _entries(lock: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for name in LISTS for e in lock.get(name, [])]


def verify(
    sources: Path, lock: dict[str, Any] | None = None, *, keys: Sequence[str] | None = None
) -> dict[str, Path]:
    """Check every (or the ``keys``) lock entries against the mirror folder; returns key → root.

    Raises
    ------
    SourceError
        On a missing source, a checkout at another commit, or a sha256 mismatch.
    """
    lock = lock or load_lock()
    roots: dict[str, Path] = {}
    for e in _entries(lock):
        if keys is not None and e["key"] not in keys:
            continue
        root = source_root(e, sources)
        if e["kind"] == "git" and (root / ".git").exists():
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            if head != e["commit"]:
                raise SourceError(f"{root}: checked out at {head[:12]}, the lock pins {e['commit'][:12]}")
        digest = content_sha256(root, e["files"])
        if digest != e.get("sha256"):
            raise SourceError(
                f"{root}: sha256 of the files used is {digest}, the lock says {e.get('sha256')}"
            )
        roots[e["key"]] = root
    return roots


def _origin(entry: dict[str, Any], mirrors: Path | None) -> str:
    """Where to clone ``entry`` from: its local copy under ``mirrors`` (``owner+name`` or
    ``owner+name/repo``, as a ``file://`` URL, so that git fetches from it as from a server:
    only the objects asked for), else GitHub."""
    if mirrors is None:
        return f"https://github.com/{entry['repo']}.git"
    for cand in (Path(mirrors) / _dir_name(entry) / "repo", Path(mirrors) / _dir_name(entry)):
        if (cand / "HEAD").is_file() or (cand / ".git").exists():
            return cand.resolve().as_uri()
    raise SourceError(f"{Path(mirrors) / _dir_name(entry)}: no local copy of {entry['repo']}")


def _git(*args: str, cwd: Path | None = None) -> None:
    try:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise SourceError(f"git {' '.join(args[:2])}: {(e.stderr or e.stdout or '').strip()}") from None


#: upload-pack of a local copy, serving a partial clone as GitHub does.
_LOCAL_UPLOAD_PACK = "git -c uploadpack.allowFilter=true -c uploadpack.allowAnySHA1InWant=true upload-pack"


def _escape(path: str) -> str:
    """A path as a literal sparse-checkout pattern (gitignore syntax: its special characters
    escaped)."""
    return "".join("\\" + ch if ch in "\\*?[]!#" else ch for ch in path)


def fetch(sources: Path, lock: dict[str, Any] | None = None, *, mirrors: Path | None = None) -> None:
    """Bring every missing source into the mirror folder at its pinned revision (needs internet,
    or ``mirrors``: a folder of local copies of the repositories, see :func:`_origin`).

    Only the lock's ``files`` of a repository are fetched and checked out: a partial clone
    (``--filter=blob:none``: the file contents git downloads are those of the paths checked
    out) and a checkout of those paths alone. A repository that also holds material reserved
    for evaluation (the Discord GM bank's acoustic grand pianos) never brings it onto the disk.
    """
    lock = lock or load_lock()
    sources = Path(sources)
    sources.mkdir(parents=True, exist_ok=True)
    for e in _entries(lock):
        if e["kind"] == "git":
            root = sources / _dir_name(e)
            if root.is_dir() and not (root / ".git").exists():
                if any(root.iterdir()):
                    raise SourceError(
                        f"{root}: exists but is no git checkout (remove it to fetch {e['repo']})"
                    )
                root.rmdir()  # an interrupted clone's empty folder: cloned again
            if not root.is_dir():
                origin = _origin(e, mirrors)
                # a local copy serves the filter (and the blobs asked for later) through git's own
                # upload-pack, told to allow them; GitHub allows them itself
                local = [f"--upload-pack={_LOCAL_UPLOAD_PACK}"] if origin.startswith("file:") else []
                _git("clone", "--quiet", "--no-checkout", "--filter=blob:none", *local, origin, str(root))
                if local:
                    _git("-C", str(root), "config", "remote.origin.uploadpack", _LOCAL_UPLOAD_PACK)
            # a sparse checkout of the lock's paths (anchored, each a file or a folder)
            _git(
                "-C",
                str(root),
                "sparse-checkout",
                "set",
                "--no-cone",
                *("/" + _escape(f) for f in e["files"]),
            )
            _git("-C", str(root), "checkout", "--quiet", "--detach", e["commit"])
        elif e["kind"] == "deb":
            debs = sources / "debs"
            debs.mkdir(exist_ok=True)
            if not list(debs.glob(f"{e['package']}_{e['version']}_*.deb")):
                if shutil.which("apt-get") is None:
                    raise SourceError(
                        f"apt-get not found: put {e['package']}_{e['version']}_all.deb in {debs}"
                    )
                subprocess.run(
                    ["apt-get", "download", f"{e['package']}={e['version']}"], cwd=debs, check=True
                )
    verify(sources, lock)


def ir_files(sources: Path, lock: dict[str, Any] | None = None) -> list[tuple[str, Path]]:
    """``(use, path)`` of every locked impulse response present in the mirror folder (verified)."""
    lock = lock or load_lock()
    out: list[tuple[str, Path]] = []
    keys = [e["key"] for e in lock.get("impulse_responses", [])]
    roots = verify(sources, lock, keys=keys)
    for e in lock.get("impulse_responses", []):
        out.extend(
            (e["use"], f)
            for f in _files(roots[e["key"]], e["files"])
            if f.suffix.lower() in (".wav", ".flac")
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.sources", description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["verify", "fetch", "hash"])
    ap.add_argument("--sources", type=Path, required=True, help="mirror folder (one checkout per repository)")
    ap.add_argument("--lock", type=Path, default=LOCK)
    ap.add_argument(
        "--from",
        dest="mirrors",
        type=Path,
        default=None,
        help="fetch: clone from local copies (MIRRORS/owner+name[/repo]) instead of GitHub",
    )
    args = ap.parse_args(argv)
    try:
        lock = load_lock(args.lock)
    except (OSError, ValueError) as exc:
        print(f"training.sources: error: --lock {args.lock}: cannot read it ({exc})", file=sys.stderr)
        return 2
    try:
        if args.cmd == "hash":
            for e in _entries(lock):
                e["sha256"] = content_sha256(source_root(e, args.sources), e["files"])
                print(f"{e['key']}: {e['sha256']}")
            args.lock.write_text(json.dumps(lock, indent=1) + "\n")
        elif args.cmd == "fetch":
            fetch(args.sources, lock, mirrors=args.mirrors)
        else:
            for key, root in verify(args.sources, lock).items():
                print(f"{key}: ok ({root})")
    except (SourceError, OSError, subprocess.CalledProcessError) as exc:
        print(f"training.sources: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
