"""Real-mixture pieces for choosing and judging detection: ensembles of the dev libraries.

Usage::

    python -m training.devmix build --corpus data/corpus --out data/devmix [--n 120] [--seed S] \\
        [--min-parts 1]
    python -m training.devmix thresholds ARTIFACT --pieces data/devmix-choose --out thresholds.json
    python -m training.devmix score instrunet_core/models/family/3.0.0 --pieces data/devmix \\
        [--thresholds thresholds.json] [--variants] --out training/reports/default/3.0.0/devmix.json

A *piece* (8-14 s) has 2-4 parts of different families (``--min-parts 1``: 1-4, solo lines
too). Each part is one dev instrument playing a line: its rendered clips (single notes,
repeated notes, phrases of a real library training never hears) one after another with small
gaps or overlaps, entering and leaving at its own times, a lead at 0 dB and the others 2-12 dB
below, all in one room (``pedalboard.Reverb``, a fixed moderate hall). ``truth.json`` lists
each piece's families and every part's time span.

``score`` runs an artifact through the runtime exactly as users do
(:func:`instrunet_core.analyze`: windows, presence thresholds, the timeline's detection)
and compares the detected families with the truth: precision and recall over all pieces
(micro), per family, and the share of pieces whose detected set is exactly right. With
``--variants`` it also analyses every piece after 0.5 and 1 s of leading silence and at a hop
of 0.5 s (with and without 0.25 s of silence) and counts the pieces whose detected set changes.

``thresholds`` chooses each family's presence threshold on a set of pieces through the same
timeline: every piece analysed once (windows every 0.5 s, the evidence spacing), each family's
detection at every threshold from 0.1 to 0.95 (steps of 0.025) decided by
:meth:`instrunet_core.timeline.Activity.presence_at`, and per family the threshold with the best
F-beta over the pieces kept (ties: the higher one). Choose on one set of pieces (another
``--seed``) and score on another.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from instrunet_core.errors import InstrunetError
from instrunet_core.labels import FAMILIES
from instrunet_core.timeline import EVIDENCE_HOP

from .cli_checks import ToolError, number_problems, refuse_existing, write_json
from .metrics import f_beta, pick_thresholds
from .nsynth import Note, load_audio, load_split

__all__ = ["build_pieces", "score_pieces", "choose_thresholds"]

SR = 22050


def _line(rng: np.random.Generator, clips: list[Note], span: int) -> np.ndarray:
    """One instrument's clips in a row over ``span`` samples (gaps up to 0.4 s, overlaps up to
    0.1 s), as a player's line."""
    out = np.zeros(span, np.float32)
    t = 0
    while t < span:
        y = load_audio(clips[int(rng.integers(len(clips)))], target_sr=SR)
        seg = y[: span - t]
        out[t : t + len(seg)] += seg
        t += max(len(y) + int(rng.uniform(-0.1, 0.4) * SR), SR // 10)
    return out


def build_pieces(
    corpus: Path, out: Path, *, n: int = 120, seed: int = 20261203, min_parts: int = 2
) -> dict[str, Any]:
    """Render ``n`` pieces from the corpus's dev split into ``out``; returns the truth. Each has
    ``min_parts`` to 4 parts (1: solo lines among the ensembles)."""
    if not 1 <= min_parts <= 4:
        raise ValueError(f"min_parts must be 1-4, got {min_parts}")
    import pedalboard as pb

    notes = load_split(Path(corpus) / "dev")
    by_inst: dict[tuple[str, int], list[Note]] = collections.defaultdict(list)
    for nt in notes:
        by_inst[(nt.family_str, nt.instrument)].append(nt)
    by_family: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for key in sorted(by_inst):
        by_family[key[0]].append(key)
    families = sorted(by_family)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {}
    for i in range(n):
        seconds = float(rng.uniform(8.0, 14.0))
        total = int(seconds * SR)
        k = int(rng.integers(min_parts, 5))
        fams = [str(f) for f in rng.choice(families, size=min(k, len(families)), replace=False)]
        mix = np.zeros(total, np.float32)
        parts = []
        for m, fam in enumerate(fams):
            inst = by_family[fam][int(rng.integers(len(by_family[fam])))]
            start = int(rng.uniform(0.0, 0.35) * total)
            end = int(rng.uniform(max(start / total + 0.35, 0.6), 1.0) * total)
            line = _line(rng, by_inst[inst], end - start)
            peak = float(np.abs(line).max()) or 1.0
            gain = 1.0 if m == 0 else 10 ** (rng.uniform(-12.0, -2.0) / 20)
            mix[start:end] += gain * line / peak
            parts.append(
                {
                    "family": fam,
                    "instrument": by_inst[inst][0].instrument_str,
                    "library": by_inst[inst][0].extra.get("library", ""),
                    "start_s": round(start / SR, 3),
                    "end_s": round(end / SR, 3),
                    "gain_db": round(20 * np.log10(gain), 1),
                }
            )
        room = pb.Reverb(room_size=0.5, damping=0.5, wet_level=0.2, dry_level=0.85, width=1.0)
        y = np.asarray(room.process(mix, float(SR)), np.float32).reshape(-1)[:total]
        y *= 0.9 / max(float(np.abs(y).max()), 1e-9)
        name = f"piece_{i:03d}"
        sf.write(out / f"{name}.flac", y, SR, subtype="PCM_16")
        truth[name] = {"families": sorted(set(fams)), "parts": parts, "seconds": round(total / SR, 3)}
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
    return truth


#: (leading silence, hop) of the variants ``score --variants`` analyses besides (0, default hop).
VARIANTS = ((0.5, None), (1.0, None), (0.0, 0.5), (0.25, 0.5))
#: Thresholds ``thresholds`` tries for each family.
GRID = np.round(np.arange(0.1, 0.951, 0.025), 3)


def _families(an: Any) -> set[str]:
    return {i.label for i in an.instruments if i.label in FAMILIES}


def score_pieces(
    artifact: Path,
    pieces: Path,
    *,
    thresholds: dict[str, float] | None = None,
    variants: bool = False,
) -> dict[str, Any]:
    """Detected families of every piece (the runtime's :func:`instrunet_core.analyze`, with the
    model's thresholds or ``thresholds``) against the truth: micro precision and recall, per
    family, exact sets; with ``variants``, the pieces whose detected set changes with leading
    silence and hop (:data:`VARIANTS`)."""
    import instrunet_core as inet

    truth = json.loads((Path(pieces) / "truth.json").read_text())
    model = inet.load_model(Path(artifact))
    tp = fp = fn = exact = 0
    changed = changed_families = 0
    per = {f: {"tp": 0, "fp": 0, "fn": 0} for f in FAMILIES}
    rows = {}
    for name, t in sorted(truth.items()):
        y, sr = sf.read(Path(pieces) / f"{name}.flac", dtype="float32")
        a = inet.analyze(y, sr, model=model, thresholds=thresholds, analyzers=False)
        got = _families(a)
        want = set(t["families"])
        if variants:
            sets = [got]
            for lead, hop in VARIANTS:
                pad = np.zeros((int(round(lead * sr)), *y.shape[1:]), np.float32)
                an = inet.analyze(
                    np.concatenate([pad, y]), sr, model=model, hop=hop, thresholds=thresholds, analyzers=False
                )
                sets.append(_families(an))
            moved = set().union(*sets) - sets[0].intersection(*sets[1:])
            changed += bool(moved)
            changed_families += len(moved)
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got)
        exact += got == want
        for f in FAMILIES:
            per[f]["tp"] += f in got and f in want
            per[f]["fp"] += f in got and f not in want
            per[f]["fn"] += f not in got and f in want
        rows[name] = {"truth": sorted(want), "detected": sorted(got), "overall": a.prediction.label}
        if variants:
            rows[name]["changes_with_variants"] = sorted(moved)
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    out: dict[str, Any] = {}
    if variants:
        out["variants"] = {
            "leading_silence_and_hop": [[0.0, None], *[list(v) for v in VARIANTS]],
            "pieces_whose_set_changes": changed,
            "families_that_come_and_go": changed_families,
        }
    return out | {
        "artifact": str(artifact),
        "thresholds": dict(thresholds) if thresholds else "the model's",
        "pieces": len(truth),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / max(p + r, 1e-12),
        "exact_sets": exact / max(len(truth), 1),
        "overall_in_truth": float(np.mean([r["overall"] in r["truth"] for r in rows.values()])),
        "per_family": {
            f: {
                "precision": v["tp"] / max(v["tp"] + v["fp"], 1),
                "recall": v["tp"] / max(v["tp"] + v["fn"], 1),
                "support": v["tp"] + v["fn"],
            }
            for f, v in per.items()
        },
        "by_piece": rows,
    }


