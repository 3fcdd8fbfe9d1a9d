"""The ``instrunet`` command's entry point, kept outside the package so that it starts light.

The console script imports this module, which imports nothing heavy: a Ctrl-C while
:mod:`instrunet_core` and its dependencies are still being imported (numpy, onnxruntime,
pluggy: a few tenths of a second) ends the command like any later interruption, with one line
and exit status 130, instead of an import traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Import :mod:`instrunet_core.cli` and run its ``main``; a Ctrl-C during the import is
    reported in one line (exit status 130). Under a locale whose encoding is not UTF-8 the
    command runs again in Python's UTF-8 mode first (:func:`_utf8_mode`)."""
    if argv is None:
        _utf8_mode()
    try:
        from instrunet_core.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("instrunet: error: interrupted\n")
        return EXIT_INTERRUPTED
    code = run(argv)
    _end_if_left_behind(code)
    return code


def _utf8_mode() -> None:
    """Run the command again in Python's UTF-8 mode when the locale's encoding is another
    (ISO-8859-1, EUC-JP): file names are then read as UTF-8 bytes whatever the locale, so a
    JSON record's ``path`` does not depend on ``LANG`` (``été.wav`` was written ``Ã©tÃ©.wav``
    under ISO-8859-1, and a batch resumed under the other locale did its files again). Text
    output is UTF-8 too. ``PYTHONUTF8=0`` keeps the locale's encoding."""
    import os

    if sys.flags.utf8_mode or "PYTHONUTF8" in os.environ:
        return
    if sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        return
    # the interpreter's own command line, options and all (`-c CODE`, `-X dev`, `-I`), not
    # sys.argv (whose `-c` ran the first argument as code: a review)
    argv = list(getattr(sys, "orig_argv", None) or [])
    if getattr(sys, "frozen", False) or len(argv) < 2 or not sys.executable:
        return
    if sys.argv[:1] in (["-"], [""]):  # a script read from stdin (or none): it cannot be read again
        return
    try:
        os.execve(
            sys.executable, [sys.executable, "-X", "utf8", *argv[1:]], {**os.environ, "PYTHONUTF8": "1"}
        )
    except OSError:  # (no interpreter to run again: the locale's encoding it is)
        return


def _end_if_left_behind(code: int) -> None:
    """When an analyzer was left behind (it passed its time limit) and other threads are still
    alive (the call left behind; a plugin's own ``ThreadPoolExecutor`` worker stuck in it, which
    Python joins at exit), end the process now, its output flushed: the command had printed its
    report and then never exited (a plugin audit). Otherwise the interpreter ends as usual."""
    threads = sys.modules.get("instrunet_core._analyzer_threads")
    if threads is None or not getattr(threads, "left_behind", 0):
        return
    import os
    import threading

    # (a pool's workers started from the analyzer's thread are daemons, and joined at exit all
    # the same: any thread still alive besides this one may hold the exit)
    main = threading.main_thread()
    if not any(t.is_alive() and t is not main for t in threading.enumerate()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
