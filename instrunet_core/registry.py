"""The registry: models, analyzers and writers contributed through pluggy hooks.

(Named ``registry`` so that "plugins" means one thing: the distributions in ``plugins/`` and
third-party ones; the built-ins are in :mod:`instrunet_core.default_plugins`.)

Nothing is loaded at import time. :func:`build_registry` makes a fresh
:class:`Registry` (built-ins, then entry points of group ``instrunet``, then any
``extra_plugins`` objects); :func:`get_registry` caches one per process.

``INSTRUNET_PLUGINS`` (comma-separated entry-point names) restricts which entry
points are loaded; set but empty, none are. A name in it that matches no installed
entry point is reported. Built-ins always load.

Plugins cannot take over silently:

* a model name belongs to the plugin that registered it first (the built-ins go first):
  another plugin registering the same name is refused and reported, so a plugin cannot
  slip a "newer version" of the built-in ``family`` model in;
* the default model is the built-in one; a third-party ``default=True`` is honoured only
  when no built-in default exists. The user chooses another default explicitly with
  ``INSTRUNET_DEFAULT_MODEL=<name>`` or ``<name>@<version>`` (or per call: ``load_model(name)``, ``--model NAME``);
* what plugin code prints while it is imported, registers, analyses or writes is sent to
  stderr, never to stdout (where ``--json`` output goes): :func:`plugin_stdout`.

Every hook is called through pluggy (one plugin's implementations at a time, so that a
wrapper hookimpl works and one plugin's failure is its own).

A plugin that fails to import, whose hook raises (``SystemExit`` included) or registers
something invalid is recorded as an error (shown by ``instrunet plugins``) and a warning
names it; the host keeps working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.metadata
import inspect
import io
import math
import os
import re
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import _analyzer_threads, hookspecs
from ._analyzer_threads import AnalyzerThread, Limit, RoutedStdout, prints_to_stderr, resolve_limit
from ._forksafe import ForkSafeLock
from .errors import InputError, ModelError, PluginError, UnknownModelError, describe, warn
from .hookspecs import Analyzer, RegisterModel, StreamAnalyzer, StreamFactory, Writer, hookimpl
from .manifest import MANIFEST_FILENAME, SEMVER_RE, Manifest, parse_semver, read_manifest
from .output import DATA_STDOUT, STDOUT_CLOSED, data_stdout, instrunet_version, jsonable

if TYPE_CHECKING:  # annotations only: analyzers receive it, the registry never builds one
    import numpy as np

    from .analysis import AnalysisContext, WindowResult

__all__ = [
    "ANALYZER_MAX_VALUES",
    "AnalyzerFeed",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "DEFAULT_ENV_VAR",
    "ModelEntry",
    "PluginInfo",
    "Registry",
    "build_registry",
    "embedding_digests",
    "get_registry",
    "list_models",
    "packaged_versions",
    "packaged_versions_hook",
    "plugin_stdout",
]

ENTRY_POINT_GROUP = "instrunet"
ENV_VAR = "INSTRUNET_PLUGINS"
#: Names the default model explicitly (the user's choice beats every plugin's ``default=True``).
DEFAULT_ENV_VAR = "INSTRUNET_DEFAULT_MODEL"
BUILTIN_NAME = "instrunet_core.default_plugins"
#: Most seconds an analysis that stops early waits for its analyzers' running calls to end.
CLOSE_GRACE_SECONDS = 10.0
#: Most values an analyzer's result may hold (numbers, keys, array elements; a string counts one per
#: started 100 characters): a larger result becomes that analyzer's error instead of a JSON
#: document of any size.
ANALYZER_MAX_VALUES = 1_000_000
_HOOKS = ("instrunet_register_models", "instrunet_register_analyzers", "instrunet_register_writers")


@dataclasses.dataclass
class ModelEntry:
    """One registered model version (``error`` set when its manifest is broken; ``default``:
    registered with ``default=True`` — :func:`list_models` marks the one default instead)."""

    name: str
    version: str
    path: Path
    plugin: str
    default: bool = False
    manifest: Manifest | None = dataclasses.field(default=None, repr=False)  # (its own repr is long)
    error: str | None = None

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILENAME


@dataclasses.dataclass
class PluginInfo:
    """One plugin as ``instrunet plugins`` lists it."""

    name: str
    version: str | None
    hooks: list[str]
    builtin: bool = False
    error: str | None = None
    #: The analyzers it registered, by name.
    analyzers: list[str] = dataclasses.field(default_factory=list)
    #: Seconds its import and hooks took (every command that builds the registry waits for them).
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _chosen_default() -> tuple[str, str | None]:
    """``INSTRUNET_DEFAULT_MODEL`` as ``(name, version)``: ``"family-compact"`` or
    ``"family@2.0.0"`` (version ``None`` when not given; ``("", None)`` when unset)."""
    return split_model_spec(os.environ.get(DEFAULT_ENV_VAR, ""))


def split_model_spec(spec: str) -> tuple[str, str | None]:
    """``"family"`` → ``("family", None)``; ``"family@2.0.0"`` → ``("family", "2.0.0")`` (the
    form ``INSTRUNET_DEFAULT_MODEL``, ``load_model`` and ``--model`` accept)."""
    name, at, version = spec.strip().partition("@")
    return name.strip(), (version.strip() or None) if at else None


def _entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    """Entry points of group ``instrunet`` (tests monkeypatch this function)."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