def choose_thresholds(artifact: Path, pieces: Path, *, beta: float = 1.0) -> dict[str, Any]:
    """Each family's presence threshold with the best F-beta of the detected families over the
    pieces (see the module's docstring), with the precision and recall it gives there."""
    import instrunet_core as inet

    truth = json.loads((Path(pieces) / "truth.json").read_text())
    model = inet.load_model(Path(artifact))
    names = sorted(truth)
    # each piece's highest threshold at which a family is still detected (0: at none); detection
    # only shrinks as the threshold rises, so "detected at t" is "this >= t"
    reach = {f: np.zeros(len(names)) for f in FAMILIES}
    want = {f: np.array([f in truth[n]["families"] for n in names]) for f in FAMILIES}
    for i, name in enumerate(names):
        an = inet.analyze(str(Path(pieces) / f"{name}.flac"), model=model, hop=EVIDENCE_HOP, analyzers=False)
        act = an.activity
        if act is None:  # no sound: no family detected at any threshold
            continue
        for f in FAMILIES:
            if f in act.labels:
                reach[f][i] = max((float(t) for t in GRID if act.presence_at(f, float(t)).any()), default=0.0)
    chosen: dict[str, float] = {}
    per: dict[str, Any] = {}
    tp = fp = fn = 0
    for f in FAMILIES:
        (chosen[f],) = pick_thresholds(
            want[f][:, None], reach[f][:, None], GRID, beta=beta, higher_on_ties=True
        )
        got = reach[f] >= chosen[f]
        c = int(np.sum(got & want[f])), int(np.sum(got & ~want[f])), int(np.sum(~got & want[f]))
        per[f] = {
            "threshold": chosen[f],
            "precision": c[0] / max(c[0] + c[1], 1),
            "recall": c[0] / max(c[0] + c[2], 1),
            "f_beta": f_beta(*c, beta),
            "support": int(want[f].sum()),
            "model_threshold": model.thresholds.get(f),
        }
        tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]
    return {
        "artifact": str(artifact),
        "pieces": str(pieces),
        "n_pieces": len(names),
        "beta": beta,
        "grid": [float(GRID[0]), float(GRID[-1]), 0.025],
        "thresholds": chosen,
        "per_family": per,
        "micro": {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)},
    }


