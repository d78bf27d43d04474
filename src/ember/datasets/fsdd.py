"""Free Spoken Digit Dataset: 3,000 recordings of digits 0-9 by 6 speakers, 8 kHz mono WAV.

Files are `recordings/{digit}_{speaker}_{index}.wav`. The official split tests on indices 0-4 of every
speaker and digit (300 recordings); `split="speaker:NAME"` tests on one speaker and trains on the others.

>>> (x_train, y_train), (x_test, y_test) = datasets.fsdd.load_data()   # float32 (N, 8000) clips, uint8 digits
"""
import re
from pathlib import Path

import numpy as np

from ember.data.audio import load_clips
from ember.datasets import store
from ember.errors import DatasetError

SAMPLE_RATE = 8000
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
CLASS_NAMES = [str(d) for d in range(10)]
ADDRESS = "https://github.com/Jakobovski/free-spoken-digit-dataset (recordings/)"
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def recordings_dir() -> Path:
    for root in (store.data_dir(), store.cache_dir()):
        if root is not None and (root / "fsdd" / "recordings").is_dir():
            return root / "fsdd" / "recordings"
    raise DatasetError(f"fsdd: no recordings/ folder in $EMBER_DATA/fsdd/ or {store.cache_dir() / 'fsdd'}/; put "
                       f"the 3,000 .wav files from {ADDRESS} there")


def is_available() -> bool:
    try:
        return any(recordings_dir().glob("*.wav"))
    except DatasetError:
        return False


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
