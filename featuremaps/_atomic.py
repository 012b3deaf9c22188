"""`atomic_write`: replace a file so that a reader sees the old bytes or the new ones, never a part.

The one home of the temporary-file-then-rename pattern, used by checkpoints and the run
directory's files (`featuremaps.checkpoint`, `featuremaps.train`), downloads
(`featuremaps.data.download`) and extracted data (`featuremaps.data.cifar`). The temporary file
is made in the target's own directory, so the rename never crosses file systems; it is fsynced
before the rename and the directory after it, so a crash leaves either file whole. It lives
here, below both `checkpoint` and `data`, so that neither imports the other for it.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "fsync_dir", "remove_stale", "stale_temporaries"]


def fsync_dir(d: str | os.PathLike) -> None:
    """Flush the entries of directory `d` (a rename inside it) to disk. A no-op where a directory
    cannot be opened or fsynced (Windows)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    # POSIX fsyncs through any descriptor; Windows' _commit needs one with write access
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally, it replaces `path`.

    The temporary file, `.<name>.<random><suffix>` in the directory of `path` (which must exist),
    exists and is empty when the block starts. Write it by name (`open(tmp, "wb")`,
    `figure.savefig(tmp)`) and close it within the block. After the block it is fsynced and
    `os.replace`d onto `path` (atomic on one file system), then the directory is fsynced. If the
    block raises, KeyboardInterrupt included, or the fsync or rename fails, the temporary file is
    deleted, `path` is left as it was, and the exception propagates. `suffix` is for writers that
    choose the format from the file's extension (`.tmp.png` for matplotlib).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        if tmp.exists():  # POSIX rename does nothing when both names are hard links of one file (a copy
            tmp.unlink()  # made by linking, onto a name a killed run left linked to it): drop the extra name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def stale_temporaries(directory: str | os.PathLike, names) -> list[Path]:
    """The temporary files that `atomic_write` left beside `names` in `directory` when a process was
    killed before it could clean up: `.<name>.<8 random characters>.tmp[...]`, the pattern it makes."""
    d = Path(directory)
    return [p for name in names for p in d.glob(f".{name}.????????.tmp*") if p.is_file() and not p.is_symlink()]


def remove_stale(directory: str | os.PathLike, names) -> list[Path]:
    """Delete `stale_temporaries(directory, names)` (nothing else is touched) and return them. Call it
    before writing those files again, in a directory only one writer uses."""
    removed = stale_temporaries(directory, names)
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
