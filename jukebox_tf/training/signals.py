"""SIGTERM/SIGINT -> a flag the loop polls, so a preempted job saves before it exits."""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: while active, SIGTERM/SIGINT set `requested` instead of killing.

    The first signal also puts the previous handlers back, so a second Ctrl-C interrupts at
    once. Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        self._restore()

    def _handle(self, signum, frame):
        self.requested = True
        self._restore()
        print(f"\nreceived {signal.Signals(signum).name}: saving a checkpoint after this step",
              file=sys.stderr, flush=True)

    def _restore(self):
        for s, handler in self._previous.items():
            # None: the handler was installed outside Python; the default is the closest match.
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
