"""instrunet on Ray Data: tag audio collections on one machine or a Ray cluster.

``instrunet_ray.tag_collection(DIR, "results.jsonl", workers=4)`` (or the ``instrunet-ray``
command) reads the files with Ray Data, tags them in an actor pool that holds one model per
worker, and writes the same records as ``instrunet batch``, resumably. See the README.

This module is the distribution's ``instrunet`` entry point; it registers no hooks and
imports Ray only when :func:`tag_collection` runs.
"""

from __future__ import annotations

from .engine import FORMATS, TaggingActor, collect_files, done_paths_in, file_record, tag_collection

__all__ = [
    "FORMATS",
    "TaggingActor",
    "collect_files",
    "done_paths_in",
    "file_record",
    "tag_collection",
    "__version__",
]

__version__ = "0.2.0.dev0"
