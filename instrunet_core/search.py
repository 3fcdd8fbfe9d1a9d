"""Nearest-neighbour search over recordings' embeddings: the one home of ``instrunet search``'s
rules.

A :class:`Library` is a set of recordings' vectors from one model (:meth:`Model.embed
<instrunet_core.model.Model.embed>`: unit length, so a dot product is a cosine similarity),
read from the JSON lines ``instrunet embed`` writes (:meth:`Library.read`) or embedded now
(:meth:`Library.embed`). :meth:`Library.nearest` ranks them against a query's vector. Every
vector added is scaled to unit length again (in float64: a hand-made or damaged line cannot
make a similarity overflow), so that each similarity is a cosine in [-1, 1].

Vectors from different weights live in different spaces, so a library holds one model's
vectors only, made with one hop (a record's ``hop``, where it has one). Which vectors a record
holds is the digest of what decides them (its model's ``embedding_sha256``: the ONNX file, its
input, the front end and the embedding output, not the labels or thresholds, so ``family``
3.0.0's vectors are 3.1.0's); a record written before records named it is read as the installed
artifact its ``manifest_sha256`` names (``known``), else by its weights' sha256 and its manifest.
Mixing them is an
:class:`~instrunet_core.errors.InputError` that names the file and line, as is a line that is
not an embedding record. A file added again (a later record for the same file, found through
its resolved path or, for a hard link, its inode) replaces its earlier vector: the last record
of a file is its vector, as in ``instrunet batch``'s results. Records of standard input (path
``-``) name no file: each is a recording of its own. Records of ``instrunet embed`` hold the file's size and
modification time; :meth:`Library.drop_stale` leaves out files changed or gone since.

The similarities are numpy's own einsum loops, never BLAS: a large library's product would run
on BLAS's threads, whose number is the host's process-wide setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ._files import file_identity
from .analysis import Embedding
from .batch import file_stamp, record_stamp
from .errors import InputError, InstrunetError, warn
from .inputs import check_count, check_path, is_seconds, path_problem
from .output import EMBEDDING_SCHEMA

if TYPE_CHECKING:  # annotations only
    from .model import Model

__all__ = ["Library", "Match", "Moment", "other_manifest", "same_weights", "vectors_key"]

_NOT_TEXT = "{}: not a text file (expected the JSON lines of `instrunet embed`)"


@dataclasses.dataclass(frozen=True)
class Moment:
    """The window of a recording most like the query: seconds, and its cosine similarity."""

    start: float
    end: float
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "similarity": round(self.similarity, 6),
        }


@dataclasses.dataclass(frozen=True)
class Match:
    """One library recording and its cosine similarity to the query (-1 to 1); ``where``: its
    window most like the query (when its windows were kept; ``None`` otherwise, or when every
    window is silent)."""

    path: str
    similarity: float
    where: Moment | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "similarity": round(self.similarity, 6)}
        if self.where is not None:
            d["where"] = self.where.to_dict()
        return d


def same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two records' ``model`` members name the same weights (sha256 when both have one,
    else name and version)."""
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    return (a.get("name"), a.get("version")) == (b.get("name"), b.get("version"))


