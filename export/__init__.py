"""Export a trained Keras family model to a self-describing ONNX artifact.

Usage::

    python -m export MODEL.keras --name NAME --version X.Y.Z --out DIR --corpus data/corpus

writes ``DIR/NAME/X.Y.Z/{model.onnx, manifest.json, references.npz}`` after checking that
onnxruntime reproduces Keras on real corpus windows (see ``docs/export.md``).

Importing this package does not import TensorFlow; only :mod:`export.convert` and the
command line do, when they need it.
"""

from __future__ import annotations

from instrunet_core.session import RuntimeOptions
from instrunet_core.verify import REFERENCES_ATOL

__all__ = ["ExportError", "DEFAULT_ATOL", "PARITY_RUNTIME"]

#: Largest |keras - onnxruntime| accepted on any output of any parity window: the tolerance the
#: runtime's references replay (:func:`instrunet_core.verify_artifact`) holds the artifact to.
DEFAULT_ATOL = REFERENCES_ATOL
#: How the exporter's parity checks run onnxruntime: every core (onnxruntime's own default).
PARITY_RUNTIME = RuntimeOptions(intra_op_threads=0)


class ExportError(Exception):
    """The export cannot go on; the message says why (and, for parity, by how much)."""
