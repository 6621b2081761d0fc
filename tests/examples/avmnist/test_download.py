"""The download script: size and SHA-256 checks, resuming, mirrors, the recordings' digest.

Nothing here touches the network: the sources are ``file://`` URLs of files written here.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from examples.avmnist import download


def _remote(path: Path, *urls: str) -> download.Remote:
    body = path.read_bytes()
    return download.Remote(path.name, len(body), hashlib.sha256(body).hexdigest(), urls)


def test_a_file_is_fetched_checked_and_then_kept(tmp_path):
    src = tmp_path / "src" / "t10k-labels-idx1-ubyte.gz"
    src.parent.mkdir()
    src.write_bytes(b"label bytes" * 100)
    remote = _remote(src, (tmp_path / "missing.gz").as_uri(), src.as_uri())
    logs: list[str] = []
    out = download.get_file(remote, tmp_path / "mnist", log=logs.append)
    assert out.read_bytes() == src.read_bytes()
    assert any("get file://" in line for line in logs)  # the first mirror failed, the second served
    logs.clear()
    download.get_file(remote, tmp_path / "mnist", log=logs.append)
    assert logs == [f"ok {out} (kept)"]  # nothing downloaded again


def test_a_partial_file_is_completed(tmp_path):
    src = tmp_path / "data.gz"
    src.write_bytes(bytes(range(256)) * 40)
    dest_dir = tmp_path / "mnist"
    dest_dir.mkdir()
    (dest_dir / "data.gz.part").write_bytes(src.read_bytes()[:1000])  # a stopped download
    out = download.get_file(_remote(src, src.as_uri()), dest_dir, log=lambda _: None)
    assert out.read_bytes() == src.read_bytes() and not (dest_dir / "data.gz.part").exists()


def test_a_wrong_file_is_set_aside_with_what_was_expected(tmp_path):
    src = tmp_path / "data.gz"
    src.write_bytes(b"abc" * 10)
    remote = replace(_remote(src, src.as_uri()), sha256="0" * 64)
    with pytest.raises(download.DownloadError, match=f"expected SHA-256 {'0' * 64}, got"):
        download.get_file(remote, tmp_path / "mnist", log=lambda _: None)
    assert (tmp_path / "mnist" / "data.gz.bad").exists()
    short = replace(_remote(src, src.as_uri()), size=31)
    with pytest.raises(download.DownloadError, match="expected 31 bytes, got 30"):
        download.get_file(short, tmp_path / "other", log=lambda _: None)
    with pytest.raises(download.DownloadError, match="every source failed"):
        download.get_file(
            replace(remote, urls=((tmp_path / "nope").as_uri(),)), tmp_path / "x", log=print
        )
    with pytest.raises(download.DownloadError, match="it is missing"):
        download.get_file(remote, tmp_path / "empty", verify_only=True)


def test_the_published_mnist_table_is_complete():
    assert set(download.MNIST) == {*download.MNIST_TEST_FILES, *download.MNIST_TRAIN_FILES}
    for remote in download.MNIST.values():
        assert len(remote.sha256) == 64 and remote.size > 0 and len(remote.urls) >= 2


def _release(tmp_path: Path, avmnist_root: Path) -> Path:
    """A tar.gz laid out like FSDD's release archive (recordings under a top folder)."""
    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for wav in sorted((avmnist_root / "fsdd" / "recordings").glob("*.wav")):
            tar.add(wav, arcname=f"free-spoken-digit-dataset-1.0.10/recordings/{wav.name}")
        note = b"not a recording"
        info = tarfile.TarInfo("free-spoken-digit-dataset-1.0.10/README.md")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    return archive


def test_recordings_come_out_of_the_release_archive_and_are_checked(tmp_path, avmnist_root):
    expected_folder = avmnist_root / "fsdd" / "recordings"
    count, total, digest = download.recordings_digest(expected_folder)
    archive = _release(tmp_path, avmnist_root)
    expected = download.RecordingSet(count, total, digest, (archive.as_uri(),))
    target = download.get_recordings(tmp_path / "fsdd", expected, log=lambda _: None)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        p.name for p in expected_folder.iterdir()
    )
    assert not (tmp_path / "fsdd" / "fsdd-release.tar.gz").exists()
    download.check_recordings(target, expected)  # what --verify does
    (target / "0_alice_0.wav").unlink()
    with pytest.raises(download.DownloadError, match=f"expected {count} recordings"):
        download.get_recordings(tmp_path / "fsdd", expected, verify_only=True)
    wrong = replace(expected, digest="f" * 64)
    with pytest.raises(download.DownloadError, match="digest " + "f" * 64):
        download.get_recordings(tmp_path / "again", wrong, log=lambda _: None)


def test_main_verifies_without_network_and_reports_errors(tmp_path, capsys):
    assert download.main(["--out", str(tmp_path), "--verify"]) == 1
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``BODY`` at any path and honours ``Range: bytes=N-`` (206, or 416 past the end)."""

    body = b""
    requests: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(self.body) and rng:
            self.send_response(416)
            self.end_headers()
            return
        chunk = self.body[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def range_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/file.gz"
    server.shutdown()
    server.server_close()


def test_a_stopped_download_continues_from_where_it_stopped(tmp_path, range_server):
    body = bytes(range(256)) * 64
    _RangeHandler.body, _RangeHandler.requests = body, []
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "file.gz.part").write_bytes(body[:5000])
    remote = download.Remote(
        "file.gz", len(body), hashlib.sha256(body).hexdigest(), (range_server,)
    )
    out = download.get_file(remote, folder, log=lambda _: None)
    assert out.read_bytes() == body and _RangeHandler.requests == ["bytes=5000-"]
    # a partial file as long as the whole: the server answers 416, the download starts over
    out.unlink()
    (folder / "file.gz.part").write_bytes(body)
    _RangeHandler.requests = []
    assert download.get_file(remote, folder, log=lambda _: None).read_bytes() == body
    assert _RangeHandler.requests == [f"bytes={len(body)}-", None]
