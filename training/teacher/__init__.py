"""The AudioSet teacher (Google's YAMNet) for distillation, open-set groups and fine-tuning.

* :mod:`.weights` — the pinned source of the weights (:func:`prepare`) and the class map;
* :mod:`.convert` — SavedModel → ONNX (tf2onnx), checked against TensorFlow;
* :mod:`.runtime` — :class:`Teacher`: AudioSet scores, embeddings and family scores through
  onnxruntime (no TensorFlow);
* :mod:`.families` — the documented mapping of AudioSet classes to our eight families and to
  the "none of the eight" groups, and the pooling;
* :mod:`.keras_port` — YAMNet in Keras 3 (weights from the SavedModel) and
  :func:`large_model`, the fine-tunable network on our 22,050 Hz windows;
* :mod:`.measure` — the checks and measurements that ``python -m training.teacher`` runs.

Importing this package needs neither TensorFlow nor the weights. See docs/teacher.md.
The weights are Apache-2.0 (training/teacher/NOTICE): ship that notice with anything
derived from them.
"""

from __future__ import annotations

from .families import FAMILY_CLASSES, GROUPS, OTHER_GROUPS, check_mapping, pool
from .runtime import PatchScores, Teacher, WindowScores
from .weights import TeacherError, class_names, default_cache, prepare

__all__ = [
    "FAMILY_CLASSES",
    "GROUPS",
    "OTHER_GROUPS",
    "PatchScores",
    "Teacher",
    "TeacherError",
    "WindowScores",
    "check_mapping",
    "class_names",
    "default_cache",
    "pool",
    "prepare",
]
