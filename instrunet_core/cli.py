"""The ``instrunet`` command line.

Subcommands: ``classify``, ``analyze``, ``batch``, ``models``, ``plugins``. A bad
input file prints one line ``instrunet: error: <file>: <problem>`` on stderr; the
other files of the same call are still processed and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InstrunetError
from .inference import DEFAULT_HOP_SECONDS

__all__ = ["main", "build_parser", "batch_record"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _err(msg: str) -> None:
    print(f"instrunet: error: {msg}", file=sys.stderr, flush=True)


def _problem(path: str, e: BaseException) -> str:
    """``e``'s message, prefixed with ``path`` unless it already names it."""
    msg = str(e) or type(e).__name__
    return msg if msg.startswith(path) else f"{path}: {msg}"


def _version() -> str:
    from . import __version__

    return __version__


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--providers", metavar="LIST",
                   help="onnxruntime execution providers, comma-separated: cpu (default), cuda, auto "
                        "(CUDA when onnxruntime-gpu is installed); CPU is always the fallback")
    p.add_argument("--threads", type=int, metavar="N",
                   help="onnxruntime intra-op threads (default 1, chosen by measurement; 0: one per core)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="instrunet", description="Which instrument families play in a recording? (InstruNet, ONNX runtime)"
    )
    p.add_argument("--version", action="version", version=f"instrunet {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("classify", help="overall label and confidence of each file")
    c.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3, ...; any rate and channels)")
    c.add_argument("--model", metavar="NAME|PATH", help="registered model name or artifact folder (default model if omitted)")
    _add_runtime_options(c)
    c.add_argument("--json", action="store_true", help="print one JSON array")
    c.add_argument("--hop", type=float, default=DEFAULT_HOP_SECONDS, metavar="S",
                   help=f"seconds between windows, snapped to whole 23 ms frames (default {DEFAULT_HOP_SECONDS:g})")

    a = sub.add_parser("analyze", help="timeline and detected instruments of one file")
    a.add_argument("file", metavar="FILE", help="an audio file")
    a.add_argument("--model", metavar="NAME|PATH", help="registered model name or artifact folder (default model if omitted)")
    _add_runtime_options(a)
    a.add_argument("--json", metavar="OUT", help="write Analysis.to_dict() as JSON ('-' for stdout)")
    a.add_argument("--plot", metavar="OUT.png", help="write an activity plot (needs matplotlib)")
    a.add_argument("--hop", type=float, default=DEFAULT_HOP_SECONDS, metavar="S",
                   help=f"seconds between windows, snapped to whole 23 ms frames (default {DEFAULT_HOP_SECONDS:g})")
    a.add_argument("--smoothing", type=int, default=3, metavar="N", help="moving-median length in windows (default 3)")
    a.add_argument("--format", metavar="NAME", help="a registered writer (see 'instrunet plugins')")
    a.add_argument("--out", metavar="PATH", help="output path for --format")

    b = sub.add_parser("batch", help="classify every audio file under a directory into JSON lines (resumable)")
    b.add_argument("dir", metavar="DIR", help="directory searched recursively for audio files")
    b.add_argument("--out", required=True, metavar="results.jsonl",
                   help="JSON lines, one per file; files already in it are skipped (resume)")
    b.add_argument("--model", metavar="NAME|PATH", help="registered model name or artifact folder (default model if omitted)")
    _add_runtime_options(b)
    b.add_argument("--hop", type=float, default=DEFAULT_HOP_SECONDS, metavar="S",
                   help=f"seconds between windows, snapped to whole 23 ms frames (default {DEFAULT_HOP_SECONDS:g})")

    m = sub.add_parser("models", help="installed models")
    m.add_argument("--json", action="store_true",
                   help="print name, version, sha256 (checked), labels, task, metrics and parity as JSON")

    pl = sub.add_parser("plugins", help="loaded plugins")
    pl.add_argument("--json", action="store_true", help="print name, version, hooks and errors as JSON")
    return p


def _load(name: str | None, args: argparse.Namespace | None = None) -> Any:
    from .model import load_model

    providers = getattr(args, "providers", None)
    if providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    return load_model(name, providers=providers or None, intra_op_threads=getattr(args, "threads", None))


def _prediction_row(path: str, pred: Any) -> dict[str, Any]:
    return {"path": path, "label": pred.label, "confidence": pred.confidence,
            "probabilities": pred.probabilities, "low_evidence": pred.low_evidence,
            "sounding_seconds": round(pred.sounding_seconds, 4)}