def other_manifest(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two records' ``model`` members name two different manifests (``manifest_sha256``,
    written since 0.2.0; a record without one names none): the same weights under another
    manifest may read the audio through another front end, so their vectors differ."""
    x, y = a.get("manifest_sha256"), b.get("manifest_sha256")
    return isinstance(x, str) and isinstance(y, str) and x != y


def vectors_key(model: Mapping[str, Any], known: Mapping[str, str] | None = None) -> str | None:
    """What names the vectors a record's ``model`` member computes: its ``embedding_sha256``
    (:attr:`~instrunet_core.manifest.Manifest.embedding_sha256`), else, for a record written
    before records named it, the embedding digest of the artifact its ``manifest_sha256`` names
    in ``known`` (``{manifest_sha256: embedding_sha256}``, as
    :func:`instrunet_core.registry.embedding_digests` lists the installed ones; a record written
    before records named their manifest, by its ONNX file's ``sha256``, which ``known`` also maps
    where every installed artifact of that file embeds alike); ``None`` when neither says."""
    key = model.get("embedding_sha256")
    if isinstance(key, str) and key:
        return key
    if not known:
        return None
    digest = model.get("manifest_sha256")
    if isinstance(digest, str):
        return known.get(digest)
    sha = model.get("sha256")
    return known.get(sha) if isinstance(sha, str) else None


#: Said where a record without the digest of its vectors is refused by a library without
#: ``known``: records of one network under another manifest may still be the same vectors.
_KNOWN_HINT = (
    "; records written before they named their vectors' digest are read as the installed model "
    "they name with Library(known=instrunet_core.registry.embedding_digests())"
)


#: The latest time (seconds) a window of a library's recording may start or end: 2**31 s, about
#: 68 years, more than any file holds (a record beyond it was not written by ``instrunet embed``).
_MAX_SECONDS = 2.0**31

#: The path a record of ``instrunet embed -`` holds: standard input, never a file's name.
STDIN_PATH = "-"


def _file_keys(real: str) -> list[str]:
    """What says that a resolved path names a file already seen: the path itself, and the
    file's device and inode where it exists (a hard link is the same file; a file saved anew
    under its name is still that name's)."""
    ident = file_identity(real)
    return [real] if ident is None else [real, f"inode {ident[0]}:{ident[1]}"]


def _model_text(m: Mapping[str, Any]) -> str:
    sha = str(m.get("sha256") or "")[:12]
    return f"{m.get('name')} {m.get('version')}" + (f" (sha256 {sha}…)" if sha else "")


def _model_flag(m: Mapping[str, Any]) -> str:
    """The ``--model`` option that chooses the model a record names (``name@version``)."""
    version = m.get("version")
    return f"--model {m.get('name')}{f'@{version}' if version else ''}"


#: How every record `instrunet embed` writes begins (where one glued to a torn line starts).
_RECORD_START = '{"schema": "' + EMBEDDING_SCHEMA + '"'


