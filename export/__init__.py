"""Export a trained Keras family model to a self-describing ONNX artifact.

Usage::

    python -m export MODEL.keras --name NAME --version X.Y.Z --out DIR --corpus data/corpus

writes ``DIR/NAME/X.Y.Z/{model.onnx, manifest.json, references.npz}`` after checking that
onnxruntime reproduces Keras on real corpus windows (see ``docs/export.md``).

Importing this package does not import TensorFlow; only :mod:`export.convert` and the
command line do, when they need it.
"""

from __future__ import annotations

__all__ = ["ExportError", "DEFAULT_ATOL"]

#: Largest |keras - onnxruntime| accepted on any output of any parity window.
DEFAULT_ATOL = 1e-4


class ExportError(Exception):
    """The export cannot go on; the message says why (and, for parity, by how much)."""
