"""Keras-style progress output: a bar per epoch with time, time per step and metrics.

On a terminal the bar redraws at most every 0.1 s (each redraw reads the metric tensors, so
throttling keeps host syncs off most steps); elsewhere one line per epoch is printed.
"""
import sys
import time

from ember.train.callbacks import Callback
from ember.train.optimizers import get_learning_rate

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


class EpochProgress(Callback):
    """A `fit` callback for command-line runs: a rich progress bar per epoch on a terminal, and one plain
    line per epoch otherwise (logs, CI), each ending with the epoch's metrics and learning rate.

    The bar advances in `on_train_batch_begin`, which needs no metric values; the running loss is read
    (a host sync) at most every 0.25 s.
    """

    main_process_only = True

    def __init__(self, epochs: int, stream=None, interval: float = 0.25):
        super().__init__()
        self.epochs, self.interval = epochs, interval
        self.stream = stream or sys.stdout
        self.dynamic = self.stream.isatty()
        self.bar = None

    def on_train_begin(self, logs=None):
        if self.dynamic:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[logs]}"),
                                console=Console(file=self.stream), transient=True)
            self.bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started, self.last = epoch, time.perf_counter(), 0.0
        if self.bar is not None:
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.params.get("steps"),
                                          logs="")

    def on_train_batch_begin(self, batch, logs=None):
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        self.bar.update(self.task, completed=batch, logs=format_logs(self.model.metric_logs()).lstrip(" -"))

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        line = (f"epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s{format_logs(logs or {})}"
                f" - lr: {get_learning_rate(self.model.optimizer):.3g}")
        if self.bar is not None:
            self.bar.remove_task(self.task)
            self.bar.console.print(line, highlight=False, soft_wrap=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
