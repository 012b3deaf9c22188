"""Download data files from a list of mirrors, check their md5, and never leave a half-written cache.

`fetch(filename, dest_dir, mirrors=..., md5=...)` returns `dest_dir / filename`:

1. If that file already exists and its md5 matches, it is returned at once (a cache hit).
2. Otherwise each mirror is tried in order: `mirror + filename` is streamed (urllib only, with a
   `timeout` on every socket operation, so nothing hangs) into a temporary file *inside* `dest_dir`
   while its md5 is computed. Only when the md5 matches is the temporary file fsynced and renamed
   onto the final name (`featuremaps._atomic.atomic_write`: `os.replace`, atomic on one file
   system). Any failure deletes the temporary file and moves on to the next mirror: an HTTP error,
   a refused or timed-out connection, a short read, a wrong md5.
3. If every mirror fails, one `DownloadError` lists each URL with its reason and tells the user how
   to supply the file themselves (`--data DIR` / `data_dir=DIR`).

`MIRRORS` and `MD5` are module-level tables (dataset name -> list of base URLs / file name -> md5);
tests and users may pass their own through the function arguments or patch the tables.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

from .._atomic import atomic_write
from .idx import DataError

__all__ = ["DownloadError", "MIRRORS", "MD5", "TIMEOUT", "fetch", "md5sum", "safe_join"]


class DownloadError(DataError):
    """No mirror produced the file with the expected md5. The message lists every URL tried."""


MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "http://yann.lecun.com/exdb/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        # The dataset's own repository serves the same files (README: "the dataset appears under data/fashion").
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

MD5: dict[str, dict[str, str]] = {
    # Official MNIST md5s (the full 60,000/10,000-image files).
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    # Source: the "Get the Data" table (column "MD5 Checksum") of the official README,
    # https://github.com/zalandoresearch/fashion-mnist/blob/master/README.md
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    # The binary version of CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html).
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
}

TIMEOUT = 30.0  # seconds, for connecting and for each read
_CHUNK = 1 << 16


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Progress:
    """A one-line progress bar on stderr; silent when disabled or stderr is not a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total = label, total
        self.enabled = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled or (not final and time.monotonic() - self.last < 0.1):
            return
        self.last = time.monotonic()
        mb = done / 1e6
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {frac:4.0%} {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"\r{self.label} {mb:.1f} MB"
        sys.stderr.write(line + ("\n" if final else ""))
        sys.stderr.flush()


def safe_join(root: str | os.PathLike, name, what: str) -> Path:
    """`root / name` for a `name` that is one plain path component and stays inside `root`: no separators,
    no '..', no absolute or drive paths, no NUL, no symlink at `root / name` leading out of `root`.
    Anything else raises DataError naming `what` (e.g. "the file name") and the name received."""
    root = Path(root)
    bad = (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
           or ":" in name or name != name.strip())
    if bad:
        raise DataError(f"{what} must be one plain file or folder name inside {root} (no '/', '\\', ':', '..' "
                        f"or surrounding spaces); received {name!r}")
    path = root / name
    if path.is_symlink() or path.exists():
        real_root, real = os.path.realpath(root), os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise DataError(f"{what} {name!r}: {path} resolves to {real}, outside {root} (a symlink leaving it); "
                            "refused")
    return path


def _url(mirror: str, filename: str) -> str:
    return mirror if mirror.endswith(filename) else mirror.rstrip("/") + "/" + filename


def _download_one(url: str, dest: Path, expected_md5: str | None, timeout: float, progress: bool) -> None:
    """Stream `url` into a temp file next to `dest`; rename onto `dest` only if the md5 matches."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"only http(s) URLs are allowed, got {url!r}")
    req = urllib.request.Request(url, headers={"User-Agent": "featuremaps-downloader"})
    with atomic_write(dest, suffix=".part") as tmp:  # any exception below: the part file is deleted
        with open(tmp, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _Progress(dest.name, total, progress)
            h, done = hashlib.md5(), 0
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                bar.update(done)
            bar.update(done, final=True)
            if total is not None and done != total:
                raise OSError(f"connection closed after {done} of {total} bytes")
        got = h.hexdigest()
        if expected_md5 is not None and got != expected_md5.lower():
            raise OSError(f"md5 mismatch: got {got}, expected {expected_md5}")


def fetch(
    filename: str,
    dest_dir: str | os.PathLike,
    *,
    mirrors: Iterable[str],
    md5: str | None,
    timeout: float | None = None,
    progress: bool = True,
    what: str = "",
) -> Path:
    """Return `dest_dir / filename`, downloading it from the first mirror that gives the right md5.

    `mirrors` are base URLs (the file name is appended) tried in order. `md5=None` skips the check
    (only for tests and user-supplied mirrors of unknown files). `timeout` defaults to `TIMEOUT`.
    `what` names the dataset in messages. See the module docstring for the guarantees.
    """
    dest_dir = Path(dest_dir)
    dest = safe_join(dest_dir, filename, f"fetch: {what + ': ' if what else ''}the file name")
    if dest.is_file() and (md5 is None or md5sum(dest) == md5.lower()):
        return dest
    mirrors = list(mirrors)
    if not mirrors:
        raise DownloadError(f"{what or filename}: no download mirrors configured for {filename}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache directory {dest_dir}: {e}") from None
    timeout = TIMEOUT if timeout is None else timeout
    tried = []
    for mirror in mirrors:
        url = _url(mirror, filename)
        try:
            _download_one(url, dest, md5, timeout, progress)
            return dest
        except urllib.error.HTTPError as e:
            tried.append(f"  {url}: HTTP {e.code} {e.reason}")
        except urllib.error.URLError as e:
            tried.append(f"  {url}: {e.reason}")
        except (OSError, http.client.HTTPException, ValueError) as e:
            tried.append(f"  {url}: {type(e).__name__}: {e}")
    name = f"{what}: " if what else ""
    md5_note = f" (md5 {md5})" if md5 else ""
    raise DownloadError(
        f"{name}could not download {filename}. Tried:\n" + "\n".join(tried) + "\n"
        f"No internet here? Get {filename}{md5_note} another way, put it in a directory and pass "
        f"--data DIR (data_dir=DIR in Python), or put it in the cache directory {dest_dir}."
    )
