"""argparse types of the options the command lines share (``instrunet`` and the plugins' own).

A bad value is a usage error (exit 2), like any other bad command line: each type turns the
core's :class:`~instrunet_core.errors.InputError` into :class:`argparse.ArgumentTypeError`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import InputError
from .inputs import plain_float, plain_int

__all__ = ["hop_type", "count_type", "add_count_option", "plain_float", "plain_int", "HelpSaidParser"]

T = TypeVar("T")


def _parsed(text: str, convert: Callable[[str], T], wrong: str, check: Callable[[T], object]) -> T:
    """``convert(text)``, once ``check`` accepts it.

    Raises
    ------
    argparse.ArgumentTypeError
        ``convert`` raised ``ValueError`` (the message: ``wrong``, then the text), or ``check``
        raised :class:`~instrunet_core.errors.InputError` (its message).
    """
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{wrong}, got {text!r}") from None
    try:
        check(value)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def hop_type(text: str) -> float:
    """argparse type of ``--hop``: seconds, checked by :func:`instrunet_core.inputs.check_hop`."""
    from .features import DEFAULT_FRONT_END
    from .inputs import check_hop

    return _parsed(
        text,
        plain_float,
        "hop must be a number of seconds",
        lambda h: check_hop(h, sample_rate=DEFAULT_FRONT_END.sample_rate),
    )


def count_type(name: str, minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type of a count option, checked by :func:`instrunet_core.inputs.check_count`.

    Parameters
    ----------
    name : str
        The count's name in messages.
    minimum, maximum : int
        The allowed range (``maximum=None``: no upper bound).

    Returns
    -------
    callable
        ``str`` → ``int``, raising :class:`argparse.ArgumentTypeError` for a bad value.
    """
    from .inputs import check_count

    def parse(text: str) -> int:
        return _parsed(
            text,
            plain_int,
            f"{name} must be an int",
            lambda n: check_count(n, name=name, minimum=minimum, maximum=maximum),
        )

    return parse


def add_count_option(
    parser: argparse.ArgumentParser, flag: str, *, minimum: int = 1, maximum: int | None = None, **kwargs: Any
) -> None:
    """Add the count option ``flag`` (metavar ``N``, type :func:`count_type`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    flag : str
        The option, e.g. ``--batch-size``; messages name it as its destination (``batch_size``).
    minimum, maximum : int
        The allowed range (``maximum=None``: no upper bound).
    **kwargs
        Passed on to :meth:`argparse.ArgumentParser.add_argument` (``help``, ``default``).
    """
    name = flag.lstrip("-").replace("-", "_")
    parser.add_argument(flag, type=count_type(name, minimum, maximum), metavar="N", **kwargs)


class HelpSaidParser(argparse.ArgumentParser):
    """argparse's parser, except that help (or a version) that cannot be written to stdout
    (``> /dev/full``) is said on stderr, ``<prog>: error: -: cannot write to stdout: ...``, exit
    1, instead of being dropped without a word, exit 0; with stdout closed, help goes to stderr
    (argparse's way). The plugins' command lines use it (``instrunet``'s own parser says it
    through its output's error path)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message:
            return
        if file is None:
            file = sys.stdout if sys.stdout is not None else sys.stderr
        if file is sys.stdout:
            try:
                file.write(message)
                file.flush()
            except (OSError, ValueError) as e:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.write(
                        f"{self.prog}: error: -: cannot write to stdout: {getattr(e, 'strerror', None) or e}\n"
                    )
                raise SystemExit(1) from None
        elif file is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                file.write(message)
