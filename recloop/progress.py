"""Progress bars for long fits, one way for the whole library.

Bars go to stderr and only when two things hold: the caller switched them on (the CLI
does, unless ``--quiet``; a library user wraps a call in ``with show_progress():``) and
stderr is a terminal, so logs, pipes and test runs never fill with carriage returns.
Off is the default, so importing recloop never prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tqdm import tqdm

_ENABLED: ContextVar[bool] = ContextVar("recloop_progress", default=False)


@contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Switch progress bars on (or, with ``enabled=False``, off) inside the block."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def progress_enabled() -> bool:
    """Whether a bar made now would be drawn: switched on, and stderr is a terminal."""
    stream = sys.stderr
    try:
        return _ENABLED.get() and stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress_bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None,
                 unit: str = "it", initial: int = 0, wanted: bool = True) -> tqdm:
    """A tqdm bar on stderr that draws only when :func:`progress_enabled` (and ``wanted``,
    the caller's own switch); it disappears when done (``leave=False``), so nested bars
    and the CLI's summary lines stay readable."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=False, file=sys.stderr,
                disable=not (wanted and progress_enabled()), dynamic_ncols=True)
