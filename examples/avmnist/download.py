"""Download the AV-MNIST source files and check them: MNIST's idx files and FSDD's recordings.

    python -m examples.avmnist.download --out data/avmnist            # MNIST test file + FSDD
    python -m examples.avmnist.download --out data/avmnist --mnist-train   # also the 60,000
    python -m examples.avmnist.download --out data/avmnist --verify   # check, download nothing

Writes ``OUT/mnist/<name>.gz`` (each file's size and SHA-256 are checked against
:data:`MNIST`) and ``OUT/fsdd/recordings/*.wav`` (the 3,000 recordings of FSDD v1.0.10, taken
from the release archive; their count, total size and a digest of every file's SHA-256 are
checked against :data:`FSDD`). A stopped download resumes: finished files that check out are
kept, a partial file continues where it stopped (when the server allows ranges). Each source
has mirrors, tried in order. A file that fails its check is renamed ``*.bad`` and the command
stops with what was expected and what came.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from examples.avmnist.data import FSDD_NAME


@dataclass(frozen=True)
class Remote:
    """A file to download: its name, size in bytes, SHA-256 and the URLs to try in order."""

    name: str
    size: int
    sha256: str
    urls: tuple[str, ...]


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _mnist(name: str, size: int, sha256: str) -> Remote:
    return Remote(name, size, sha256, tuple(m + name for m in _MNIST_MIRRORS))


#: MNIST's four files (sizes and SHA-256 of the original gzip files).
MNIST: dict[str, Remote] = {
    r.name: r
    for r in (
        _mnist(
            "t10k-images-idx3-ubyte.gz",
            1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        _mnist(
            "t10k-labels-idx1-ubyte.gz",
            4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
        _mnist(
            "train-images-idx3-ubyte.gz",
            9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        _mnist(
            "train-labels-idx1-ubyte.gz",
            28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
    )
}
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class RecordingSet:
    """What FSDD's recordings must be: their count, total size, and :func:`recordings_digest`."""

    count: int
    total_bytes: int
    digest: str
    archive_urls: tuple[str, ...]


#: FSDD v1.0.10 (the release archive's ``recordings/``; 6 speakers x 10 digits x 50).
FSDD = RecordingSet(
    count=3000,
    total_bytes=21128848,
    digest="dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f",
    archive_urls=(
        "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz",
    ),
)


class DownloadError(RuntimeError):
    """A file could not be fetched, or what came is not what was expected."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, remote: Remote) -> None:
    """Raise :class:`DownloadError` unless ``path`` has the size and SHA-256 of ``remote``."""
    size = path.stat().st_size
    if size != remote.size:
        raise DownloadError(f"{path}: expected {remote.size} bytes, got {size}")
    digest = sha256_of(path)
    if digest != remote.sha256:
        raise DownloadError(f"{path}: expected SHA-256 {remote.sha256}, got {digest}")


def fetch(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest``, continuing a partial ``dest.part`` when the server allows.

    The data go to ``dest.part`` and are moved to ``dest`` when complete.

    Raises:
        DownloadError: naming the URL when the request fails.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mcr-reg-avmnist"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have > 0 and getattr(response, "status", 200) == 206
            with open(part, "ab" if resumed else "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the partial file is not a prefix the server knows
            part.unlink()
            return fetch(url, dest, timeout=timeout)
        raise DownloadError(f"{url}: download failed ({err})") from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DownloadError(f"{url}: download failed ({err})") from None
    os.replace(part, dest)


def get_file(remote: Remote, folder: Path, *, verify_only: bool = False, log=print) -> Path:
    """``folder/remote.name``, downloaded if it is missing or does not check out.

    Raises:
        DownloadError: if every URL fails, or the file does not check out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / remote.name
    if dest.exists():
        try:
            check_file(dest, remote)
            log(f"ok {dest} (kept)")
            return dest
        except DownloadError as err:
            if verify_only:
                raise
            log(f"{err}; downloading it again")
            dest.replace(dest.with_name(dest.name + ".bad"))
    elif verify_only:
        raise DownloadError(f"{dest}: expected the file ({remote.size} bytes), it is missing")
    errors = []
    for url in remote.urls:
        try:
            log(f"get {url}")
            fetch(url, dest)
        except DownloadError as err:
            errors.append(str(err))
            continue
        try:
            check_file(dest, remote)
        except DownloadError:
            dest.replace(dest.with_name(dest.name + ".bad"))
            raise
        log(f"ok {dest}")
        return dest
    raise DownloadError(
        f"{remote.name}: every source failed:\n  " + "\n  ".join(errors) + "\n(copy the file into "
        f"{folder} by hand from any MNIST mirror; its size and SHA-256 are checked)"
    )


