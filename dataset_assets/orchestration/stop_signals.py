"""SIGINT and SIGTERM stop `dataset-assets run` at once, with a summary and an exit code that says so.

Between Dagster runs this module's handler raises `Interrupted` where the program is. During a run,
Dagster installs its own handler (and restores this one afterwards): the step in flight is
interrupted by Dagster (`DagsterExecutionInterruptedError`), its writes are staged and never look
finished, and the run ends failed. Dagster forgets the signal when the run ends, so the signal is
also written to a wakeup file descriptor (`signal.set_wakeup_fd`, which the interpreter writes to
whichever Python handler is installed), and `check()` after each run finds it there.
"""

from __future__ import annotations

import os
import signal
from typing import Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
EXIT_CODES = {int(s): 128 + int(s) for s in STOP_SIGNALS}


class Interrupted(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: `except Exception` never swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signum]


class StopSignals:
    """Context manager around a whole `run`; `inside_dagster()` marks the stretches Dagster handles."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._dagster = False
        self._pipe: Optional[tuple[int, int]] = None
        self._saved: dict = {}
        self._saved_fd = -1

    def __enter__(self) -> "StopSignals":
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe = (read, write)
        self._saved_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._saved = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._saved_fd)
        for fd in self._pipe or ():
            os.close(fd)

    def _on_signal(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        # Inside a Dagster run its own handler is normally installed; if this one still is (the run
        # is being set up or torn down), raising would leave the run's record unfinished: `check()`
        # raises once the run has returned. A second signal never interrupts the summary.
        if first and not self._dagster:
            raise Interrupted(signum)

    def inside_dagster(self) -> "_Inside":
        return _Inside(self)

    def check(self) -> None:
        """Raise `Interrupted` if a stop signal arrived, also one a Dagster run handled and forgot."""
        try:
            received = os.read(self._pipe[0], 512) if self._pipe else b""
        except BlockingIOError:
            received = b""
        for signum in received:
            if signum in EXIT_CODES and self.signum is None:
                self.signum = signum
        if self.signum is not None:
            raise Interrupted(self.signum)


class _Inside:
    def __init__(self, stop: StopSignals):
        self.stop = stop

    def __enter__(self) -> None:
        self.stop._dagster = True

    def __exit__(self, *exc) -> None:
        self.stop._dagster = False
