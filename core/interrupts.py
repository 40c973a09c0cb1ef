"""Telling the user's Ctrl-C from a plugin that raises ``KeyboardInterrupt``.

Plugin code (an attack's craft, a defense, a recipe) runs inside the harness's cells, and a cell
contains its failure whatever it raises: ``SystemExit``, ``GeneratorExit``, a ``BaseException``
subclass and ``KeyboardInterrupt`` included. Only a real interrupt must end the command. Python
turns SIGINT into ``KeyboardInterrupt`` with no mark of where it came from, so
:func:`marking_interrupts` installs a SIGINT handler that counts real signals before raising
it: a ``KeyboardInterrupt`` is the user's (:func:`is_user_stop`) when a signal arrived, or when
no marking handler is installed (then nothing can tell them apart, and stopping is the safe
reading). Workers install it too (``benchmark.executor``): a terminal's Ctrl-C reaches the whole
process group.

The count is per process and goes back to its value when a marking block ends (the interrupt has
ended it): the one piece of process-wide state here, as the signal it records is process-wide.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = [0]  # real SIGINTs seen while a marking handler was installed (this process)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _SIGNALS[0] += 1
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGINT marked in this process (a worker's initializer); no-op off the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


@contextlib.contextmanager
def marking_interrupts() -> Iterator[None]:
    """Within the block, a real Ctrl-C is told apart from a plugin's ``KeyboardInterrupt``; the
    previous handler comes back after it (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous, seen = signal.signal(signal.SIGINT, _on_sigint), _SIGNALS[0]
    try:
        yield
    finally:  # the interrupt has ended the block: the next block starts unmarked
        signal.signal(signal.SIGINT, previous)
        _SIGNALS[0] = seen


def _marking() -> bool:
    return signal.getsignal(signal.SIGINT) is _on_sigint


def is_user_stop(err: BaseException) -> bool:
    """Whether ``err`` must end the command rather than fail one cell: a ``KeyboardInterrupt``
    after a real SIGINT (or whenever SIGINT is not marked here). Everything else a cell's code
    raises, ``SystemExit`` and ``GeneratorExit`` included, is that cell's failure."""
    if not isinstance(err, KeyboardInterrupt):
        return False
    return _SIGNALS[0] > 0 or not _marking()
