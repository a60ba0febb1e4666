"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM.

The first signal only sets a flag; the loop checks it after every step and stops before
anything partial reaches the disk (checkpoints are only written whole, at epoch ends). A second
Ctrl-C stops at once, which is still safe because every file is replaced atomically (and the
run folder's lock dies with the process).

How "at once" happens depends on who runs the training:

* the ``aqa`` command (:func:`cli_interrupts`): the second Ctrl-C, wherever it arrives (in the
  training step, in a ``finally`` block, in a DataLoader's ``__del__`` joining its workers, in
  the interpreter's exit handlers), prints ``stopping now`` and ends the process with status
  130 (:func:`stop_now`). Raising ``KeyboardInterrupt`` there instead would print a traceback
  (``Exception ignored in ...``) and sometimes be swallowed;
* a library caller (a notebook, a script): the second Ctrl-C raises ``KeyboardInterrupt``, as
  Python does, so that the kernel survives.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType, TracebackType
from typing import Any, NoReturn

STOP_NOW_MESSAGE = "stopping now"
"""What the second Ctrl-C prints before the ``aqa`` command exits with status 130."""

EXIT_INTERRUPTED = 130
"""Exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request; the message says how to resume."""


class _Interrupts:
    """Process-wide Ctrl-C state shared by the CLI's handler and :class:`GracefulStop`."""

    count = 0  # SIGINTs received since the CLI started
    exit_on_repeat = False  # the CLI is running: a repeated Ctrl-C ends the process
    pid = -1  # the CLI's process (a forked child inherits the handlers, not the role)


def _cli_process() -> bool:
    return _Interrupts.exit_on_repeat and os.getpid() == _Interrupts.pid


def stop_now(signum: int | None = None, frame: FrameType | None = None) -> NoReturn:
    """Print ``stopping now`` and end the process at once with status 130.

    No Python code runs after it (no ``finally`` blocks, no exit handlers), so nothing can
    print a traceback; files are safe because they are all replaced atomically. Usable as a
    signal handler.
    """
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # e.g. a reentrant call from inside a write
            stream.flush()
    text = f"\n{STOP_NOW_MESSAGE}\n"
    try:
        if os.isatty(2):
            text = "\x1b[?25h" + text  # a progress display may have hidden the cursor
        os.write(2, text.encode())
    except OSError:
        pass
    os._exit(EXIT_INTERRUPTED)


def _note_sigint() -> int:
    _Interrupts.count += 1
    return _Interrupts.count


def _cli_sigint(signum: int, frame: FrameType | None) -> None:
    """The CLI's SIGINT handler: the first Ctrl-C interrupts, later ones stop at once."""
    if _note_sigint() > 1 and _cli_process():
        stop_now()
    raise KeyboardInterrupt


def _stop_now_handler(signum: int, frame: FrameType | None) -> None:
    """After the CLI's boundary: any Ctrl-C stops at once (a forked child is interrupted)."""
    if os.getpid() == _Interrupts.pid:
        stop_now()
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def cli_interrupts(*, program: bool) -> Iterator[None]:
    """Ctrl-C handling of the ``aqa`` command (its error boundary enters it).

    Inside the block the first Ctrl-C raises ``KeyboardInterrupt`` (or, during training,
    asks :class:`GracefulStop` to stop after the step) and any later one calls
    :func:`stop_now`. On leaving, a ``program`` (the process is the ``aqa`` command and ends
    next) keeps a handler that calls :func:`stop_now` on any Ctrl-C, so the interpreter's
    shutdown (exit handlers joining worker processes) can never print a traceback either;
    otherwise (``main()`` called in-process, e.g. by tests) the previous handler comes back.

    Args:
        program: Whether the process ends when the block does.
    """
    if not _in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    state = (_Interrupts.count, _Interrupts.exit_on_repeat, _Interrupts.pid)
    _Interrupts.count, _Interrupts.exit_on_repeat, _Interrupts.pid = 0, True, os.getpid()
    signal.signal(signal.SIGINT, _cli_sigint)
    try:
        yield
    finally:
        if program:
            signal.signal(signal.SIGINT, _stop_now_handler)
        else:
            _Interrupts.count, _Interrupts.exit_on_repeat, _Interrupts.pid = state
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into a stop request.

    The first signal sets :attr:`requested` (and calls ``on_request``). A second SIGINT stops
    at once: :func:`stop_now` under the ``aqa`` command (see :func:`cli_interrupts`), else
    ``KeyboardInterrupt``.

    Args:
        on_request: Called with the signal's name on the first signal.

    Attributes:
        requested: Name of the signal received, or ``None``.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, on_request: Any = None) -> None:
        self.requested: str | None = None
        self._on_request = on_request
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT":
            count = _note_sigint()
            if _cli_process() and (count > 1 or self.requested is not None):
                stop_now()
            if self.requested is not None:
                raise KeyboardInterrupt
        self.requested = name
        if self._on_request is not None:
            self._on_request(name)

    def __enter__(self) -> GracefulStop:
        if _in_main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
