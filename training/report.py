"""Report folder of a trained model: metrics.json, confusion_matrix.png, curves.png, summary.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.labels import FAMILIES
from instrunet_core.plots import new_figure

from .cli_checks import write_json

__all__ = ["write_report", "draw_confusion", "markdown_table"]


def _kept(metrics: dict[str, Any]) -> str:
    """Which weights were kept: an epoch, or the mean of several (``--average-epochs``)."""
    avg = metrics.get("averaged") or {}
    if avg.get("kept"):
        return "the mean of epochs " + ", ".join(str(e) for e in avg["epochs"])
    return f"epoch {metrics['best_epoch']}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: ``header``, the rule under it, then one line per row.

    Parameters
    ----------
    header : sequence of str
        The column titles.
    rows : iterable of sequences
        Each row's cells, already formatted (anything else is shown as ``str`` shows it).

    Returns
    -------
    list of str
    """
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def draw_confusion(
    ax: Any, cm: Any, labels: Any, title: str, *, fontsize: float = 10, answers: Any = None
) -> None:
    """A confusion matrix on ``ax``: rows true (``labels``), columns predicted (``answers``,
    default the same labels; an open-set model adds "other"), each cell's count written on it,
    shaded by the share of its row."""
    answers = list(labels) if answers is None else list(answers)
    cm = np.asarray(cm, dtype=float)[: len(labels), : len(answers)]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(answers)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(answers)), answers, rotation=45 if len(answers) > 3 else 20, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def write_report(folder: Path, metrics: dict[str, Any], history: dict[str, list[float]]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", metrics, indent=1, sort_keys=True)
    write_json(folder / "history.json", history, indent=1)

    splits = [sp for sp in ("valid", "dev", "test") if metrics.get(sp) and "single" in metrics[sp]]
    fig = new_figure(6 * len(splits), 5)
    for ax, split in zip(fig.subplots(1, len(splits), squeeze=False)[0], splits, strict=True):
        single = metrics[split]["single"]
        title = f"{metrics['model']} {split} (acc {single['accuracy']:.3f}, n={metrics[split]['n_single']})"
        draw_confusion(
            ax, single["confusion"], FAMILIES, title, fontsize=7, answers=list(single["per_class"])
        )
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=90)

    fig = new_figure(11, 4)
    a1, a2 = fig.subplots(1, 2)
    first = 0 if metrics.get("init") else 1  # a warm start scores its initial weights as epoch 0
    ep = np.arange(first, first + len(history["loss"]))
    a1.plot(ep, history["loss"], label="train loss")
    a1.set_xlabel("epoch")
    a1.legend()
    for key, values in history.items():
        if key in ("loss", "seconds") or not values or all(np.isnan(values)):
            continue
        a2.plot(ep, values, label=key.replace("_", " "), lw=2.5 if key == "score" else 1.2)
    a2.axvline(metrics["best_epoch"], color="grey", ls=":", label="kept epoch")
    a2.set_xlabel("epoch")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=90)

    v, t, d = metrics["valid"], metrics["test"], metrics.get("dev")
    lines = [
        f"# {metrics['model']} {metrics['version']}",
        "",
        f"Task: {metrics['task']}; parameters: {metrics['parameters']:,}; trained {metrics['train_seconds'] / 60:.1f} min, "
        f"{metrics['epochs_run']} epochs, kept {_kept(metrics)}.",
        "",
        f"Selection: {metrics['selection']}.",
        "",
        "| split | notes | accuracy | balanced accuracy | macro-F1 | mixture micro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("valid (held-out instruments)", v)]
    if d:
        rows.append(("dev (unseen real-recording libraries)", d))
    rows.append(("test (unseen TimGM6mb instruments)", t))
    for name, m in rows:
        if not m:
            lines.append(f"| {name} | not evaluated | | | | |")
            continue
        mix = m.get("mixture", {}).get("micro_f1")
        lines.append(
            f"| {name} | {m['n_single']} | {m['single']['accuracy']:.4f} | "
            f"{m['single']['balanced_accuracy']:.4f} | {m['single']['macro_f1']:.4f} | "
            f"{'' if mix is None else f'{mix:.4f}'} |"
        )
    shown = t or v
    lines += [
        "",
        f"Per-family precision and recall on {'test' if t else 'valid'}:",
        "",
        "| family | precision | recall | notes |",
        "|---|---|---|---|",
    ]
    for lab, pc in shown["single"]["per_class"].items():
        rec = pc["recall"]
        lines.append(
            f"| {lab} | {pc['precision']:.3f} | {'' if rec is None else f'{rec:.3f}'} | {pc['support']} |"
        )
    if d:
        lines += [
            "",
            "Dev (real recordings, libraries training never saw), recall per family:",
            "",
            "| " + " | ".join(FAMILIES) + " |",
            "|" + "---|" * len(FAMILIES),
            "| "
            + " | ".join(
                "" if d["per_family_recall"][f] is None else f"{d['per_family_recall'][f]:.3f}"
                for f in FAMILIES
            )
            + " |",
            "",
            "| dev subset | clips | accuracy | balanced accuracy |",
            "|---|---|---|---|",
        ]
        subsets = [(f"source {k}", x) for k, x in d["per_source"].items()]
        subsets += [(f"clip kind {k}", x) for k, x in d["per_clip"].items()]
        subsets += [("shorter than 1 s", d["shorter_than_1s"]), ("1 s or longer", d["from_1s"])]
        for name, x in subsets:
            if x.get("n"):
                lines.append(f"| {name} | {x['n']} | {x['accuracy']:.4f} | {x['balanced_accuracy']:.4f} |")
    lines += ["", "![confusion](confusion_matrix.png)", "", "![curves](curves.png)", ""]
    (folder / "summary.md").write_text("\n".join(lines))
