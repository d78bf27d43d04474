"""Audio files as arrays: PCM WAV reading (the standard library's `wave`) and fixed-length clips."""
import wave
from pathlib import Path

import numpy as np

from ember.errors import DatasetError

_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def read_wav(path) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1], sample rate) of a PCM WAV file; several channels are averaged to mono.

    >>> samples, rate = read_wav("7_jackson_32.wav")
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            frames = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such audio file") from None
    except (wave.Error, EOFError, OSError) as e:
        raise DatasetError(f"{path}: not a readable PCM WAV file ({str(e) or 'the file ends too soon'})") from None
    if width not in _DTYPES:
        raise DatasetError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    frames = frames[:len(frames) - len(frames) % (width * channels)]  # a truncated file ends mid-frame
    samples = np.frombuffer(frames, dtype=_DTYPES[width]).astype(np.float32)
    if width == 1:
        samples = (samples - 128.0) / 128.0  # 8-bit WAV is unsigned
    else:
        samples /= float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels).mean(axis=1), rate


def fix_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end, or cut, to exactly `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def load_clips(paths, *, sample_rate: int, length: int) -> np.ndarray:
    """(N, length) float32 clips; a file at another sample rate is an error that names it."""
    clips = np.zeros((len(paths), length), dtype=np.float32)
    for row, path in enumerate(paths):
        samples, rate = read_wav(path)
        if rate != sample_rate:
            raise DatasetError(f"{path}: sample rate {rate} Hz, the model expects {sample_rate} Hz")
        clips[row] = fix_length(samples, length)
    return clips
