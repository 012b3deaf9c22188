"""The training progress display (issue 8 §7): on a terminal every printed line fits the terminal's
width with the bar still drawn at 80 columns; the ms/step shown at the end of an epoch is the
epoch's mean, not the last (partial) batch's; off a terminal each event stays on one line."""
import io
import re
import time

import numpy as np
import pytest

from featuremaps import nn, optim, train
from featuremaps.progress import ProgressBar, Reporter, format_epoch

BAR = re.compile(r"\[[#.]{10,}\]")  # the drawn bar: at least MIN_BAR cells
HEADER = ("training lenet5 (60,850 parameters) on mnist: 54,000 training / 6,000 validation images, 100 "
          "epochs, batch 64, SGD(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0), schedule cosine; "
          "compiled kernels on (numba)")
RECORD = {"epoch": 100, "lr": 0.0123, "train_loss": 0.0123, "train_accuracy": 0.9987, "val_loss": 0.0456,
          "val_accuracy": 0.9912, "time_s": 123.4, "images_per_s": 12345.0}


def screen_lines(text: str) -> list[str]:
    """What a terminal shows, line by line: each \\r-separated redraw of a line counts, with the
    erase-to-end-of-line sequence removed."""
    return [seg.replace("\x1b[K", "") for line in text.split("\n") for seg in line.split("\r")]


def draw_an_epoch(bar: ProgressBar, steps: int = 938) -> None:
    """The stream of events `featuremaps train` sends for one wide-numbered epoch."""
    bar.message(HEADER)
    bar.message("initial loss 2.3030 (an untrained net should give about ln(10) = 2.3026)")
    bar.start_epoch(100, 100, steps, start_step=400)
    for step in range(401, steps + 1):
        bar.update(step, loss=2.1652, accuracy=0.1875, images_per_s=12345.6, ms_per_step=123.45)
    bar.end_epoch(RECORD)
    bar.close()


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_every_line_fits_the_terminal_and_the_bar_stays(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    out = io.StringIO()
    draw_an_epoch(ProgressBar(out, tty=True, interval=0))
    lines = screen_lines(out.getvalue())
    too_wide = [ln for ln in lines if len(ln) > columns]
    assert not too_wide, too_wide
    progress = [ln for ln in lines if ln.startswith("epoch 100/100 [")]
    assert len(progress) == 938 - 400 and all(BAR.search(ln) for ln in progress)
    assert progress[-1].startswith("epoch 100/100 [" + "#" * 10)  # full at the last step
    # nothing is lost by fitting: the header's words, and every field of the epoch summary
    text = " ".join(out.getvalue().split())
    assert HEADER in text
    assert " ".join(format_epoch(RECORD, 100).split()) in text
    if columns >= 80:  # the fields kept at 80 columns and more
        assert "938/938" in progress[-1] and "loss 2.1652" in progress[-1] and "acc 18.75%" in progress[-1]
    if columns >= 120:
        assert "12,346 img/s" in progress[-1] and "123.5 ms/step" in progress[-1]


def test_off_a_terminal_each_event_is_one_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    draw_an_epoch(ProgressBar(out, tty=False))
    assert out.getvalue().splitlines() == [HEADER, "initial loss 2.3030 (an untrained net should give about "
                                           "ln(10) = 2.3026)", "epoch 100/100: resuming at step 401 of 938",
                                           format_epoch(RECORD, 100)]


def test_commands_paths_and_options_are_never_split(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    out = io.StringIO()
    bar = ProgressBar(out, tty=True)
    path = "runs/" + "x" * 60 + "/checkpoint.npz"  # wider than the terminal: left whole on its own line
    bar.message(f"note: the checkpoint {path} was set aside and kept; nothing was lost")
    bar.message("interrupted: saved the state after epoch 3, step 17 to runs/l5/checkpoint.npz; "
                "continue with featuremaps train --resume runs/l5 (CLI: --resume runs/l5)")
    bar.message("note: the official test set was not found (give --data DIR); evaluate later with "
                "'featuremaps evaluate runs/l5 --data DIR'")
    lines = out.getvalue().splitlines()
    assert "  " + path in lines or path in lines
    assert [ln for ln in lines if len(ln) > 50] == [ln for ln in lines if path in ln]
    for span in ("featuremaps train --resume runs/l5", "--resume runs/l5)", "--data DIR)",
                 "'featuremaps evaluate runs/l5 --data DIR'"):
        assert any(span in ln for ln in lines), (span, lines)


def drawn_on_a_terminal(columns: int) -> list[str]:
    """Screen lines of one progress redraw on a real pseudo-terminal `columns` wide."""
    import fcntl
    import os
    import struct
    import termios
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        with open(slave, "w", closefd=False) as stream:
            bar = ProgressBar(stream, interval=0)  # finds out by itself that it is on a terminal
            assert bar.tty
            bar.start_epoch(1, 1, 10)
            bar.update(10, loss=0.5, accuracy=0.9, images_per_s=1234.0, ms_per_step=2.0)
        return screen_lines(os.read(master, 65536).decode())
    finally:
        os.close(slave)
        os.close(master)


def test_width_is_the_streams_own_terminal_unless_columns_is_set(monkeypatch):
    pytest.importorskip("termios", reason="pseudo-terminals are POSIX-only")
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = [ln for ln in drawn_on_a_terminal(70) if ln.strip()]
    # 70 columns: img/s is dropped (the fallback width of 100 would have kept it)
    assert lines and all(len(ln) <= 70 for ln in lines) and not any("img/s" in ln for ln in lines)
    assert any(BAR.search(ln) and "ms/step" in ln for ln in lines)
    monkeypatch.setenv("COLUMNS", "120")  # an explicit COLUMNS wins over the terminal's size
    assert any("1,234 img/s" in ln for ln in drawn_on_a_terminal(70))


class Updates(Reporter):
    def __init__(self):
        self.updates, self.records = [], []

    def update(self, step, **kw):
        self.updates.append((step, kw))

    def end_epoch(self, record):
        self.records.append(record)


class SlowMiddle:
    """Sleeps after steps 1 and 2 of each epoch, so steps 2 and 3 take >= 40 ms and the last
    (step 4, a partial batch) does not."""
    def on_batch_end(self, epoch, step, logs):
        if step in (1, 2):
            time.sleep(0.04)


def test_ms_per_step_at_the_end_of_an_epoch_is_the_epochs_mean():
    rng = np.random.default_rng(0)
    model = nn.Sequential([("conv", nn.Conv2D(1, 2, 3, rng=rng)), ("flatten", nn.Flatten()),
                           ("fc", nn.Dense(2 * 4 * 4, 3, rng=rng))], input_shape=(6, 6, 1))
    images = rng.integers(0, 256, (10, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    rep = Updates()
    train.fit(model, (images, labels), epochs=1, batch_size=3, optimizer=optim.SGD(model.parameters(), lr=0.01),
              reporter=rep, callbacks=[SlowMiddle()], plot=False)
    (record,) = rep.records
    steps = [s for s, _ in rep.updates]
    assert steps == [1, 2, 3, 4]  # 10 images in batches of 3: the last batch has 1
    last = rep.updates[-1][1]["ms_per_step"]
    # the same float sum divided the same way (one code path): only the last bits may differ
    assert last == pytest.approx(1000 * record["time_s"] / 4, rel=1e-12)
    assert last >= 2 * 40 / 4  # two sleeps of 40 ms spread over four steps, not the fast last step
