"""The label set: NSynth's eight acoustic instrument families, in model output order."""

from __future__ import annotations

__all__ = ["FAMILIES"]

#: Output order of the family models (NSynth family ids 1, 2, 3, 4, 5, 7, 8, 10).
FAMILIES: tuple[str, ...] = ("brass", "flute", "guitar", "keyboard", "mallet", "reed", "string", "vocal")
