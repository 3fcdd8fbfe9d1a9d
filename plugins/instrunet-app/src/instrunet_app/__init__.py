"""instrunet web app: upload a recording, see which instruments play, download reports.

Installed, this distribution gives

* the console script ``instrunet-app``, which starts the Streamlit app
  (``instrunet_app/app.py``) on http://127.0.0.1:8501;
* the entry point ``app`` in group ``instrunet``, which registers the ``pdf`` report
  writer, so ``instrunet analyze band.flac --format pdf --out band.pdf`` writes the same PDF
  report the app offers.

The app's logic lives in plain modules that never import Streamlit:
:mod:`instrunet_app.service` (checked upload → :class:`~instrunet_core.Analysis`) and
:mod:`instrunet_app.report` (plots, the analysis JSON, the PDF). Importing this package
stays cheap (the plugin registry imports it): nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

from instrunet_core import hookimpl

__all__ = ["instrunet_register_writers", "write_pdf"]


def write_pdf(analysis: Any, path: Any) -> None:
    """Write the PDF report of ``analysis`` to ``path`` (see :func:`instrunet_app.report.write_pdf`)."""
    from .report import write_pdf as _write_pdf

    _write_pdf(analysis, path)


@hookimpl
def instrunet_register_writers(register: Any) -> None:
    """Register the ``pdf`` writer."""
    register("pdf", write_pdf)