def _check_truth(pieces: Path) -> None:
    """``pieces/truth.json`` as ``build`` writes it, and every piece it names there (a malformed
    file or a missing piece was a traceback: a tools audit).

    Raises
    ------
    ToolError
    """
    path = pieces / "truth.json"
    truth = json.loads(path.read_text())
    if not isinstance(truth, dict) or not truth:
        raise ToolError(f"{path}: lists no pieces (expected {{piece: {{families, parts, seconds}}}})")
    for name, t in truth.items():
        if not isinstance(t, dict) or not isinstance(t.get("families"), list):
            raise ToolError(f"{path}: {name!r} has no list of 'families' (not what `build` writes)")
        if not (pieces / f"{name}.flac").is_file():
            raise ToolError(f"{pieces / (name + '.flac')}: missing (named by {path})")


def _run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The command's work (``None``: a missing input, said)."""
    if args.cmd == "build":
        if not (args.corpus / "dev" / "examples.json").is_file():
            print(f"training.devmix: error: {args.corpus}: no dev split", file=sys.stderr)
            return None
        # earlier pieces are replaced only on purpose, and then all of them: a smaller --n left
        # the old pieces beside the new truth.json (a tools audit)
        refuse_existing([args.out / "truth.json"], force=args.force, what="earlier pieces")
        for old in args.out.glob("piece_*.flac") if args.force else ():
            old.unlink()
        truth = build_pieces(args.corpus, args.out, n=args.n, seed=args.seed, min_parts=args.min_parts)
        print(f"{len(truth)} pieces in {args.out}")
        return {}
    if not (args.pieces / "truth.json").is_file():
        print(f"training.devmix: error: {args.pieces}: no truth.json (run `build` first)", file=sys.stderr)
        return None
    _check_truth(args.pieces)
    if args.out is not None:
        refuse_existing([args.out], force=args.force, what="earlier results")
    if args.cmd == "thresholds":
        res = choose_thresholds(args.artifact, args.pieces, beta=args.beta)
        write_json(args.out, res, indent=1, sort_keys=True)
        print(f"thresholds {json.dumps(res['thresholds'])}; on these pieces: {json.dumps(res['micro'])}")
        return res
    thresholds = None
    if args.thresholds is not None:
        try:
            d = json.loads(args.thresholds.read_text())
        except ValueError as e:
            raise ToolError(f"--thresholds {args.thresholds}: not JSON ({e})") from None
        thresholds = d.get("thresholds", d) if isinstance(d, dict) else d
    res = score_pieces(args.artifact, args.pieces, thresholds=thresholds, variants=args.variants)
    if args.out is not None:
        write_json(args.out, res, indent=1, sort_keys=True)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.devmix", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the pieces from the corpus's dev split")
    b.add_argument("--corpus", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--n", type=int, default=120)
    b.add_argument("--seed", type=int, default=20261203)
    b.add_argument("--min-parts", type=int, default=2, choices=(1, 2, 3, 4), help="fewest parts a piece has")
    b.add_argument("--force", action="store_true", help="replace earlier results there")
    s = sub.add_parser("score", help="detected families of an artifact against the truth")
    s.add_argument("artifact", type=Path)
    s.add_argument("--pieces", type=Path, required=True)
    s.add_argument(
        "--thresholds", type=Path, default=None, help="JSON: {family: threshold} or `thresholds`' output"
    )
    s.add_argument(
        "--variants", action="store_true", help="also count the pieces whose set changes with silence/hop"
    )
    s.add_argument("--out", type=Path, default=None)
    s.add_argument("--force", action="store_true", help="replace earlier results there")
    t = sub.add_parser("thresholds", help="choose presence thresholds on pieces through the timeline")
    t.add_argument("artifact", type=Path)
    t.add_argument("--pieces", type=Path, required=True)
    t.add_argument("--beta", type=float, default=1.0)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--force", action="store_true", help="replace earlier results there")
    args = ap.parse_args(argv)
    problems = number_problems(vars(args), positive=("n",), non_negative=("seed",), positive_real=("beta",))
    for problem in problems:
        ap.error(problem)
    try:
        res = _run(args)
    except (ToolError, InstrunetError, OSError, ValueError) as e:  # (json.JSONDecodeError is a ValueError)
        print(f"training.devmix: error: {e}", file=sys.stderr)
        return 1
    if res is None:
        return 2
    if args.cmd != "score":
        return 0
    print(
        f"{res['pieces']} pieces: precision {res['precision']:.3f} recall {res['recall']:.3f} "
        f"exact sets {res['exact_sets']:.3f}, overall answer among the truth {res['overall_in_truth']:.3f}"
        + (
            f", set changes with silence/hop in {res['variants']['pieces_whose_set_changes']} pieces"
            if args.variants
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
