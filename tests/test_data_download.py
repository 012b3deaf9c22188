"""The downloader against a local http.server on 127.0.0.1 (this machine has no internet)."""
from __future__ import annotations

import gzip
import hashlib
import io
import socket
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from featuremaps import data
from featuremaps.data import download as dl


class _Server:
    """Serves `files` (URL path -> bytes) with a few misbehaving routes; records every request path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/slow/"):
                    time.sleep(5.0)  # far longer than the client's timeout
                body = server.files.get(self.path.replace("/slow/", "/", 1))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if self.path.startswith("/short/"):  # promise more than is sent, then hang up
                    self.send_header("Content-Length", str(len(body) + 100))
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def refused_url():
    """A base URL on a port where nothing listens (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


PAYLOAD = bytes(range(256)) * 1000  # 256 kB, several read chunks


def test_fetch_success_then_cache_hit(server, tmp_path, refused_url):
    server.files["/m/a.bin"] = PAYLOAD
    dest = tmp_path / "cache"
    p = dl.fetch("a.bin", dest, mirrors=[server.url + "/m/"], md5=md5(PAYLOAD), progress=False)
    assert p == dest / "a.bin" and p.read_bytes() == PAYLOAD
    assert listing(dest) == ["a.bin"]  # no temp files left behind
    assert server.requests == ["/m/a.bin"]
    # cache hit: no request, even with a dead mirror
    p2 = dl.fetch("a.bin", dest, mirrors=[refused_url], md5=md5(PAYLOAD), progress=False)
    assert p2 == p and server.requests == ["/m/a.bin"]


def test_md5_mismatch_leaves_nothing(server, tmp_path):
    server.files["/m/a.bin"] = PAYLOAD
    dest = tmp_path / "cache"
    with pytest.raises(data.DownloadError) as e:
        dl.fetch("a.bin", dest, mirrors=[server.url + "/m/"], md5="0" * 32, progress=False)
    msg = str(e.value)
    assert "md5 mismatch" in msg and md5(PAYLOAD) in msg and server.url + "/m/a.bin" in msg
    assert listing(dest) == []
    assert isinstance(e.value, ValueError)


def test_falls_back_to_next_mirror(server, tmp_path, refused_url):
    server.files["/good/a.bin"] = PAYLOAD
    server.files["/bad/a.bin"] = b"corrupt"
    dest = tmp_path / "cache"
    mirrors = [server.url + "/missing/", refused_url, server.url + "/bad", server.url + "/good/"]
    p = dl.fetch("a.bin", dest, mirrors=mirrors, md5=md5(PAYLOAD), progress=False)
    assert p.read_bytes() == PAYLOAD and listing(dest) == ["a.bin"]
    assert server.requests == ["/missing/a.bin", "/bad/a.bin", "/good/a.bin"]


def test_all_mirrors_fail_one_clear_error(server, tmp_path, refused_url):
    server.files["/short/a.bin"] = PAYLOAD
    dest = tmp_path / "cache"
    mirrors = [server.url + "/missing/", refused_url, server.url + "/short/"]
    with pytest.raises(data.DownloadError) as e:
        dl.fetch("a.bin", dest, mirrors=mirrors, md5=md5(PAYLOAD), progress=False, what="mnist")
    msg = str(e.value)
    assert msg.startswith("mnist: could not download a.bin")
    assert f"{server.url}/missing/a.bin: HTTP 404" in msg
    assert f"{refused_url}a.bin: " in msg and "refused" in msg.lower()
    assert f"{server.url}/short/a.bin: " in msg
    assert "--data DIR" in msg and str(dest) in msg
    assert listing(dest) == []  # the short transfer left no partial file


def test_timeout_never_hangs(server, tmp_path):
    server.files["/m/a.bin"] = PAYLOAD
    # If the timeout did not fire, the server would answer after 5 s and the fetch would succeed.
    with pytest.raises(data.DownloadError, match="timed out"):
        dl.fetch("a.bin", tmp_path, mirrors=[server.url + "/slow/m/"], md5=None, timeout=0.3, progress=False)
    assert listing(tmp_path) == []


def test_bad_cached_file_is_replaced(server, tmp_path):
    server.files["/m/a.bin"] = PAYLOAD
    (tmp_path / "a.bin").write_bytes(b"stale")
    p = dl.fetch("a.bin", tmp_path, mirrors=[server.url + "/m/"], md5=md5(PAYLOAD), progress=False)
    assert p.read_bytes() == PAYLOAD


def test_only_http_and_some_mirror_required(tmp_path):
    with pytest.raises(data.DownloadError, match="only http"):
        dl.fetch("a.bin", tmp_path, mirrors=["file:///etc/"], md5=None, progress=False)
    with pytest.raises(data.DownloadError, match="no download mirrors"):
        dl.fetch("a.bin", tmp_path, mirrors=[], md5=None, progress=False)


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(server, tmp_path, monkeypatch, capsys):
    server.files["/m/a.bin"] = PAYLOAD
    dl.fetch("a.bin", tmp_path / "1", mirrors=[server.url + "/m/"], md5=None, progress=True)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a TTY
    fake = _TTY()
    monkeypatch.setattr(sys, "stderr", fake)
    dl.fetch("a.bin", tmp_path / "2", mirrors=[server.url + "/m/"], md5=None, progress=True)
    out = fake.getvalue()
    assert "a.bin" in out and "100%" in out and out.endswith("\n")
    fake2 = _TTY()
    monkeypatch.setattr(sys, "stderr", fake2)
    dl.fetch("a.bin", tmp_path / "3", mirrors=[server.url + "/m/"], md5=None, progress=False)
    assert fake2.getvalue() == ""


def test_tables_cover_official_files():
    assert dl.MD5["mnist"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert dl.MD5["mnist"]["train-labels-idx1-ubyte.gz"] == "d53e105ee54ea40749a09fcbcd1e9432"
    assert dl.MD5["cifar10"]["cifar-10-binary.tar.gz"] == "c32a1d4ab5d03f1284b67883e8d87530"
    for name in ("mnist", "fashion-mnist"):
        assert len(dl.MD5[name]) == 4 and len(dl.MIRRORS[name]) >= 1
    assert dl.MIRRORS["mnist"][:3] == ["http://yann.lecun.com/exdb/mnist/",
                                       "https://ossci-datasets.s3.amazonaws.com/mnist/",
                                       "https://storage.googleapis.com/cvdf-datasets/mnist/"]


# ---- load() end to end with the mirrors pointed at localhost ---------------------------------------

def _idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_load_downloads_into_cache_then_works_offline(server, no_cache, monkeypatch, refused_url):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 7).astype(np.uint8)
    blobs = {"train-images-idx3-ubyte.gz": _idx_gz(x), "train-labels-idx1-ubyte.gz": _idx_gz(y)}
    for f, b in blobs.items():
        server.files["/mnist/" + f] = b
    monkeypatch.setitem(dl.MIRRORS, "mnist", [refused_url, server.url + "/mnist/"])
    monkeypatch.setitem(dl.MD5, "mnist", {f: md5(b) for f, b in blobs.items()})
    ds = data.load("mnist", "train", progress=False)
    np.testing.assert_array_equal(ds.images[..., 0], x)
    np.testing.assert_array_equal(ds.labels, y)
    assert listing(no_cache / "mnist") == sorted(blobs)
    n = len(server.requests)
    monkeypatch.setitem(dl.MIRRORS, "mnist", [refused_url])
    assert len(data.load("mnist", "train", progress=False)) == 7 and len(server.requests) == n


def test_load_download_failure_mentions_data_dir(no_cache, monkeypatch, refused_url):
    monkeypatch.setitem(dl.MIRRORS, "fashion-mnist", [refused_url])
    with pytest.raises(data.DownloadError) as e:
        data.load("fashion-mnist", "test", progress=False)
    assert "--data DIR" in str(e.value) and "t10k-images-idx3-ubyte.gz" in str(e.value)
    assert listing(no_cache / "fashion-mnist") == []
    monkeypatch.setitem(dl.MIRRORS, "mnist", [refused_url])
    with pytest.raises(data.DownloadError, match="--data DIR"):
        data.load("sample", "test", progress=False)


def test_load_cifar10_downloads_and_extracts(server, no_cache, monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    src.mkdir()
    arrays = {}
    for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        arrays[f] = (rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 2))
        data.write_cifar_batch(src / f, *arrays[f])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f"cifar-10-batches-bin/{f.name}")
    server.files["/kriz/cifar-10-binary.tar.gz"] = buf.getvalue()
    monkeypatch.setitem(dl.MIRRORS, "cifar10", [server.url + "/kriz/"])
    monkeypatch.setitem(dl.MD5, "cifar10", {"cifar-10-binary.tar.gz": md5(buf.getvalue())})
    te = data.load("cifar10", "test", progress=False)
    np.testing.assert_array_equal(te.images, arrays["test_batch.bin"][0])
    assert listing(no_cache / "cifar10") == ["cifar-10-batches-bin"]  # archive removed after extraction
    tr = data.load("cifar10", "train", progress=False)
    np.testing.assert_array_equal(tr.labels[4:6], arrays["data_batch_3.bin"][1])
    assert server.requests == ["/kriz/cifar-10-binary.tar.gz"]
    # a wrong md5 for the archive: nothing is extracted, nothing cached
    server.requests.clear()
    monkeypatch.setitem(dl.MD5, "cifar10", {"cifar-10-binary.tar.gz": "f" * 32})
    with pytest.raises(data.DownloadError, match="md5 mismatch"):
        data.load("cifar10", "test", progress=False, cache_dir=tmp_path / "other")
    assert listing(tmp_path / "other" / "cifar10") == []