@contextlib.contextmanager
def plugin_stdout(*, fd: bool = False) -> Iterator[None]:
    """Send what plugin code prints to stderr, so that it cannot corrupt machine output on stdout.

    Python-level prints (``sys.stdout``) always; with ``fd``, for native code, file descriptor 1
    itself: while plugin code runs, fd 1 points at stderr (or /dev/null when stderr is closed).
    Swapping a descriptor is process-wide, so only a single-threaded caller (the CLI) asks for it.
    """
    saved = None
    data = data_stdout()  # machine output's stdout (writers.write_stdout)
    while isinstance(data, RoutedStdout):  # the stream itself: this thread's prints are routed away
        data = data.wrapped
    made = None  # the copy of fd 1 made here, flushed before fd 1 is given back
    if fd:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if sys.stdout is not None:
                sys.stdout.flush()
            saved = os.dup(1)
            try:
                os.dup2(2, 1)
            except OSError:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            if data is not None and DATA_STDOUT.get() is None and _writes_to_fd1(data):
                # it writes to fd 1, which is stderr now: write to the old fd 1's copy instead
                data = made = io.TextIOWrapper(
                    io.BufferedWriter(io.FileIO(saved, "w", closefd=False)),
                    encoding=getattr(data, "encoding", None) or "utf-8",
                    errors=getattr(data, "errors", None) or "strict",
                )
    token = DATA_STDOUT.set(STDOUT_CLOSED if data is None else data)
    try:
        # this thread's prints only: contextlib.redirect_stdout swapped sys.stdout for every
        # thread (a host's other threads printed to stderr while a plugin loaded), and two
        # threads building registries at once left it swapped for good (a host audit)
        with prints_to_stderr():
            yield
    finally:
        DATA_STDOUT.reset(token)
        if saved is not None:
            if made is not None:
                with contextlib.suppress(OSError, ValueError):
                    made.flush()
            with contextlib.suppress(OSError):
                os.dup2(saved, 1)
            os.close(saved)


def _writes_to_fd1(stream: Any) -> bool:
    """Whether ``stream`` writes to file descriptor 1 (not a capture object or a StringIO)."""
    try:
        return int(stream.fileno()) == 1
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


#: What an analyzer's or a writer's name may be.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """The names of ``plugin``'s ``@hookimpl`` functions that are no hook of instrunet's."""
    out = []
    for attr in dir(plugin):
        if attr in _HOOKS or attr.startswith("__"):
            continue
        try:
            opts = pm.parse_hookimpl_opts(plugin, attr)
        except Exception:  # noqa: BLE001 - an attribute that cannot be read is no hook
            opts = None
        if opts is not None and (opts.get("specname") or attr) not in _HOOKS:  # specname= names the hook
            out.append(opts.get("specname") or attr)
    return out


def _folder_version(p: Path) -> str:
    """The version a ``<name>/<version>/`` folder's name gives (``"?"`` when it gives none)."""
    try:
        parse_semver(p.name)
    except InputError:
        return "?"
    return p.name


def _dist_version(ep: Any) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None) if dist is not None else None


#: The project's own distributions (normalised names): their plugins load first.
OWN_DISTRIBUTIONS = frozenset(
    {
        "instrunet",
        "instrunet-app",
        "instrunet-baseline",
        "instrunet-condition",
        "instrunet-large",
        "instrunet-pedalboard",
        "instrunet-ray",
    }
)


