"""Where dataset files come from: `$EMBER_DATA/NAME/`, then `~/.cache/ember/datasets/NAME/`, then a download.

`EMBER_OFFLINE=1` forbids the download step. Downloads go to the cache through a temporary file, are
checked against their sha256 and only then renamed into place, so an interrupted or corrupted download
never leaves a file that looks complete.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ember.errors import DatasetError

_CHUNK = 1 << 20
_TIMEOUT_S = 30


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


def data_dir() -> Path | None:
    value = os.environ.get("EMBER_DATA")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    return os.environ.get("EMBER_OFFLINE", "").lower() in ("1", "true", "yes")


def cache_dir() -> Path:
    return Path.home() / ".cache" / "ember" / "datasets"


def find_local(dataset: str, filename: str) -> Path | None:
    """The file from EMBER_DATA or the cache, if it is there."""
    for root in (data_dir(), cache_dir()):
        if root is not None and (root / dataset / filename).is_file():
            return root / dataset / filename
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None) -> Path:
    """Fetch `url` into `target`, verifying its sha256; raises DatasetError and leaves nothing on failure.
    `sha256=None` is for an archive whose bytes are not stable (a GitHub archive of a commit): its caller
    verifies what it unpacks."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DatasetError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DatasetError(f"{url}: download failed ({reason})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def from_mirrors(mirrors: list[str], attempt) -> tuple[Path | None, list[str]]:
    """`attempt(mirror)` for each mirror in turn until one returns (no attempt while EMBER_OFFLINE is set):
    (what it returned, or None, and the reasons the others failed)."""
    errors = ["EMBER_OFFLINE is set"] if offline() else []
    for mirror in [] if errors else mirrors:
        try:
            return attempt(mirror), errors
        except DatasetError as e:
            errors.append(str(e))
    return None, errors


def fetch(dataset: str, file: RemoteFile, mirrors: list[str]) -> Path:
    """Path of `file` of `dataset`, downloading it into the cache from the first mirror that works."""
    local = find_local(dataset, file.name)
    if local is not None:
        return local
    path, errors = from_mirrors(mirrors, lambda mirror: download(
        mirror.rstrip("/") + "/" + file.name, cache_dir() / dataset / file.name, file.sha256))
    if path is not None:
        return path
    where = f"$EMBER_DATA/{dataset}/ or {cache_dir() / dataset}/"
    raise DatasetError(f"{dataset}: {file.name} is not in {where} and was not downloaded "
                       f"({'; '.join(errors)}); put {file.name} from {mirrors[0]} into one of those folders")
