"""WAV reading: PCM widths, channels, and clear errors for files that are not audio."""
import wave

import numpy as np
import pytest

from ember.data.audio import fix_length, load_clips, read_wav
from ember.errors import DatasetError


def write_wav(path, samples: np.ndarray, rate=8000, width=2, channels=1):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


def test_16_bit_mono_and_stereo(tmp_path):
    write_wav(tmp_path / "a.wav", np.array([0, 16384, -32768], dtype=np.int16))
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, [0.0, 0.5, -1.0])
    write_wav(tmp_path / "b.wav", np.array([16384, 0, -16384, -16384], dtype=np.int16), channels=2)
    np.testing.assert_allclose(read_wav(tmp_path / "b.wav")[0], [0.25, -0.5])


def test_8_bit_is_unsigned(tmp_path):
    write_wav(tmp_path / "c.wav", np.array([128, 255, 0], dtype=np.uint8), width=1)
    np.testing.assert_allclose(read_wav(tmp_path / "c.wav")[0], [0.0, 127 / 128, -1.0])


def test_not_a_wav_and_wrong_rate_are_clear_errors(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(DatasetError, match=r"notes\.wav: not a readable PCM WAV file"):
        read_wav(tmp_path / "notes.wav")
    with pytest.raises(DatasetError, match="no such audio file"):
        read_wav(tmp_path / "missing.wav")
    write_wav(tmp_path / "fast.wav", np.zeros(10, dtype=np.int16), rate=16000)
    with pytest.raises(DatasetError, match="fast.wav: sample rate 16000 Hz, the model expects 8000 Hz"):
        load_clips([tmp_path / "fast.wav"], sample_rate=8000, length=10)


def test_fix_length_pads_or_cuts():
    assert fix_length(np.ones(3), 5).tolist() == [1, 1, 1, 0, 0]
    assert fix_length(np.arange(6), 4).tolist() == [0, 1, 2, 3]