def _dist_name(ep: Any) -> str | None:
    """The name of the distribution an entry point comes from (``None`` when it has none)."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or (getattr(dist, "metadata", None) or {}).get("Name")


def _load_order(ep: Any) -> tuple[bool, str, str]:
    """The order plugins are loaded in: the project's own distributions
    (:data:`OWN_DISTRIBUTIONS`; a name prefix anyone may use is no sign of that) first, then by
    distribution name, then by entry-point name."""
    key = re.sub(r"[-_.]+", "-", str(_dist_name(ep) or "")).lower()
    return (key not in OWN_DISTRIBUTIONS, key, str(getattr(ep, "name", "")))


def _dist_text(ep: Any) -> str:
    """The distribution an entry point comes from, as ``name version`` (for messages)."""
    return f"{_dist_name(ep) or 'an unnamed distribution'} {_dist_version(ep) or ''}".strip()


def _unrouted(stream: Any) -> Any:
    """``stream`` without the print routing's wrappers (:class:`RoutedStdout`), which come and
    go with the analyses of every thread: what the stream really is."""
    while isinstance(stream, RoutedStdout):
        stream = stream.wrapped
    return stream


@contextlib.contextmanager
def _streams_kept(plugin: str, said: list[str]) -> Iterator[None]:
    """While a plugin is imported and registers: ``sys.stdout`` and ``sys.stderr`` as they were
    before, put back if its code replaced them, with a warning. The common "UTF-8 output" line
    at import, ``sys.stdout = io.TextIOWrapper(sys.stdout.buffer, ...)``, wrapped stderr's buffer
    there (a plugin's prints go to stderr), and every later command printed its data on stderr
    (a plugin audit). The print routing's own wrappers are no replacement: they come and go with
    the analyses of the host's other threads. What to say goes to ``said``."""
    before = (_unrouted(sys.stdout), _unrouted(sys.stderr))
    try:
        yield
    finally:
        now = (_unrouted(sys.stdout), _unrouted(sys.stderr))
        which = [
            n for n, was, cur in zip(("sys.stdout", "sys.stderr"), before, now, strict=True) if was is not cur
        ]
        if which:
            if "sys.stdout" in which:
                # while analyses of other threads route their analyzers' prints, put back the
                # routing around the host's stream (their prints reached the host's stdout)
                sys.stdout = RoutedStdout(before[0]) if _analyzer_threads._live else before[0]
            if "sys.stderr" in which:
                sys.stderr = before[1]
            for cur in now:
                _let_go(cur, keep=before)
            # said by the caller once the plugin's code is done: raised here (a warnings filter
            # set to "error"), it was taken for the plugin's own failure to load (a docs audit)
            said.append(
                f"instrunet plugin {plugin!r} replaced {' and '.join(which)} while it loaded; put back "
                "(standard output belongs to the host application and to machine output)"
            )


def _say_all(said: list[str]) -> None:
    """Warn what :func:`_streams_kept` collected, once the plugin's code is done (outside its
    ``try``: under an "error" filter the warning itself is raised, not taken for the plugin's
    failure, and never in place of a Ctrl-C on its way up)."""
    for msg in said:
        warn(msg)


def _let_go(replacement: Any, *, keep: Sequence[Any]) -> None:
    """Detach a stream a plugin made from the buffer it shares with a real one (stdout's or
    stderr's): dropped, a text wrapper closes its buffer, and the real stream with it. The
    streams in ``keep`` (those put back) and the interpreter's own are never touched."""
    real = [*keep, sys.__stdout__, sys.__stderr__]
    if any(replacement is f for f in real) or not hasattr(replacement, "detach"):
        return
    shared = {id(getattr(f, "buffer", None)) for f in real if f is not None}
    if id(getattr(replacement, "buffer", None)) in shared:
        with contextlib.suppress(Exception):  # (a stream the plugin closed or broke itself)
            replacement.flush()
            replacement.detach()


class Registry:
    """Models, analyzers and writers registered by plugins."""

    def __repr__(self) -> str:
        return (
            f"<Registry: {len(self.plugins)} plugins, {len(self.models)} model versions, "
            f"analyzers {sorted(self.analyzers)}, writers {sorted(self.writers)}>"
        )

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.models: list[ModelEntry] = []
        #: Every analyzer by name: a whole-file function, or the factory of a streaming one
        #: (named in :attr:`streaming`).
        self.analyzers: dict[str, Analyzer | StreamFactory] = {}
        self.streaming: set[str] = set()
        #: The plugin (entry point or name given to :meth:`add_plugin`) of every analyzer.
        self.analyzer_plugins: dict[str, str] = {}
        self.writers: dict[str, Writer] = {}
        self.plugins: list[PluginInfo] = []
        self._default_name: str | None = None
        self._owners: dict[tuple[str, str], str] = {}  # (kind, name) -> the plugin that registered it

    # ------------------------------------------------------------------ loading
    def _error(self, info: PluginInfo, msg: str) -> None:
        info.error = msg if info.error is None else f"{info.error}; {msg}"
        warn(f"instrunet plugin {info.name!r}: {msg}")

    def add_plugin(
        self, plugin: Any, name: str, *, version: str | None = None, builtin: bool = False
    ) -> PluginInfo:
        """Register a plugin object (module or instance with hookimpls) and run its hooks."""
        info = PluginInfo(name=name, version=version, hooks=[], builtin=builtin)
        self.plugins.append(info)
        try:
            self.pm.register(plugin, name=name)
        except Exception as e:  # noqa: BLE001 - a bad plugin never breaks the host
            self._error(info, f"cannot register: {describe(e)}")
            return info
        info.hooks = sorted(
            h for h in _HOOKS if any(i.plugin is plugin for i in getattr(self.pm.hook, h).get_hookimpls())
        )
        for attr in _HOOKS:  # a hook without its decorator would never run, unsaid (a plugin audit)
            if attr not in info.hooks and callable(getattr(plugin, attr, None)):
                self._error(
                    info,
                    f"{attr} is not marked @hookimpl, so it never runs (decorate it with "
                    "instrunet_core.hookimpl)",
                )
        for attr in _unknown_hooks(self.pm, plugin):  # a misspelt hook would never run, unsaid
            near = difflib.get_close_matches(attr, _HOOKS, n=1)
            hint = f"; did you mean {near[0]}?" if near else f" (instrunet's hooks: {', '.join(_HOOKS)})"
            self._error(info, f"@hookimpl {attr} is not one of instrunet's hooks{hint}")
        if not info.hooks and not isinstance(plugin, types.ModuleType):
            # (a module without hooks is an adapter package listed for what it is: pedalboard, ray)
            self._error(
                info,
                f"implements none of instrunet's hooks ({', '.join(_HOOKS)}); the entry point names a "
                f"{type(plugin).__name__}, expected a module or object with @hookimpl functions",
            )
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        for hook in info.hooks:
            # This plugin's implementations only, through pluggy (wrappers included).
            call = self.pm.subset_hook_caller(hook, remove_plugins=others)
            said: list[str] = []
            try:
                with _streams_kept(info.name, said), plugin_stdout():
                    returned = call(register=self._register_fn(hook, info))
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - SystemExit from a plugin is reported, not obeyed
                _say_all(said)
                self._error(info, f"{hook} failed: {describe(e)}")
                continue
            _say_all(said)
            for r in returned if isinstance(returned, list) else []:
                # a hook registers by calling register(); one written as a generator or a coroutine
                # never ran its body, and a value returned is not looked at: said, not ignored
                if inspect.isgenerator(r) or inspect.iscoroutine(r):
                    r.close()  # (no "never awaited" warning that names no plugin)
                    what = "a generator (it yields)" if inspect.isgenerator(r) else "a coroutine (async def)"
                    self._error(
                        info,
                        f"{hook} is {what}: its body never ran, so it registered nothing (a hook is a "
                        "plain function that calls register())",
                    )
                else:
                    self._error(
                        info,
                        f"{hook} returned a {type(r).__name__}, which is not used (a hook registers by "
                        "calling register() and returns nothing)",
                    )
        return info

    def _register_fn(self, hook: str, info: PluginInfo) -> Callable[..., None]:
        if hook == "instrunet_register_models":

            def register_model(
                name: str, manifest_path_or_dir: str | os.PathLike[str], *, default: bool = False
            ) -> None:
                self._register_model(info, name, manifest_path_or_dir, default=default)

            return register_model
        if hook == "instrunet_register_analyzers":

            def register_analyzer(
                name: str, func: Analyzer | None = None, *, stream: StreamFactory | None = None
            ) -> None:
                if (func is None) == (stream is None):
                    self._error(info, f"analyzer {name!r}: give either func or stream=, not both or neither")
                    return
                if self._register_named(info, "analyzer", self.analyzers, name, func or stream):
                    self.analyzer_plugins[name] = info.name
                    info.analyzers.append(name)
                    if stream:
                        self.streaming.add(name)

            return register_analyzer

        def register_writer(format_name: str, writer: Writer) -> None:
            self._register_named(info, "writer", self.writers, format_name, writer)

        return register_writer

    def _register_named(
        self, info: PluginInfo, kind: str, table: dict[str, Any], name: Any, func: Any
    ) -> bool:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            # a name goes on the command line (--format, --analyzers a,b) and into listings
            self._error(
                info,
                f"{kind} name must be letters, digits, '_', '.' or '-' (at most 64, starting with a "
                f"letter or digit), got {name!r}",
            )
            return False
        if kind == "analyzer" and name == "none":
            # (`--analyzers none` means no analyzer: one named so could never be chosen)
            self._error(info, "analyzer name 'none' is reserved (--analyzers none skips them all)")
            return False
        if not callable(func):
            self._error(info, f"{kind} {name!r} is not callable")
            return False
        if name in table:
            owner = self._owners.get((kind, name))
            by = f" by plugin {owner!r}" if owner else ""
            self._error(info, f"{kind} {name!r} is already registered{by}; keeping the first one")
            return False
        table[name] = func
        self._owners[(kind, name)] = info.name
        return True

    def _register_model(self, info: PluginInfo, name: Any, path: Any, *, default: bool) -> None:
        if not isinstance(name, str) or not name:
            self._error(info, f"model name must be a non-empty string, got {name!r}")
            return
        owner = next((e.plugin for e in self.models if e.name == name), None)
        if owner is not None and owner != info.name:
            self._error(
                info,
                f"model {name!r} is already registered by plugin {owner!r}; a plugin cannot add versions "
                "to another plugin's model (give the model its own name)",
            )
            return
        if not isinstance(path, (str, os.PathLike)):
            self._error(
                info, f"model {name!r}: the path must be a str or PathLike, got {type(path).__name__}"
            )
            return
        p = Path(path)
        if p.name == MANIFEST_FILENAME:
            p = p.parent
        entry = ModelEntry(name=name, version="?", path=p, plugin=info.name, default=bool(default))
        try:
            if p.exists() and not p.is_dir():
                raise ModelError(
                    f"{p}: not a model artifact folder (register the folder holding {MANIFEST_FILENAME}, "
                    f"or its {MANIFEST_FILENAME})"
                )
            m = read_manifest(p)
            entry.manifest = m
            entry.version = m.version
            if m.name != name:
                raise ModelError(
                    f"{entry.manifest_path}: registered as {name!r} but the manifest says {m.name!r}"
                )
            if SEMVER_RE.match(p.name) and p.name != m.version:
                # a version folder copied to make the next one, its manifest not exported again
                entry.version = p.name  # (listed as the folder says: it cannot shadow the real one)
                raise ModelError(
                    f"{entry.manifest_path}: in the folder {p.name}/ but the manifest says version "
                    f"{m.version} (a copied artifact? export the new version, or name the folder as the manifest)"
                )
        except ModelError as e:
            entry.error = str(e)
            entry.manifest = None
        except Exception as e:  # noqa: BLE001 - one broken manifest never costs the plugin its other models
            entry.error = f"{entry.manifest_path}: cannot read manifest: {describe(e, 300)}"
            entry.manifest = None
        if entry.error is not None and entry.version == "?":
            entry.version = _folder_version(p)  # <name>/<version>/: a broken newest version still counts
        if any(e.name == name and e.version == entry.version and e.error is None for e in self.models):
            if entry.error is None:
                self._error(
                    info, f"model {name} {entry.version} is already registered; keeping the first one"
                )
                return
        self.models.append(entry)
        if default and entry.error is None:
            if self._default_name is None or self._default_name == name:
                self._default_name = name
            else:
                self._error(
                    info,
                    f"asks to make {name!r} the default model; the default stays {self._default_name!r} "
                    f"(to choose {name!r}: {DEFAULT_ENV_VAR}={name}, --model {name} or load_model({name!r}))",
                )

    # ------------------------------------------------------------------ queries
    @property
    def default_model_name(self) -> str | None:
        """Name of the default model, or ``None`` when no usable model is registered.

        ``INSTRUNET_DEFAULT_MODEL`` (the user's explicit choice: ``<name>`` or
        ``<name>@<version>``) comes first, then the built-in default, then a third-party
        default when there is no built-in one.
        """
        chosen, _ = _chosen_default()
        if chosen:
            return chosen
        if self._default_name is not None:
            return self._default_name
        names = sorted({e.name for e in self.models if e.error is None})
        return names[0] if len(names) == 1 else None

    def resolve_model(self, name: str | None = None, version: str | None = None) -> ModelEntry:
        """Pick a registered model: the default when ``name`` is None, the highest semver
        when ``version`` is None. ``name`` may be ``"<name>@<version>"``
        (:func:`split_model_spec`).

        Raises
        ------
        ModelError
            Nothing installed, unknown name/version, or a broken artifact.
        """
        ok = [e for e in self.models if e.error is None]
        if name is not None and not split_model_spec(name)[0]:
            raise UnknownModelError(f"model {name!r} names no model (expected <name> or <name>@<version>)")
        if name is not None and "@" in name:
            spec = name
            name, at_version = split_model_spec(spec)
            if version is not None and at_version is not None and version != at_version:
                raise UnknownModelError(
                    f"model {spec!r}: version {at_version} given, and version={version!r} too"
                )
            version = version or at_version
        by_env = ""  # named by INSTRUNET_DEFAULT_MODEL: an error says so
        if name is None:
            name = self.default_model_name
            chosen, chosen_version = _chosen_default()
            raw = os.environ.get(DEFAULT_ENV_VAR, "").strip()
            if raw and not chosen:
                raise ModelError(
                    f"{DEFAULT_ENV_VAR}={raw!r} names no model (expected <name> or <name>@<version>)"
                )
            if chosen and version is None:
                version = chosen_version
                by_env = f"{DEFAULT_ENV_VAR}={os.environ.get(DEFAULT_ENV_VAR, '').strip()!r}: "
            if chosen and not any(e.name == chosen for e in self.models):
                avail = sorted({e.name for e in ok})
                raise ModelError(
                    f"{DEFAULT_ENV_VAR}={chosen!r} names no installed model (available: {avail or 'none'})"
                )
            if name is None:
                if not self.models:
                    raise ModelError(
                        "no model is installed (expected instrunet_core/models/<name>/<version>/manifest.json "
                        "or a plugin registering one)"
                    )
                if not ok:
                    raise ModelError(
                        "no usable model is installed: " + "; ".join(str(e.error) for e in self.models)
                    )
                raise ModelError(
                    f"no default model; choose one of {sorted({e.name for e in ok})} with name=..."
                )
        candidates = [e for e in ok if e.name == name]
        if version is not None:
            try:
                parse_semver(version)
            except InputError as e:
                raise (ModelError if by_env else UnknownModelError)(f"{by_env}model {name}: {e}") from None
            candidates = [e for e in candidates if e.version == version]
        if not candidates:
            broken = [
                e
                for e in self.models
                if e.name == name and e.error and (version is None or e.version == version)
            ]
            if broken:
                raise ModelError(broken[-1].error or f"model {name} is broken")
            avail = sorted(f"{e.name} {e.version}" for e in ok)
            want = name if version is None else f"{name} {version}"
            raise (ModelError if by_env else UnknownModelError)(
                f"{by_env}model {want!r} is not installed (available: {avail or 'none'})"
            )
        best = max(candidates, key=lambda e: parse_semver(e.version))
        if version is None:
            newer = [
                e
                for e in self.models
                if e.name == name
                and e.error
                and e.version != "?"
                and parse_semver(e.version) > parse_semver(best.version)
            ]
            if newer:  # not silently an older model than the one asked for
                top = max(newer, key=lambda x: parse_semver(x.version))
                raise ModelError(
                    f"{by_env}model {name} {top.version}, its newest version, is broken: {top.error} "
                    f"(to use {best.version}: {name}@{best.version})"
                )
        return best

    def writer(self, format_name: str) -> Writer:
        try:
            return self.writers[format_name]
        except KeyError:
            raise PluginError(
                f"unknown output format {format_name!r} (available: {sorted(self.writers)})"
            ) from None

    def open_streams(
        self,
        context: AnalysisContext,
        *,
        names: Sequence[str] | None = None,
        timeout: float | Limit | None = None,
    ) -> AnalyzerFeed:
        """A fresh state of every streaming analyzer (or those in ``names``) for one analysis,
        made before decoding, each on a thread of its own (:mod:`instrunet_core._analyzer_threads`).

        ``timeout``: each analyzer's time limit in seconds (default: ``INSTRUNET_ANALYZER_TIMEOUT``,
        else 60 s plus the audio's duration). A factory that raises or passes the limit is left
        out; its error becomes its entry in :meth:`run_analyzers`. Close the feed
        (:meth:`AnalyzerFeed.close`) when the analysis stops early.
        """
        feed = AnalyzerFeed(limit=resolve_limit(timeout))
        for name in self.analyzers:
            if name in self.streaming and (names is None or name in names):
                feed.open(name, self.analyzers[name], context)  # type: ignore[arg-type]
        return feed

    def run_analyzers(
        self,
        context: AnalysisContext,
        feed: AnalyzerFeed | None = None,
        *,
        names: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Every registered analyzer (or those in ``names``) on ``context``: ``{name: JSON-ready dict}``.

        Whole-file analyzers are called with ``context``; streaming ones, fed during the pass
        through ``feed`` (:meth:`open_streams`), are asked to ``finish(context)``. Each runs on a
        thread of its own under a time limit (``timeout`` seconds for a whole-file analyzer; a
        streaming one keeps its feed's): one that passes it is left behind. An analyzer that
        raises (even ``SystemExit``), passes its limit (``TimeoutError``) or returns something
        else than a mapping gets ``{"error": "<ExceptionType>: <message>", "plugin": "<plugin>"}``
        instead (the plugin that registered it; no ``"plugin"`` for an analyzer added to the
        registry in code); the others still run. The context and the blocks and windows fed to
        streaming analyzers are read-only: an analyzer that writes into them fails this way.
        """
        extras: dict[str, Any] = {}
        limit = feed.limit if feed is not None and timeout is None else resolve_limit(timeout)
        for name, func in self.analyzers.items():
            if names is not None and name not in names:
                continue
            try:
                out: Any
                if name in self.streaming:
                    if feed is None or not feed.has(name):
                        raise PluginError(
                            "a streaming analyzer needs the decoding pass of instrunet_core.analyze"
                        )
                    out = feed.finish(name, context)
                else:
                    worker, seconds = AnalyzerThread(name, limit), _duration(context)
                    worker.submit(functools.partial(cast(Analyzer, func), context), seconds)
                    out = worker.result(seconds)
                if not isinstance(out, Mapping):
                    raise TypeError(f"analyzer returned {type(out).__name__}, expected a dict")
                try:
                    extras[name] = jsonable(out, max_values=ANALYZER_MAX_VALUES)
                except ValueError as e:
                    raise ValueError(f"its result is {e} (keep it to what a user reads)") from None
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - a failing analyzer (even SystemExit) never breaks the analysis
                extras[name] = {"error": describe(e)}
                if name in self.analyzer_plugins:  # not for an analyzer added in code
                    extras[name]["plugin"] = self.analyzer_plugins[name]
        return extras


def _duration(context: AnalysisContext) -> float:
    """Seconds of audio the context describes: the pass's duration, else what the header said
    (0 when neither is known)."""
    best = 0.0
    for value in (getattr(context, "duration", None), getattr(context, "expected_duration", None)):
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            best = max(best, v)
    return best


class AnalyzerFeed:
    """The streaming analyzers of one analysis, fed by :meth:`instrunet_core.Classifier.classify`
    (a :class:`~instrunet_core.hookspecs.BlockListener`).

    Each analyzer runs on a thread of its own (:class:`~instrunet_core._analyzer_threads.AnalyzerThread`),
    its calls in order while the classifier goes on, its prints sent to stderr; it gets its own
    read-only copy of each block and window. One that raises is fed no more and its error is
    reported as its result; one whose calls pass the time limit is left behind (``TimeoutError``);
    the classification and the other analyzers go on.
    """

    def __init__(self, limit: Limit | None = None) -> None:
        self.limit = limit if limit is not None else Limit()
        self.threads: dict[str, AnalyzerThread] = {}
        self._streams: dict[str, StreamAnalyzer | None] = {}
        self._seconds = 0.0  # audio pushed so far
        self._rate = 22050  # the blocks' rate (the context's, once opened)

    def __bool__(self) -> bool:
        return bool(self.threads)

    def has(self, name: str) -> bool:
        return name in self.threads

    def open(self, name: str, factory: StreamFactory, context: AnalysisContext) -> None:
        """Start analyzer ``name`` with ``factory(context)`` (on its thread)."""
        self._rate = int(getattr(context, "sample_rate", self._rate) or self._rate)
        t = AnalyzerThread(name, self.limit)
        self.threads[name] = t
        self._streams[name] = None

        def make() -> None:
            made = factory(context)
            lacks = [m for m in ("push", "windows", "finish") if not callable(getattr(made, m, None))]
            if lacks:  # said now, not as an AttributeError at the first block
                raise PluginError(
                    f"its factory returned {type(made).__name__}, not a streaming analyzer (it lacks "
                    f"{', '.join(lacks)}); a whole-file analyzer is registered as register(name, func)"
                )
            self._streams[name] = made

        t.submit(make, _duration(context))

    def push(self, block: np.ndarray, start: int) -> None:
        """Hand every live analyzer a read-only copy of ``block``."""
        if not self.threads:
            return
        from .analysis import read_only

        self._seconds = max(self._seconds, (start + len(block)) / self._rate)
        view = read_only(block.copy())
        for name, t in self.threads.items():
            if t.live():
                t.submit(functools.partial(self._push_one, name, view, start), self._seconds)

    def windows(self, results: Sequence[WindowResult]) -> None:
        """Hand every live analyzer the windows as a tuple, their arrays read-only copies."""
        if not self.threads:
            return
        from .analysis import read_only

        shown = tuple(
            dataclasses.replace(
                w,
                probabilities=read_only(w.probabilities.copy()),
                embedding=None if w.embedding is None else read_only(w.embedding.copy()),
            )
            for w in results
        )
        for name, t in self.threads.items():
            if t.live():
                t.submit(functools.partial(self._windows_one, name, shown), self._seconds)

    def finish(self, name: str, context: AnalysisContext) -> Any:
        """Analyzer ``name``'s ``finish(context)`` after every call fed to it (re-raises the error
        that stopped it; ``TimeoutError`` past its limit)."""
        t = self.threads.pop(name)
        seconds = max(self._seconds, _duration(context))
        t.submit(lambda: self._stream(name).finish(context), seconds)
        try:
            return t.result(seconds)
        finally:
            self._streams.pop(name, None)

    def close(self) -> None:
        """Let every analyzer's thread end (the analysis stopped early), and wait a little for
        their running calls (at most :data:`CLOSE_GRACE_SECONDS` in all): a process that exits
        while one is inside native code (loading an ONNX model) is aborted by the C++ runtime
        ("terminate called without an active exception"). Idempotent."""
        for t in self.threads.values():
            t.close()
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        for t in self.threads.values():
            t.wait_ended(max(0.0, deadline - time.monotonic()))
        self.threads.clear()
        self._streams.clear()

    def _push_one(self, name: str, block: np.ndarray, start: int) -> None:
        self._stream(name).push(block, start)

    def _windows_one(self, name: str, results: tuple[WindowResult, ...]) -> None:
        self._stream(name).windows(results)

    def _stream(self, name: str) -> StreamAnalyzer:
        s = self._streams.get(name)
        if s is None:  # pragma: no cover - the factory's failure (checked in open) stops the thread first
            raise PluginError(f"analyzer {name!r} was not made")
        return s


def _selected_names() -> set[str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def packaged_versions(models_dir: Path, name: str) -> list[Path]:
    """The version folders ``models_dir/name/<version>/`` that hold a ``manifest.json``, in
    path order: what a model plugin shipping its artifacts as package data registers. Hidden
    folders (``.1.0.0.x1y2.tmp``: an export stopped before it renamed its work into place) are
    never versions."""
    return sorted(
        p.parent
        for p in (Path(models_dir) / name).glob("*/manifest.json")
        if not p.parent.name.startswith(".")
    )


def packaged_versions_hook(models_dir: Path, name: str) -> Callable[[RegisterModel], None]:
    """The ``instrunet_register_models`` implementation of a model plugin that ships its
    artifacts as package data: it registers each of the :func:`packaged_versions` of ``name``
    (never as the default model).

    Parameters
    ----------
    models_dir : Path
        The plugin's models folder (holding ``name/<version>/manifest.json``).
    name : str
        The model's name.

    Returns
    -------
    callable
        The hook implementation, to be bound to the name ``instrunet_register_models`` in the
        plugin's module.
    """

    @hookimpl
    def instrunet_register_models(register: RegisterModel) -> None:
        for d in packaged_versions(models_dir, name):
            register(name, d)

    return instrunet_register_models


def build_registry(*, extra_plugins: Iterable[Any] = (), entry_points: bool = True) -> Registry:
    """Build a fresh registry.

    Parameters
    ----------
    extra_plugins : iterable
        In-process plugin objects (modules, classes or instances with hookimpls),
        registered after the built-ins and the entry points; a ``(name, plugin)``
        tuple sets the name shown by ``instrunet plugins``.
    entry_points : bool
        Load third-party plugins from the ``instrunet`` entry-point group.

    Returns
    -------
    Registry
    """
    from . import default_plugins

    reg = Registry()
    reg.add_plugin(default_plugins, BUILTIN_NAME, version=instrunet_version(), builtin=True)
    if entry_points:
        selected = _selected_names()
        try:
            eps = _entry_points()
        except Exception as e:  # noqa: BLE001
            warn(f"instrunet: cannot list entry points: {describe(e)}")
            eps = []
        owners: dict[str, str] = {}  # entry-point name -> the distribution whose plugin it names
        # A name two plugins register goes to the first loaded: loaded in a fixed order, the
        # project's own distributions first, then by distribution and entry-point name (the
        # order importlib.metadata lists them is the folder listing's: a third-party plugin
        # took over "condition" on one machine and not on another: a plugin audit)
        eps = sorted(eps, key=_load_order)
        for ep in eps:
            if selected is not None and ep.name not in selected:
                continue
            dist = _dist_text(ep)
            if ep.name in owners and owners[ep.name] != dist:
                # a plugin is known by its entry-point name: a second distribution using the
                # name is left out, saying which two clash (pluggy said only "already registered")
                info = PluginInfo(name=ep.name, version=_dist_version(ep), hooks=[])
                reg.plugins.append(info)
                reg._error(
                    info,
                    f"entry point {ep.name!r} of {dist} has the name of {owners[ep.name]}'s plugin; "
                    "not loaded (plugin names must be unique: rename one of the two entry points)",
                )
                continue
            owners.setdefault(ep.name, dist)
            t0 = time.perf_counter()
            said: list[str] = []
            try:
                with _streams_kept(ep.name, said), plugin_stdout():
                    obj = ep.load()
            except BaseException as e:  # noqa: BLE001 - includes SystemExit from a broken import
                if isinstance(e, KeyboardInterrupt):
                    raise
                _say_all(said)
                info = PluginInfo(name=ep.name, version=_dist_version(ep), hooks=[])
                reg.plugins.append(info)
                reg._error(info, f"entry point {ep.name} = {ep.value} failed to load: {describe(e)}")
                info.seconds = time.perf_counter() - t0
                continue
            _say_all(said)
            reg.add_plugin(obj, ep.name, version=_dist_version(ep)).seconds = time.perf_counter() - t0
        if selected:
            installed = sorted({ep.name for ep in eps})
            for missing in sorted(selected - set(installed)):
                info = PluginInfo(name=missing, version=None, hooks=[])
                reg.plugins.append(info)
                reg._error(
                    info,
                    f"{ENV_VAR} names {missing!r}, but no such plugin is installed "
                    f"(installed: {installed or 'none'})",
                )
    for i, plugin in enumerate(extra_plugins):
        if isinstance(plugin, tuple):
            name, obj = plugin
        else:
            name, obj = getattr(plugin, "__name__", None) or f"plugin-{i}", plugin
        reg.add_plugin(obj, str(name))
    return reg


_REGISTRY: Registry | None = None
#: Made anew in a forked child: held at the fork by a thread building the registry (a warm-up
#: thread's first ``load_model``), it kept every ``load_model`` there waiting for ever (a host
#: audit). The registry is only assigned once built, so the child builds its own.
_LOCK = ForkSafeLock()


def get_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use (``refresh=True`` rebuilds it)."""
    global _REGISTRY
    with _LOCK:
        if _REGISTRY is None or refresh:
            _REGISTRY = build_registry()
        return _REGISTRY


def list_models(*, registry: Registry | None = None) -> list[ModelEntry]:
    """All registered model versions, broken ones included (``entry.error`` set); ``default``
    marks the one entry :func:`~instrunet_core.load_model` loads without a name (as ``instrunet
    models`` does: ``INSTRUNET_DEFAULT_MODEL`` and the highest version count), not every version
    a plugin registered with ``default=True``."""
    reg = registry or get_registry()
    try:
        chosen: ModelEntry | None = reg.resolve_model(None)
    except ModelError:
        chosen = None
    return [dataclasses.replace(e, default=e is chosen) for e in reg.models]


def embedding_digests(*, registry: Registry | None = None) -> dict[str, str]:
    """``{manifest_sha256: embedding_sha256}`` of every registered model with an embedding
    output (broken ones left out), and ``{sha256: embedding_sha256}`` of each ONNX file whose
    registered artifacts all embed alike: how a search reads a record written before records named
    the digest of their vectors (:attr:`~instrunet_core.manifest.Manifest.embedding_sha256`) —
    as the installed artifact its ``manifest_sha256`` names (:class:`~instrunet_core.search.Library`'s
    ``known``)."""
    reg = registry or get_registry()
    out: dict[str, str] = {}
    by_file: dict[str, set[str | None]] = {}
    for e in reg.models:
        m = e.manifest
        if m is None:
            continue
        digest = m.raw.get("manifest_sha256")
        key = m.embedding_sha256
        if isinstance(digest, str) and key is not None:
            out[digest] = key
        by_file.setdefault(m.sha256, set()).add(key)
    # records from before records named their manifest say only the ONNX file: mapped where every
    # installed artifact of that file embeds alike (family 3.0.0, 3.1.0, family-compact 2.1.0)
    for sha, keys in by_file.items():
        key = next(iter(keys)) if len(keys) == 1 else None
        if key is not None:
            out.setdefault(sha, key)
    return out
