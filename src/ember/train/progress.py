"""Keras-style progress output: a bar per epoch with time, time per step and metrics.

On a terminal the bar redraws at most every 0.1 s (each redraw reads the metric tensors, so
throttling keeps host syncs off most steps); elsewhere one line per epoch is printed.
"""
import sys
import time

_WIDTH = 20
_INTERVAL = 0.1


def format_value(value: float) -> str:
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4e}"


def format_logs(logs: dict) -> str:
    return "".join(f" - {k}: {format_value(float(v))}" for k, v in logs.items())


def format_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Progress of one epoch (or one evaluate/predict pass) of `target` steps.

    verbose 0: silent; 1: the bar (final state only when not a terminal); 2: one line at the end.
    """

    def __init__(self, target: int, verbose: int = 1, stream=None):
        self.target, self.verbose = target, verbose
        self.stream = stream or sys.stdout
        self.dynamic = verbose == 1 and self.stream.isatty()
        self.start = self.last_draw = time.perf_counter()

    def update(self, step: int, logs_fn) -> None:
        """Called after every step; `logs_fn()` is only evaluated when a line is drawn."""
        if not self.dynamic:
            return
        now = time.perf_counter()
        if now - self.last_draw < _INTERVAL:
            return
        self.last_draw = now
        eta = (now - self.start) / step * (self.target - step)
        self._write(f"\r{self._bar(step)} {eta:.0f}s {format_per_step((now - self.start) / step)}"
                    f"{format_logs(logs_fn())}\x1b[K")

    def finish(self, steps: int, logs: dict) -> None:
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        bar = self._bar(steps) + " " if self.verbose == 1 else ""
        line = f"{bar}{elapsed:.0f}s {format_per_step(elapsed / max(steps, 1))}{format_logs(logs)}"
        self._write(f"\r{line}\x1b[K\n" if self.dynamic else line + "\n")

    def _bar(self, step: int) -> str:
        width = len(str(self.target))
        done = int(_WIDTH * step / max(self.target, 1))
        return f"{step:>{width}}/{self.target} " + "━" * done + "─" * (_WIDTH - done)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
