"""Free Spoken Digit Dataset: 3,000 recordings of digits 0-9 by 6 speakers, 8 kHz mono WAV.

Files are `recordings/{digit}_{speaker}_{index}.wav`. The official split tests on indices 0-4 of every
speaker and digit (300 recordings); `split="speaker:NAME"` tests on one speaker and trains on the others.

The recordings are read from `$EMBER_DATA/fsdd/recordings/`, else the cache; else the repository's archive
at a pinned commit is downloaded and its 3,000 recordings are unpacked into the cache once their checksums,
written as `sha256sum` lines sorted by name, hash to the pinned RECORDINGS_SHA256 (`EMBER_OFFLINE=1` forbids
the download). A GitHub archive's own bytes are not guaranteed stable; the recordings in it are.

>>> (x_train, y_train), (x_test, y_test) = datasets.fsdd.load_data()   # float32 (N, 8000) clips, uint8 digits
"""
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ember.data.audio import load_clips
from ember.datasets import store
from ember.errors import DatasetError

SAMPLE_RATE = 8000
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
CLASS_NAMES = [str(d) for d in range(10)]
ADDRESS = "https://github.com/Jakobovski/free-spoken-digit-dataset (recordings/)"
COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
MIRRORS = [f"https://codeload.github.com/Jakobovski/free-spoken-digit-dataset/tar.gz/{COMMIT}"]
RECORDINGS_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
RECORDINGS = 3000
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def _local_dir() -> Path | None:
    for root in (store.data_dir(), store.cache_dir()):
        if root is not None and (root / "fsdd" / "recordings").is_dir():
            return root / "fsdd" / "recordings"
    return None


def recordings_dir() -> Path:
    """The recordings folder: $EMBER_DATA's, the cache's, or the cache's after downloading them."""
    local = _local_dir()
    if local is not None:
        return local
    path, errors = store.from_mirrors(MIRRORS, lambda url: _download(url, store.cache_dir() / "fsdd"))
    if path is not None:
        return path
    raise DatasetError(f"fsdd: no recordings/ folder in $EMBER_DATA/fsdd/ or {store.cache_dir() / 'fsdd'}/ and "
                       f"none was downloaded ({'; '.join(errors)}); put the 3,000 .wav files from {ADDRESS} there")


def _download(url: str, folder: Path) -> Path:
    """`folder`/recordings from the archive at `url`, verified before it takes that name; nothing is left
    behind on failure."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / ".archive.tar.gz"
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".recordings-"))
    try:
        store.download(url, archive, None)
        try:
            digest, count = _unpack(archive, staging)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DatasetError(f"{url}: not a readable tar.gz archive ({e})") from None
        if digest != RECORDINGS_SHA256:
            raise DatasetError(f"{url}: its {count} recordings are not FSDD's {RECORDINGS} at commit {COMMIT[:12]} "
                               f"(sha256 of their sha256sum lines {digest}, expected {RECORDINGS_SHA256})")
        os.replace(staging, folder / "recordings")
        return folder / "recordings"
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, into: Path) -> tuple[str, int]:
    """Write the archive's `TOP/recordings/{digit}_{speaker}_{index}.wav` regular files into `into` (no other
    member, link or path is read); returns the sha256 of their `sha256sum` lines sorted by name, and
    their count."""
    lines = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not (member.isfile() and len(parts) == 3 and parts[1] == "recordings" and _NAME.match(parts[2])):
                continue
            data = tar.extractfile(member).read()
            (into / parts[2]).write_bytes(data)  # a name given twice: the last one, on disk and in the lines
            lines[parts[2]] = f"{hashlib.sha256(data).hexdigest()}  recordings/{parts[2]}\n"
    return hashlib.sha256("".join(lines[name] for name in sorted(lines)).encode()).hexdigest(), len(lines)


def is_available() -> bool:
    """True when the recordings are on disk already (no download needed)."""
    local = _local_dir()
    return local is not None and any(local.glob("*.wav"))


def list_recordings() -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, index) of every recording, sorted by file name."""
    found = []
    for path in sorted(recordings_dir().glob("[0-9]_*.wav")):  # not hidden files such as macOS's ._7_theo_0.wav
        match = _NAME.match(path.name)
        if match is None:
            raise DatasetError(f"{path}: not named {{digit}}_{{speaker}}_{{index}}.wav")
        found.append((path, int(match[1]), match[2], int(match[3])))
    if not found:
        raise DatasetError(f"{recordings_dir()}: no .wav files")
    return found


def _is_test(split: str):
    if split == "official":
        return lambda speaker, index: index < 5
    speaker = split.removeprefix("speaker:")
    if not split.startswith("speaker:") or speaker not in SPEAKERS:
        raise ValueError(f"split must be 'official' or 'speaker:NAME' with NAME one of {', '.join(SPEAKERS)}, "
                         f"got {split!r}")
    return lambda name, index: name == speaker


def load_data(split: str = "official", *, length: int = SAMPLE_RATE):
    """((x_train, y_train), (x_test, y_test)): clips zero-padded or cut to `length` samples, digit labels."""
    is_test = _is_test(split)
    recordings = list_recordings()
    parts = []
    for wanted in (False, True):
        chosen = [(path, digit) for path, digit, speaker, index in recordings if is_test(speaker, index) == wanted]
        x = load_clips([p for p, _ in chosen], sample_rate=SAMPLE_RATE, length=length)
        parts.append((x, np.array([d for _, d in chosen], dtype=np.uint8)))
    return tuple(parts)