@dataclasses.dataclass
class Library:
    """Recordings' vectors from one model.

    Attributes
    ----------
    model : dict
        The ``model`` member of the records (name, version, sha256, …): given, or the first
        record's; every record added must compute the same vectors (:func:`vectors_key`; for
        records that do not say, the same weights and manifest).
    paths : list of str
        The recordings, in the order first added (a file added again keeps its place).
    vectors : np.ndarray [shape=(n, dim), dtype=float32]
        Their vectors, scaled to unit length when added (a silent recording's is zero: similar
        to nothing); read-only (stacked once from what was added).
    hop : float or None
        Seconds between the windows' starts of the vectors added with a hop (``None`` until one
        is): every vector added with a hop must have this one.
    earlier : int
        How many records :meth:`read` took that hold no hop: written by an instrunet before
        0.2.0, whose windows were not always today's (until 2026-12-06 the last window was not
        aligned to the end), so the same model may embed those files otherwise now.
    known : dict
        ``{manifest_sha256: embedding_sha256}`` of the artifacts a record written before records
        named the digest of their vectors may come from (``instrunet search`` passes
        :func:`instrunet_core.registry.embedding_digests`, the installed ones; see
        :func:`vectors_key`): with it, such a record of ``family`` 3.0.0 joins a library of
        3.1.0's vectors; without it, a record joins only its own manifest's.
    """

    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    paths: list[str] = dataclasses.field(default_factory=list)
    hop: float | None = None
    earlier: int = 0
    known: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    _rows: list[np.ndarray] = dataclasses.field(default_factory=list, repr=False)
    _stacked: np.ndarray | None = dataclasses.field(default=None, repr=False)
    # per recording: its sounding windows' (vectors [T, dim], times [T, 2]), or None
    _windows: list[tuple[np.ndarray, np.ndarray] | None] = dataclasses.field(default_factory=list, repr=False)
    # per recording: its resolved path, which says when two records name the same file
    _real: list[str] = dataclasses.field(default_factory=list, repr=False)
    _index: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    # per recording: the file's size and modification time its record holds, or None
    _stamps: list[dict[str, int] | None] = dataclasses.field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def distinct(self) -> int:
        """How many different files the library holds (each file once: a later record of a file
        replaces its earlier one)."""
        return len(self.paths)

    @property
    def vectors(self) -> np.ndarray:
        if self._stacked is None:
            dim = self._rows[0].size if self._rows else 0
            self._stacked = np.stack(self._rows) if self._rows else np.zeros((0, dim), np.float32)
            self._stacked.setflags(write=False)
            # the rows become views of it: each vector held once for the rest of the search, not
            # as a row and a row of the matrix (100,000 of 512 values: 449 MB traced after the
            # stacking, now 244; its moment of both stays: a scale audit)
            self._rows = list(self._stacked)
        return self._stacked

    def add(
        self,
        path: str,
        vector: Sequence[float] | np.ndarray,
        model: Mapping[str, Any],
        *,
        origin: str,
        windows: np.ndarray | None = None,
        times: np.ndarray | None = None,
        hop: float | None = None,
        stamp: Mapping[str, int] | None = None,
    ) -> None:
        """Add one recording's vector (and, to say where it is most like a query, its sounding
        windows' vectors ``[T, dim]`` and ``times [T, 2]``); ``origin`` names it in errors (a
        file and line, or the recording). ``hop``: the seconds between its windows' starts;
        ``stamp``: the file's ``file_size`` and ``file_mtime_ns`` when it was embedded (for
        :meth:`drop_stale`). A file already in the library (the same resolved path) gets this
        vector instead of its earlier one.

        The vectors are scaled to unit length (in float64, so that no size of finite value
        overflows), so that every similarity is a cosine in [-1, 1].

        Raises
        ------
        InputError
            A vector is not finite numbers, or its model, hop or size differs from the
            library's; the path holds a NUL byte.
        """
        path = os.fspath(path)
        problem = path_problem(path)
        if problem == "holds a NUL byte":
            raise InputError(f"{origin}: the path holds a NUL byte")
        if problem is not None:
            raise InputError(f"{origin}: the path is not a file name this system can encode")
        v = _unit(_vector(vector, origin))
        why = self._mismatch(model)
        if not self.model:
            self.model = dict(model)
        elif why == "vectors":
            raise InputError(
                f"{origin}: embedded by {_model_text(model)}, but this search uses {_model_text(self.model)}, "
                "whose vectors differ (another network, front end or embedding output); vectors of different "
                f"models cannot be compared (choose that model with {_model_flag(model)}, or embed again)"
            )
        elif why == "weights":
            raise InputError(
                f"{origin}: embedded by {_model_text(model)}, but this search uses "
                f"{_model_text(self.model)}; vectors of different models cannot be compared "
                f"(choose that model with {_model_flag(model)}, or embed again{self._hint()})"
            )
        elif why == "manifest":
            raise InputError(
                f"{origin}: embedded by {_model_text(model)} (manifest_sha256 "
                f"{str(model['manifest_sha256'])[:12]}), but this search uses {_model_text(self.model)} under "
                f"another manifest ({str(self.model['manifest_sha256'])[:12]}: the same ONNX file with another "
                f"front end, labels or thresholds, whose vectors may differ); choose that model with "
                f"{_model_flag(model)} (or its folder), or embed again{self._hint()}"
            )
        elif "manifest_sha256" not in self.model and isinstance(model.get("manifest_sha256"), str):
            self.model["manifest_sha256"] = model["manifest_sha256"]  # (earlier records named none)
        if vectors_key(self.model, self.known) is None:  # (the library's first records named none)
            key = vectors_key(model, self.known)
            if key is not None:
                self.model["embedding_sha256"] = key
        if hop is not None:
            if not is_seconds(hop):
                raise InputError(f"{origin}: 'hop' is not a number of seconds > 0, got {str(hop)[:40]}")
            if self.hop is None:
                self.hop = float(hop)
            elif abs(float(hop) - self.hop) > 1e-6:
                raise InputError(
                    f"{origin}: embedded with a hop of {round(float(hop), 3):g} s, but this library's "
                    f"vectors have {round(self.hop, 3):g} s; vectors of different hops differ a little "
                    "(embed again with one --hop)"
                )
        if self._rows and v.size != self._rows[0].size:
            raise InputError(f"{origin}: {v.size} values, the library's vectors have {self._rows[0].size}")
        kept = None
        if windows is not None and times is not None:
            w = np.asarray(windows, np.float64)
            t = np.asarray(times, np.float64)
            w, t = (w.reshape(0, v.size), t.reshape(0, 2)) if w.size == 0 and t.size == 0 else (w, t)
            if (
                w.ndim != 2
                or w.shape[1] != v.size
                or t.shape != (len(w), 2)
                or not (np.all(np.isfinite(w)) and np.all(np.isfinite(t)))
            ):
                raise InputError(
                    f"{origin}: 'windows' do not hold one finite vector of {v.size} values and one "
                    "time span per window"
                )
            if np.any(t[:, 0] < 0) or np.any(t[:, 1] < t[:, 0]) or np.any(t > _MAX_SECONDS):
                raise InputError(
                    f"{origin}: a window's time span is not 'start' <= 'end' in seconds from 0 to "
                    f"{_MAX_SECONDS:.0f}"
                )
            kept = (_unit(w), t)
        stdin = path == STDIN_PATH  # each a recording of its own: no file says two are one
        real = STDIN_PATH if stdin else os.path.realpath(path)
        keys = [] if stdin else _file_keys(real)
        at = next((self._index[k] for k in keys if k in self._index), None)
        if at is None:
            self._index.update(dict.fromkeys(keys, len(self.paths)))
            self._rows.append(v.copy())
            self._windows.append(kept)
            self.paths.append(str(path))
            self._real.append(real)
            self._stamps.append(dict(stamp) if stamp is not None else None)
        else:  # a later record of the same file: its vector now
            self._index.update(dict.fromkeys(keys, at))
            self._rows[at], self._windows[at], self.paths[at] = v.copy(), kept, str(path)
            self._real[at] = real
            self._stamps[at] = dict(stamp) if stamp is not None else None
        self._stacked = None

    def __contains__(self, path: object) -> bool:
        """Whether the library holds the file at ``path`` (by its resolved path, or as a hard
        link to it; standard input's records, ``"-"``, name no file)."""
        return self._at(path) is not None

    def _at(self, path: object) -> int | None:
        if not isinstance(path, (str, os.PathLike)) or os.fspath(path) == STDIN_PATH:
            return None
        keys = _file_keys(os.path.realpath(path))
        return next((self._index[k] for k in keys if k in self._index), None)

    def has_windows(self, path: str | os.PathLike[str]) -> bool:
        """Whether the recording at ``path`` was added with its windows (a silent recording's
        may be none: then :meth:`nearest` has no ``where`` to give for it)."""
        at = self._at(path)
        return at is not None and self._windows[at] is not None

    def drop_stale(self) -> list[tuple[str, str]]:
        """Leave out the recordings whose file is gone, or whose size or modification time
        differs from what their record holds (changed since it was embedded: its vector is
        another sound's). Recordings whose record holds no size and time (stdin, records of
        earlier versions, vectors added without ``stamp``) stay.

        Returns
        -------
        list of (path, reason)
            Those left out, ``reason`` ``"gone"`` or ``"changed"``.
        """
        out: list[tuple[str, str]] = []
        keep: list[int] = []
        for i, stamp in enumerate(self._stamps):
            if stamp is None:
                keep.append(i)
                continue
            now = file_stamp(self._real[i])
            if now is None:
                out.append((self.paths[i], "gone"))
            elif now != stamp:
                out.append((self.paths[i], "changed"))
            else:
                keep.append(i)
        if out:
            self._rows = [self._rows[i] for i in keep]
            self._windows = [self._windows[i] for i in keep]
            self.paths = [self.paths[i] for i in keep]
            self._real = [self._real[i] for i in keep]
            self._stamps = [self._stamps[i] for i in keep]
            self._index = {k: j for j, r in enumerate(self._real) if r != STDIN_PATH for k in _file_keys(r)}
            self._stacked = None
        return out

    @classmethod
    def read(
        cls,
        source: str | os.PathLike[str] | IO[str],
        into: Library | None = None,
        *,
        name: str | None = None,
        windows: bool = True,
        known: Mapping[str, str] | None = None,
    ) -> Library:
        """The records of JSON lines written by ``instrunet embed`` (or ``Embedding.to_dict()``
        objects with a ``path``, one per line), from a file or an open text stream (stdin in a
        pipe); blank lines are skipped. ``windows=False`` leaves the records' window vectors
        (``instrunet embed --windows``) unread: a search that does not say where each match is
        most like the query has no use for them (they took 185 MB and 6.2 s against 101 MB and
        0.67 s for the same records without them: a scale audit).

        Raises
        ------
        InputError
            The file cannot be read, a line is not JSON or not an embedding record (a document
            whose ``schema`` is another's included), or it mixes models (each error names the
            file, or the stream by ``name``, else its own name or ``<stdin>``, and the line).
        """
        lib = into if into is not None else cls(known=dict(known or {}))
        if isinstance(source, (str, os.PathLike)):
            name = check_path(source)
            try:
                with open(name, encoding="utf-8") as f:
                    lib._add_lines(f, name, windows)
            except UnicodeDecodeError:
                raise InputError(_NOT_TEXT.format(name)) from None
            except OSError as e:
                raise InputError(f"{name}: cannot read: {e.strerror or e}") from None
        else:
            if name is None:
                name = "<stdin>" if source is sys.stdin else str(getattr(source, "name", "<stream>"))
            try:
                lib._add_lines(source, name, windows)
            except UnicodeDecodeError:
                raise InputError(_NOT_TEXT.format(name)) from None
            except OSError as e:  # (a pipe or socket that fails while it is read)
                raise InputError(f"{name}: cannot read: {e.strerror or e}") from None
        return lib

    def _add_lines(self, lines: Iterable[str], name: str, windows: bool = True) -> None:
        # line by line: a large library is not held as text as well as vectors
        torn: list[int] = []
        first: InputError | None = None
        before = len(self)
        for i, line in enumerate(lines, 1):
            if i == 1:  # a byte-order mark, as editors on Windows save UTF-8
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                self._add_record(line, f"{name}:{i}", windows)
            except InputError as e:
                # A record cut short (a full disk, `embed` stopped by a signal) is no reason to
                # refuse every whole one: it is left out and said; a record `embed >>` appended
                # after it, on the same line, is read from where it starts.
                if not str(e).startswith(f"{name}:{i}: not JSON"):
                    raise
                first = first or e
                torn.append(i)
                start = line.find(_RECORD_START, 1)
                if start > 0:
                    self._add_record(line[start:], f"{name}:{i}", windows)
        if torn:
            if len(self) == before:  # nothing whole: not a library (or nothing left of one)
                raise first or InputError(f"{name}: no embedding record")
            warn(
                f"{name}: line{'s' if len(torn) > 1 else ''} {', '.join(map(str, torn[:5]))}"
                f"{' ...' if len(torn) > 5 else ''}: not a whole record (a write cut short?): left out"
            )

    def _add_record(self, line: str, where: str, keep_windows: bool = True) -> None:
        """One JSON line of ``instrunet embed`` (``where``: its file and line, for errors; its
        window vectors left unread unless ``keep_windows``)."""
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(
                f"{where}: not JSON ({e.msg}); expected the JSON lines of `instrunet embed`"
            ) from None
        except RecursionError:
            raise InputError(f"{where}: not an embedding record: JSON nested too deeply") from None
        except ValueError as e:  # an integer of thousands of digits
            raise InputError(f"{where}: not an embedding record: {str(e)[:100]}") from None
        if not isinstance(rec, dict) or not {"path", "model", "vector"} <= rec.keys():
            raise InputError(f"{where}: not an embedding record (needs 'path', 'model' and 'vector')")
        if rec.get("schema", EMBEDDING_SCHEMA) != EMBEDDING_SCHEMA:  # lines before the key have none
            raise InputError(
                f"{where}: a {str(rec['schema'])[:60]!r} document, not an embedding record "
                f"({EMBEDDING_SCHEMA}, what `instrunet embed` writes)"
            )
        if not isinstance(rec["model"], dict):
            raise InputError(f"{where}: 'model' is not an object")
        if not isinstance(rec["path"], str):
            raise InputError(f"{where}: 'path' is not a string")
        windows = times = None
        if keep_windows and isinstance(rec.get("windows"), list):  # `instrunet embed --windows`
            try:
                sounding = [w for w in rec["windows"] if not w["silent"]]
                spans = [(w["start"], w["end"]) for w in sounding]
                vectors = [w["vector"] for w in sounding]
            except (KeyError, TypeError):
                raise InputError(f"{where}: a window lacks 'start', 'end', 'silent' or 'vector'") from None
            try:
                times = np.array(spans, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{where}: a window's 'start' or 'end' is not a number") from None
            vecs = [_vector(v, where) for v in vectors]
            if any(v.size != vecs[0].size for v in vecs):
                raise InputError(f"{where}: the windows' vectors are not all of one size")
            windows = np.array(vecs, np.float64)
        self.add(
            rec["path"],
            rec["vector"],
            rec["model"],
            origin=where,
            windows=windows,
            times=times,
            hop=rec.get("hop"),
            stamp=record_stamp(rec),
        )
        if rec.get("hop") is None:
            self.earlier += 1

    @classmethod
    def embed(
        cls,
        model: Model,
        files: Iterable[str],
        *,
        hop: float | None = None,
        windows: bool = False,
        into: Library | None = None,
        on_error: Callable[[str, InstrunetError | OSError], None] | None = None,
        workers: int | None = None,
        known: Mapping[str, str] | None = None,
    ) -> Library:
        """Embed ``files`` with ``model`` (:meth:`Model.embed <instrunet_core.model.Model.embed>`);
        ``windows``: keep their sounding windows' vectors too (for :meth:`nearest`'s ``where``).

        A file that cannot be read or decoded is passed to ``on_error(path, error)`` and left
        out; without ``on_error`` the error is raised. ``hop``: by default the hop of ``into``'s
        vectors where it has any (so that new vectors can join them), else the model's.

        Raises
        ------
        InputError
            ``files`` is one path rather than a list of them (it would be read letter by
            letter), or a vector cannot join ``into`` (:meth:`add`).
        """
        if isinstance(files, (str, bytes, os.PathLike)):
            raise InputError(
                f"Library.embed: files must be a list of paths, got one {type(files).__name__} "
                "(one file: [path])"
            )
        lib = into if into is not None else cls(known=dict(known or {}))
        if hop is None:
            hop = lib.hop
        for item in files:
            path = os.fspath(item)
            try:
                emb = model.embed(path, hop=hop, workers=workers)
            except (InstrunetError, OSError) as e:
                if on_error is None:
                    raise
                on_error(path, e)
                continue
            keep = ~emb.silent
            lib.add(
                path,
                emb.vector,
                emb.model,
                origin=path,
                windows=emb.windows[keep] if windows else None,
                times=emb.times[keep] if windows else None,
                hop=emb.hop,
            )
        return lib

    def nearest(
        self,
        vector: Embedding | Sequence[float] | np.ndarray,
        *,
        k: int = 10,
        exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (),
    ) -> list[Match]:
        """The ``k`` recordings most similar to ``vector`` (cosine similarity, highest first; ties
        in the order added), leaving out those whose path resolves to one in ``exclude`` (or is
        a hard link to it); each with its window most like ``vector`` where its windows were
        kept (``Match.where``).

        ``vector`` is the query's :class:`~instrunet_core.analysis.Embedding` (then its model
        and hop are checked against the library's, as :meth:`add` checks a record's: a vector
        of other weights, even of the same size, is refused) or a bare vector (only its size
        can be checked). ``exclude`` is one path or several.

        Raises
        ------
        InputError
            The query's model or hop differs from the library's, or its size; ``k`` not a whole
            number >= 1 (``InputError`` is a ``ValueError``).
        """
        k = check_count(k, name="k", what="nearest")
        if isinstance(exclude, (str, os.PathLike)):  # one path, not its letters
            exclude = [exclude]
        if isinstance(vector, Embedding):
            self._check_query(vector)
            vector = vector.vector
        if not self.paths:
            return []
        q = _unit(_vector(np.asarray(vector).reshape(-1), "the query"))
        vectors = self.vectors
        if q.size != vectors.shape[1]:
            raise InputError(f"the query has {q.size} values, the library's vectors {vectors.shape[1]}")
        scores = _cosines(vectors, q)
        skip = {os.path.realpath(p) for p in exclude}
        same = {ident[:2] for p in skip if (ident := file_identity(p)) is not None}  # hard links too

        def linked(p: str) -> bool:  # device and inode of an excluded file: a hard link to it
            ident = None if p == STDIN_PATH else file_identity(p)
            return ident is not None and ident[:2] in same

        order = np.argsort(-scores, kind="stable")
        out: list[Match] = []
        for i in order:
            real = self._real[i]
            if real in skip or (same and linked(real)):
                continue
            out.append(Match(self.paths[i], float(scores[i]), self._moment(int(i), q)))
            if len(out) == k:
                break
        return out

    def _hint(self) -> str:
        """:data:`_KNOWN_HINT` where this library reads records without ``known``."""
        return "" if self.known else _KNOWN_HINT

    def _mismatch(self, model: Mapping[str, Any]) -> str | None:
        """Why a record's (or a query's) ``model`` cannot join the library's vectors: ``"vectors"``
        (both name their vectors' digest, :func:`vectors_key`, and the digests differ),
        ``"weights"`` or ``"manifest"`` (where one names none: another ONNX file, or the same file
        under another manifest); ``None`` where it can, or the library is empty."""
        if not self.model:
            return None
        a, b = vectors_key(self.model, self.known), vectors_key(model, self.known)
        if a is not None and b is not None:
            # (not the ONNX files' sha256: family 3.2.0's graph adds a gate after 3.1.0's network
            # and embeds as it does; the digest names the network's file)
            return None if a == b else "vectors"
        if not same_weights(self.model, model):
            return "weights"
        return "manifest" if other_manifest(self.model, model) else None

    def _check_query(self, query: Embedding) -> None:
        """A query's model and hop against the library's (nothing to check in an empty one)."""
        why = self._mismatch(query.model)
        if why == "vectors":
            raise InputError(
                f"the query was embedded by {_model_text(query.model)}, but this library holds "
                f"{_model_text(self.model)}'s vectors, which differ (another network, front end or embedding "
                "output); vectors of different models cannot be compared (embed the query with the library's model)"
            )
        if why == "weights":
            raise InputError(
                f"the query was embedded by {_model_text(query.model)}, but this library holds "
                f"{_model_text(self.model)}'s vectors; vectors of different models cannot be compared "
                f"(embed the query with the library's model{self._hint()})"
            )
        if why == "manifest":
            raise InputError(
                f"the query was embedded by {_model_text(query.model)} under another manifest than this "
                f"library's vectors (manifest_sha256 {str(query.model['manifest_sha256'])[:12]}, the "
                f"library's {str(self.model['manifest_sha256'])[:12]}: another front end, labels or "
                "thresholds for the same ONNX file); embed the query with the model folder that embedded "
                f"the library{self._hint()}"
            )
        if self.hop is not None and query.hop is not None and abs(float(query.hop) - self.hop) > 1e-6:
            raise InputError(
                f"the query was embedded with a hop of {round(float(query.hop), 3):g} s, but this "
                f"library's vectors have {round(self.hop, 3):g} s (embed the query with hop={self.hop!r})"
            )

    def _moment(self, i: int, q: np.ndarray) -> Moment | None:
        kept = self._windows[i]
        if kept is None or not len(kept[0]):
            return None
        w, t = kept
        sims = _cosines(w, q)
        j = int(np.argmax(sims))
        return Moment(float(t[j, 0]), float(t[j, 1]), float(sims[j]))


def _vector(values: Any, origin: str) -> np.ndarray:
    """A finite, non-empty vector of float64 from ``values`` (``origin`` names it in errors)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float64
        raise InputError(f"{origin}: 'vector' is not a list of numbers") from None
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise InputError(f"{origin}: 'vector' is not a non-empty list of finite numbers")
    return v


def _unit(v: np.ndarray) -> np.ndarray:
    """Finite float64 vectors (the last axis) scaled to unit length, as float32; a zero vector
    stays zero. Each is first divided by its largest magnitude, so that no finite value (3e38,
    1e300) overflows the sum of squares."""
    peak = np.max(np.abs(v), axis=-1, keepdims=True)
    v = np.divide(v, peak, out=np.zeros_like(v), where=peak > 0)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0).astype(np.float32)


def _cosines(vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cosine similarities of unit (or zero) ``vectors [n, dim]`` to the unit ``q``, each in
    [-1, 1] (float32 rounding of a vector with itself can reach 1 + 1e-7)."""
    return np.clip(np.einsum("ij,j->i", vectors, q), -1.0, 1.0)
