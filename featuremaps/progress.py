"""Reporting for the training loop: a silent base `Reporter` and a dependency-free `ProgressBar`.

The loop in `featuremaps.train` never prints; it calls these methods, so what is shown (and where)
is decided here. `ProgressBar` writes to stderr: on a terminal it redraws one line in place
(at most ten times a second) with the running loss, accuracy, images/s and ms/step; when stderr is
not a terminal (a log file, CI) it writes one line per epoch instead.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Reporter", "ProgressBar", "format_epoch"]


class Reporter:
    """Receives the training loop's events; this base class ignores them all."""

    def message(self, text: str) -> None:
        """A line of information (sanity checks, notes, where the run is saved)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int, start_step: int = 0) -> None:
        """Epoch `epoch` (1-based) of `epochs` begins with `steps` batches, resuming at `start_step`."""

    def update(self, step: int, *, loss: float, accuracy: float, images_per_s: float, ms_per_step: float) -> None:
        """After batch `step` (1-based): running train loss and accuracy of this epoch, speed."""

    def end_epoch(self, record: dict) -> None:
        """The epoch's record (see `featuremaps.train.fit`)."""

    def close(self) -> None:
        """Finish any partial line."""


def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:5.2f}%"


def format_epoch(record: dict, epochs: int | None = None) -> str:
    """One line summarising an epoch record."""
    ep = f"epoch {record['epoch']}" + (f"/{epochs}" if epochs else "")
    parts = [ep, f"train loss {record['train_loss']:.4f} acc {_pct(record['train_accuracy'])}"]
    if record.get("val_loss") is not None:
        parts.append(f"val loss {record['val_loss']:.4f} acc {_pct(record['val_accuracy'])}")
    parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['images_per_s']:,.0f} img/s")
    parts.append(f"{record['time_s']:.1f} s")
    return "  ".join(parts)


class ProgressBar(Reporter):
    """A progress display on `stream` (stderr by default); see the module docstring."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.1, tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.interval = interval
        self._epoch = self._epochs = self._steps = 0
        self._last_draw = 0.0
        self._open = False  # a partial (in-place) line is on screen

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed pipe: progress is not worth crashing for
            pass

    def _clear(self) -> None:
        if self._open:
            self._write("\r\x1b[K")
            self._open = False

    def message(self, text: str) -> None:
        self._clear()
        self._write(text + "\n")

    def start_epoch(self, epoch, epochs, steps, start_step=0):
        self._epoch, self._epochs, self._steps = epoch, epochs, steps
        self._last_draw = 0.0
        if start_step:
            self.message(f"epoch {epoch}/{epochs}: resuming at step {start_step + 1} of {steps}")

    def update(self, step, *, loss, accuracy, images_per_s, ms_per_step):
        if not self.tty:
            return
        now = time.perf_counter()
        if step < self._steps and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 40)
        head = f"epoch {self._epoch}/{self._epochs} "
        tail = (f" {step}/{self._steps}  loss {loss:.4f}  acc {_pct(accuracy)}  "
                f"{images_per_s:,.0f} img/s  {ms_per_step:.1f} ms/step")
        room = width - len(head) - len(tail) - 2
        if room >= 10:
            bar_w = min(room, 30)
            filled = int(bar_w * step / max(self._steps, 1))
            head += "[" + "#" * filled + "." * (bar_w - filled) + "]"
        self._write("\r" + (head + tail)[:width] + "\x1b[K")
        self._open = True

    def end_epoch(self, record):
        self.message(format_epoch(record, self._epochs or None))

    def close(self):
        self._clear()