def recordings_digest(folder: Path) -> tuple[int, int, str]:
    """``(count, total bytes, digest)`` of the FSDD recordings in ``folder``.

    The digest is the SHA-256 of the lines ``"<name> <sha256 of the file>\\n"``, sorted by name.
    """
    paths = sorted(
        (p for p in folder.glob("*.wav") if FSDD_NAME.match(p.name)), key=lambda p: p.name
    )
    lines = "".join(f"{p.name} {sha256_of(p)}\n" for p in paths)
    total = sum(p.stat().st_size for p in paths)
    return len(paths), total, hashlib.sha256(lines.encode()).hexdigest()


def check_recordings(folder: Path, expected: RecordingSet) -> None:
    """Raise :class:`DownloadError` unless ``folder`` holds exactly the expected recordings."""
    count, total, digest = recordings_digest(folder)
    if (count, total, digest) != (expected.count, expected.total_bytes, expected.digest):
        raise DownloadError(
            f"{folder}: expected {expected.count} recordings, {expected.total_bytes} bytes, digest "
            f"{expected.digest}; got {count} recordings, {total} bytes, digest {digest}"
        )


def get_recordings(
    folder: Path, expected: RecordingSet = FSDD, *, verify_only: bool = False, log=print
) -> Path:
    """``folder/recordings`` with FSDD's recordings, extracted from the release archive if needed.

    Raises:
        DownloadError: if the archive cannot be fetched or its recordings do not check out.
    """
    target = folder / "recordings"
    if target.is_dir():
        try:
            check_recordings(target, expected)
            log(f"ok {target} ({expected.count} recordings, kept)")
            return target
        except DownloadError:
            if verify_only:
                raise
            log(f"{target} is incomplete or differs; extracting it again")
    elif verify_only:
        raise DownloadError(f"{target}: expected {expected.count} FSDD recordings, it is missing")
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "fsdd-release.tar.gz"
    errors = []
    for url in expected.archive_urls:
        try:
            log(f"get {url}")
            fetch(url, archive)
            break
        except DownloadError as err:
            errors.append(str(err))
    else:
        raise DownloadError("FSDD: every source failed:\n  " + "\n  ".join(errors))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / "recordings"
        staged.mkdir()
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and "/recordings/" in member.name and FSDD_NAME.match(name):
                        data = tar.extractfile(member)
                        assert data is not None
                        (staged / name).write_bytes(data.read())
        except (tarfile.TarError, OSError, EOFError) as err:
            archive.replace(archive.with_name(archive.name + ".bad"))
            raise DownloadError(
                f"{archive}: expected a tar.gz archive, could not read it: {err}"
            ) from None
        check_recordings(staged, expected)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    archive.unlink()
    log(f"ok {target} ({expected.count} recordings)")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for mnist/ and fsdd/")
    p.add_argument("--mnist-train", action="store_true", help="also MNIST's training file (60,000)")
    p.add_argument("--verify", action="store_true", help="only check what is there")
    args = p.parse_args(argv)
    names = MNIST_TEST_FILES + (MNIST_TRAIN_FILES if args.mnist_train else ())
    try:
        for name in names:
            get_file(MNIST[name], args.out / "mnist", verify_only=args.verify)
        get_recordings(args.out / "fsdd", verify_only=args.verify)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