# ---------------------------------------------------------------- classify
def _classify(args: argparse.Namespace) -> int:
    try:
        model = _load(args.model, args)
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL
    rows: list[dict[str, Any]] = []
    rc = EXIT_OK
    for path in args.files:
        try:
            pred = model.predict(path, hop=args.hop)
            row = _prediction_row(path, pred)
            if not args.json:
                note = "\tlow evidence" if pred.low_evidence else ""
                print(f"{path}\t{pred.label}\t{pred.confidence:.3f}{note}", flush=True)
        except (InstrunetError, OSError) as e:
            rc = EXIT_FAIL
            msg = _problem(path, e)
            _err(msg)
            row = {"path": path, "error": msg}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    return rc


# ---------------------------------------------------------------- analyze
def _fmt_t(s: float) -> str:
    m, sec = divmod(float(s), 60.0)
    return f"{int(m)}:{sec:05.2f}"


def _print_analysis(an: Any) -> None:
    print(f"{an.source}: {an.duration:.2f} s, model {an.model['name']} {an.model['version']}")
    print(f"overall: {an.label} ({an.confidence:.3f})"
          + (f", low evidence: {an.prediction.sounding_seconds:.2f} s of sound" if an.low_evidence else ""))
    print("timeline:")
    for s in an.timeline:
        if s.silent:
            desc = "silence"
        else:
            top = sorted(s.probabilities.items(), key=lambda kv: -kv[1])[:3]
            desc = ", ".join(f"{k} {v:.2f}" for k, v in top)
        print(f"  {_fmt_t(s.start)}-{_fmt_t(s.end)}  {s.rms_db:7.1f} dB  {desc}")
    if an.instruments:
        print("detected instruments:")
        for ins in an.instruments:
            ranges = ", ".join(f"{_fmt_t(a)}-{_fmt_t(b)}" for a, b in ins.ranges)
            print(
                f"  {ins.label:<10} presence {ins.presence:.0%}  intensity {ins.intensity:.2f}  "
                f"mean p {ins.mean_probability:.2f}  max p {ins.max_probability:.2f}  [{ranges}]"
            )
    else:
        print("detected instruments: none" + (" (silence)" if an.silent else ""))
    for name, extra in an.extras.items():
        print(f"extra {name}: {json.dumps(extra)[:200]}")


