"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM.

The first signal only sets a flag; the loop checks it after every step and stops before
anything partial reaches the disk (checkpoints are only written whole, at epoch ends). A second
Ctrl-C interrupts at once, which is still safe because every file is replaced atomically.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request; the message says how to resume."""


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into a stop request.

    Attributes:
        requested: Name of the signal received, or ``None``.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, on_request=None) -> None:
        self.requested: str | None = None
        self._on_request = on_request
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and name == "SIGINT":
            raise KeyboardInterrupt
        self.requested = name
        if self._on_request is not None:
            self._on_request(name)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
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
