"""instrunet for Spotify's pedalboard: tag what a chain plays, route each instrument to its own chain.

Pedalboard cannot run Python code inside a chain (pedalboard issue #12), so these
adapters wrap boards and stream blocks through them with ``reset=False``:

* :class:`Tagger` — called like a board, returns the audio unchanged and records which
  instruments play (``tagger.analysis``, ``tagger.instruments``, ``tagger.results``);
* :class:`Router` — ``{label: Pedalboard}``: each region goes through the chain of the
  instrument detected there, with equal-power crossfades at the changes;
* :func:`process_file` — a file through a board, a router and a tagger in constant memory;
* :class:`StreamTagger` — live input (``pedalboard.io.AudioStream``): a prediction each hop.

All use the core's push-style ``instrunet_core.Classifier``. Installed, the distribution
appears in ``instrunet plugins`` (entry point ``pedalboard`` in group ``instrunet``).
Recipes: ``docs/pedalboard.md`` in the instrunet repository.
"""

from __future__ import annotations

from .files import ClippingWarning, process_file
from .router import Router
from .tagger import LiveResult, StreamTagger, Tagger

__all__ = ["Tagger", "Router", "process_file", "ClippingWarning", "StreamTagger", "LiveResult"]
