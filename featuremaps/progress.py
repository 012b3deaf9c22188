"""Reporting for the training loop: a silent base `Reporter` and a dependency-free `ProgressBar`.

The loop in `featuremaps.train` never prints; it calls these methods, so what is shown (and where)
is decided here. `ProgressBar` writes to stderr: on a terminal it redraws one line in place
(at most ten times a second) with the running loss, accuracy, images/s and mean ms/step; when stderr
is not a terminal (a log file, CI) it writes one line per epoch instead.

On a terminal every line fits its width (`$COLUMNS` if set, else the size of the terminal the
stream is on): the progress line drops its least useful fields (images/s first, then ms/step,
accuracy, loss) before the bar gets narrower than 10 cells, epoch lines break between their fields,
and messages wrap between words, never inside a command or between an option and its value (so
they can be copied; only such a span or a word wider than the terminal is left whole, on its own
line). Off a terminal, each event stays on one line, for logs and grep.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
import time
from typing import TextIO

__all__ = ["Reporter", "ProgressBar", "format_epoch", "progress_line"]


class Reporter:
    """Receives the training loop's events; this base class ignores them all."""

    def message(self, text: str) -> None:
        """A line of information (sanity checks, notes, where the run is saved)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int, start_step: int = 0) -> None:
        """Epoch `epoch` (1-based) of `epochs` begins with `steps` batches, resuming at `start_step`."""

    def update(self, step: int, *, loss: float, accuracy: float, images_per_s: float, ms_per_step: float) -> None:
        """After batch `step` (1-based): running train loss and accuracy of this epoch, and its speed so
        far: images/s over the wall time and the mean ms per step (at the last step, the epoch's mean)."""

    def end_epoch(self, record: dict) -> None:
        """The epoch's record (see `featuremaps.train.fit`)."""

    def close(self) -> None:
        """Finish any partial line."""


def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:5.2f}%"


def _join_within(parts: list[str], width: int | None, indent: int) -> str:
    """`parts` joined by two spaces, breaking between parts so that no line is wider than `width`;
    continuation lines start with `indent` spaces."""
    if width is None:
        return "  ".join(parts)
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "  " + part
        else:
            lines.append(" " * indent + part)
    return "\n".join(lines)


def format_epoch(record: dict, epochs: int | None = None, width: int | None = None) -> str:
    """The summary of an epoch record: one line, or with `width` as many lines of at most `width`
    characters as it takes (broken between fields, continuations aligned after `epoch k/n`)."""
    ep = f"epoch {record['epoch']}" + (f"/{epochs}" if epochs else "")
    parts = [ep, f"train loss {record['train_loss']:.4f} acc {_pct(record['train_accuracy'])}"]
    if record.get("val_loss") is not None:
        parts.append(f"val loss {record['val_loss']:.4f} acc {_pct(record['val_accuracy'])}")
    parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['images_per_s']:,.0f} img/s")
    parts.append(f"{record['time_s']:.1f} s")
    return _join_within(parts, width, len(ep) + 2)


MIN_BAR, MAX_BAR = 10, 30  # cells between the brackets of the progress bar


def progress_line(width: int, epoch: int, epochs: int, step: int, steps: int, *, loss: float,
                  accuracy: float, images_per_s: float, ms_per_step: float) -> str:
    """The in-place progress line, at most `width` characters:
    `epoch e/n [###.....] s/S  loss …  acc …  … img/s  … ms/step`. While the bar would be narrower
    than MIN_BAR cells, fields are dropped in the order img/s, ms/step, acc, loss, s/S; a width too
    small even for the bar alone gets the line cut."""
    head = f"epoch {epoch}/{epochs} "
    fields = {"pos": f"{step}/{steps}", "loss": f"loss {loss:.4f}", "acc": f"acc {_pct(accuracy)}",
              "img": f"{images_per_s:,.0f} img/s", "ms": f"{ms_per_step:.1f} ms/step"}  # in line order
    for drop in range(len(fields) + 1):
        gone = ("img", "ms", "acc", "loss", "pos")[:drop]
        tail = "".join("  " + v for k, v in fields.items() if k not in gone).lstrip()
        room = width - len(head) - 2 - (len(tail) + 1 if tail else 0)  # 2 for the brackets, 1 space
        if room >= MIN_BAR:
            bar_w = min(room, MAX_BAR)
            filled = int(bar_w * step / max(steps, 1))
            return head + "[" + "#" * filled + "." * (bar_w - filled) + "]" + (" " + tail if tail else "")
    return (head + fields["pos"])[:width]


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

    def _width(self) -> int:
        """The usable width of a line: the terminal's columns minus one (a character in the last
        column makes some terminals wrap the line early)."""
        return max(_columns(self.stream) - 1, 20)

    def message(self, text: str) -> None:
        self._clear()
        if self.tty:
            width = self._width()
            text = "\n".join(line if len(line) <= width else _wrap(line, width) for line in text.splitlines())
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
        line = progress_line(self._width(), self._epoch, self._epochs, step, self._steps, loss=loss,
                             accuracy=accuracy, images_per_s=images_per_s, ms_per_step=ms_per_step)
        self._write("\r" + line + "\x1b[K")
        self._open = True

    def end_epoch(self, record):
        text = format_epoch(record, self._epochs or None, self._width() if self.tty else None)
        self._clear()
        self._write(text + "\n")

    def close(self):
        self._clear()


# spans a line break must not split, so that they can be copied: a quoted command, an unquoted
# `featuremaps ...` command (up to `;`, a parenthesis or a quote) and an option with its value
_UNBREAKABLE = re.compile(r"'[^']*'|featuremaps [^;()'\n]*[^;()'\s]|--[\w-]+ [^\s;()]+")


def _wrap(line: str, width: int) -> str:
    """`line` broken between words into lines of at most `width` characters, continuations indented
    by two spaces; a span of `_UNBREAKABLE` (or a word) wider than that is left whole on its line."""
    glued = _UNBREAKABLE.sub(lambda m: m.group().replace(" ", "\0"), line)
    out = textwrap.fill(glued, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
    return out.replace("\0", " ")


def _columns(stream) -> int:
    """The terminal width for `stream`: `$COLUMNS` when it is a positive integer, else the size of
    the terminal `stream` is on, else that of stdout's, else 100."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError
        cols = 0
    return cols if cols > 0 else shutil.get_terminal_size((100, 24)).columns