def plot_analysis(an: Any, path: str | os.PathLike[str]) -> None:
    """Heat-map of each label's probability over time, detected ranges outlined."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InstrunetError(
            "--plot needs matplotlib, which is not installed (pip install 'instrunet[plot]')"
        ) from None
    import numpy as np

    labels = list(an.labels)
    probs = np.asarray(an.probabilities).T
    centers = an.times.mean(axis=1)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5))
    edges = np.concatenate([[0.0], (centers[1:] + centers[:-1]) / 2, [an.duration]]) if len(centers) else [0, 1]
    mesh = ax.pcolormesh(edges, np.arange(len(labels) + 1), probs, vmin=0, vmax=1, cmap="magma", shading="flat")
    for ins in an.instruments:
        row = labels.index(ins.label)
        for a, b in ins.ranges:
            ax.add_patch(plt.Rectangle((a, row + 0.05), b - a, 0.9, fill=False, edgecolor="cyan", lw=1.5))
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{os.path.basename(an.source)}: {an.label} ({an.confidence:.2f})")
    fig.colorbar(mesh, ax=ax, label="probability")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _make_parent(out: str) -> None:
    """Create the folder an output file goes into (``-``, stdout, has none)."""
    if out != "-":
        Path(out).parent.mkdir(parents=True, exist_ok=True)


def _analyze(args: argparse.Namespace) -> int:
    from .inference import analyze
    from .plugins import get_registry

    if (args.format is None) != (args.out is None):
        _err("--format and --out go together")
        return EXIT_USAGE
    try:
        model = _load(args.model, args)
        an = analyze(args.file, model=model, hop=args.hop, smoothing=args.smoothing)
    except (InstrunetError, OSError) as e:
        _err(_problem(args.file, e))
        return EXIT_FAIL
    if args.json != "-":
        _print_analysis(an)
    rc = EXIT_OK
    reg = get_registry()
    outputs = []
    if args.json:
        outputs.append(("json", args.json))
    if args.format:
        outputs.append((args.format, args.out))
    for fmt, out in outputs:
        try:
            _make_parent(out)
            reg.writer(fmt)(an, out)
        except Exception as e:  # noqa: BLE001 - a plugin writer must not crash the CLI
            _err(f"{out}: writer {fmt!r} failed: {e}")
            rc = EXIT_FAIL
    if args.plot:
        try:
            _make_parent(args.plot)
            plot_analysis(an, args.plot)
        except Exception as e:  # noqa: BLE001
            _err(f"{args.plot}: {e}")
            rc = EXIT_FAIL
    return rc


# ---------------------------------------------------------------- batch
def _done_paths(out: Path) -> set[str]:
    done: set[str] = set()
    if not out.exists():
        return done
    with open(out, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from an interrupted run: redo that file
            if isinstance(rec, dict) and isinstance(rec.get("path"), str):
                done.add(rec["path"])
    return done


def batch_record(clf: Any, path: str, source: Any = None) -> dict[str, Any]:
    """One ``instrunet batch`` line for ``path`` (decoded from ``source`` when given, e.g. bytes
    already read): the prediction row plus ``duration`` and ``model``, or ``{path, error}``.
    The one home of the record shape (``plugins/instrunet-ray`` writes the same)."""
    try:
        clf.classify(path if source is None else source)
        return {
            **_prediction_row(path, clf.prediction()),
            "duration": round(clf.duration, 4),
            "model": f"{clf.model.name}/{clf.model.version}",
        }
    except (InstrunetError, OSError) as e:
        return {"path": path, "error": _problem(path, e)}


def _batch(args: argparse.Namespace) -> int:
    from .audio import AUDIO_EXTENSIONS

    root = Path(args.dir)
    if not root.is_dir():
        _err(f"{args.dir}: not a directory")
        return EXIT_FAIL
    files = sorted(
        str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    out = Path(args.out)
    done = _done_paths(out)
    todo = [f for f in files if f not in done]
    try:
        model = _load(args.model, args)
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL
    clf = model.classifier(hop=args.hop)
    rc = EXIT_OK
    n = len(todo)
    print(f"instrunet batch: {len(files)} files, {len(files) - n} already done, {n} to go", file=sys.stderr)
    # Make sure an interrupted previous line does not glue onto the next record.
    if out.exists() and out.stat().st_size:
        with open(out, "rb") as fb:
            fb.seek(-1, os.SEEK_END)
            needs_nl = fb.read(1) != b"\n"
    else:
        needs_nl = False
    _make_parent(str(out))
    with open(out, "a", encoding="utf-8") as f:
        if needs_nl:
            f.write("\n")
        for i, path in enumerate(todo, 1):
            rec = batch_record(clf, path)
            if "error" in rec:
                rc = EXIT_FAIL
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(f"\r[{i}/{n}] {path}", end="\n" if i == n else "", file=sys.stderr, flush=True)
    return rc


# ---------------------------------------------------------------- models / plugins
def _models(args: argparse.Namespace) -> int:
    from .manifest import sha256_file
    from .plugins import get_registry

    reg = get_registry()
    default = reg.default_model_name
    rows = []
    for e in reg.models:
        row: dict[str, Any] = {"name": e.name, "version": e.version, "default": e.name == default and e.error is None,
                               "path": str(e.path), "plugin": e.plugin}
        m = e.manifest
        if m is not None:
            try:
                actual = sha256_file(e.path / m.file)
            except OSError as ex:
                actual = None
                row["error"] = f"{e.path / m.file}: {ex.strerror or ex}"
            row.update(sha256=m.sha256, sha256_actual=actual, sha256_ok=actual == m.sha256, labels=list(m.labels),
                       task=m.task, metrics=dict(m.metrics), parity=dict(m.parity))
            if actual is not None and actual != m.sha256:
                row["error"] = f"{e.path / m.file}: sha256 does not match the manifest"
        if e.error:
            row["error"] = e.error
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no models installed")
    else:
        for r in rows:
            flag = " (default)" if r["default"] else ""
            if "labels" in r:
                ok = "ok" if r["sha256_ok"] else "MISMATCH"
                print(f"{r['name']} {r['version']}{flag}: {r['task']}, {len(r['labels'])} labels, "
                      f"sha256 {r['sha256'][:12]}… {ok}, {r['path']}")
            else:
                print(f"{r['name']} {r['version']}: {r['path']}")
            if r.get("error"):
                print(f"  error: {r['error']}")
    return EXIT_OK  # a broken artifact is listed, not a failure of the listing


def _plugins(args: argparse.Namespace) -> int:
    from .plugins import get_registry

    reg = get_registry()
    rows = [p.to_dict() for p in reg.plugins]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            tag = " [built-in]" if r["builtin"] else ""
            print(f"{r['name']} {r['version'] or '?'}{tag}: {', '.join(r['hooks']) or 'no hooks'}")
            if r["error"]:
                print(f"  error: {r['error']}")
        if reg.writers:
            print(f"writers: {', '.join(sorted(reg.writers))}")
        if reg.analyzers:
            print(f"analyzers: {', '.join(sorted(reg.analyzers))}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``instrunet`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = {"classify": _classify, "analyze": _analyze, "batch": _batch, "models": _models, "plugins": _plugins}
    try:
        return handler[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
