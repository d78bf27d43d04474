"""Audio features as layers, so they run batched on the model's device and travel inside the saved model.

Waveforms (batch, samples) in; `MelSpectrogram` gives (batch, num_mel_bins, frames) as Keras's layer does,
`MFCC` (batch, num_mfcc, frames). The mel filterbank follows librosa's defaults (Slaney's mel scale and
area normalization); tests compare it and the spectrogram with librosa.
"""
import math

import torch

from ember.layers.base import Layer


# Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic (27 mels per factor 6.4) above
_HZ_PER_MEL, _LOG_START_HZ = 200.0 / 3, 1000.0
_LOG_START_MEL, _LOG_STEP = _LOG_START_HZ / _HZ_PER_MEL, math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    return torch.where(hz >= _LOG_START_HZ,
                       _LOG_START_MEL + torch.log(hz.clamp_min(1e-10) / _LOG_START_HZ) / _LOG_STEP, hz / _HZ_PER_MEL)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return torch.where(mel >= _LOG_START_MEL, _LOG_START_HZ * torch.exp(_LOG_STEP * (mel - _LOG_START_MEL)),
                       _HZ_PER_MEL * mel)


def mel_filterbank(*, sample_rate: int, fft_length: int, num_mel_bins: int, min_freq: float = 0.0,
                   max_freq: float | None = None) -> torch.Tensor:
    """(num_mel_bins, fft_length // 2 + 1) triangular filters, each scaled to unit area (Slaney)."""
    max_freq = sample_rate / 2 if max_freq is None else max_freq
    bins = torch.linspace(0, sample_rate / 2, fft_length // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(float(min_freq)))),
                                     float(hz_to_mel(torch.tensor(float(max_freq)))), num_mel_bins + 2,
                                     dtype=torch.float64))
    widths = edges.diff()
    rising = (bins[None, :] - edges[:-2, None]) / widths[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.float()


def to_decibels(power: torch.Tensor, *, min_power: float = 1e-10, top_db: float | None = 80.0) -> torch.Tensor:
    """10 log10(power), floored per sample at `top_db` below its loudest value (librosa's power_to_db, ref 1)."""
    db = 10.0 * torch.log10(power.clamp_min(min_power))
    if top_db is not None:
        loudest = db.flatten(1).amax(dim=1).reshape(-1, *([1] * (db.dim() - 1)))
        db = torch.maximum(db, loudest - top_db)
    return db


class MelSpectrogram(Layer):
    """Waveforms (batch, samples) -> mel spectrograms (batch, num_mel_bins, frames), in dB by default.

    A Hann-windowed STFT of `fft_length` points every `sequence_stride` samples (frames centred, zero-padded
    at the edges), the power spectrum through a mel filterbank, then decibels (`to_decibels`, librosa's power_to_db).

    >>> layers.MelSpectrogram(sampling_rate=8000, fft_length=256, sequence_stride=80, num_mel_bins=40)
    """

    def __init__(self, fft_length=2048, sequence_stride=512, sequence_length=None, sampling_rate=16000,
                 num_mel_bins=128, min_freq=20.0, max_freq=None, power_to_db=True, top_db=80.0, min_power=1e-10,
                 **kwargs):
        super().__init__(**kwargs)
        self.fft_length, self.sequence_stride = int(fft_length), int(sequence_stride)
        self.sequence_length = int(sequence_length or fft_length)
        if self.sequence_length > self.fft_length:
            raise ValueError(f"sequence_length ({self.sequence_length}) must not exceed fft_length ({fft_length})")
        self.sampling_rate, self.num_mel_bins = int(sampling_rate), int(num_mel_bins)
        self.min_freq, self.max_freq = float(min_freq), None if max_freq is None else float(max_freq)
        self.power_to_db, self.top_db, self.min_power = bool(power_to_db), top_db, float(min_power)
        self.register_buffer("window", torch.hann_window(self.sequence_length), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(
            sample_rate=self.sampling_rate, fft_length=self.fft_length, num_mel_bins=self.num_mel_bins,
            min_freq=self.min_freq, max_freq=self.max_freq), persistent=False)

    def power_spectrogram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 as (batch, fft_length // 2 + 1, frames)."""
        spectrum = torch.stft(waveforms.float(), self.fft_length, hop_length=self.sequence_stride,
                              win_length=self.sequence_length, window=self.window, center=True,
                              pad_mode="constant", return_complex=True)
        return spectrum.abs().square()

    def forward(self, waveforms):
        mel = torch.matmul(self.filterbank, self.power_spectrogram(waveforms))
        return to_decibels(mel, min_power=self.min_power, top_db=self.top_db) if self.power_to_db else mel

    def get_config(self):
        return {**super().get_config(), "fft_length": self.fft_length, "sequence_stride": self.sequence_stride,
                "sequence_length": self.sequence_length, "sampling_rate": self.sampling_rate,
                "num_mel_bins": self.num_mel_bins, "min_freq": self.min_freq, "max_freq": self.max_freq,
                "power_to_db": self.power_to_db, "top_db": self.top_db, "min_power": self.min_power}


class MFCC(MelSpectrogram):
    """Waveforms -> (batch, num_mfcc, frames): the orthonormal DCT-II of the dB mel spectrogram (librosa's mfcc).

    >>> layers.MFCC(num_mfcc=13, sampling_rate=8000, fft_length=256, sequence_stride=80, num_mel_bins=40)
    """

    def __init__(self, num_mfcc=13, **kwargs):
        kwargs["power_to_db"] = True
        super().__init__(**kwargs)
        self.num_mfcc = int(num_mfcc)
        if not 1 <= self.num_mfcc <= self.num_mel_bins:
            raise ValueError(f"num_mfcc must be between 1 and num_mel_bins ({self.num_mel_bins}), got {num_mfcc}")
        self.register_buffer("dct", _dct_matrix(self.num_mfcc, self.num_mel_bins), persistent=False)

    def forward(self, waveforms):
        return torch.matmul(self.dct, super().forward(waveforms))

    def get_config(self):
        config = super().get_config()
        config.pop("power_to_db")
        return {**config, "num_mfcc": self.num_mfcc}


def _dct_matrix(rows: int, size: int) -> torch.Tensor:
    """The first `rows` rows of the orthonormal DCT-II matrix of `size` points."""
    n = torch.arange(size, dtype=torch.float64)
    k = torch.arange(rows, dtype=torch.float64)[:, None]
    matrix = torch.cos(math.pi / size * (n + 0.5) * k) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix.float()


class SpecAugment(Layer):
    """Training-only time and frequency masking (Park et al., 2019) of spectrograms (batch, freq, time[, ...]).

    Each sample gets `num_freq_masks` bands of up to `freq_mask_param` bins and `num_time_masks` spans of up to
    `time_mask_param` frames set to its mean value. At inference it passes inputs through unchanged.

    >>> layers.SpecAugment(freq_mask_param=8, time_mask_param=10)
    """

    def __init__(self, freq_mask_param=8, time_mask_param=10, num_freq_masks=1, num_time_masks=1, **kwargs):
        super().__init__(**kwargs)
        self.freq_mask_param, self.time_mask_param = int(freq_mask_param), int(time_mask_param)
        self.num_freq_masks, self.num_time_masks = int(num_freq_masks), int(num_time_masks)

    @staticmethod
    def _band_mask(batch: int, size: int, width: int, count: int, device) -> torch.Tensor:
        """(batch, size) True inside `count` random bands of 0..width positions."""
        mask = torch.zeros(batch, size, dtype=torch.bool, device=device)
        positions = torch.arange(size, device=device)
        for _ in range(count):
            widths = torch.randint(0, width + 1, (batch, 1), device=device).clamp(max=size)
            starts = (torch.rand(batch, 1, device=device) * (size - widths + 1)).long()
            mask |= (positions >= starts) & (positions < starts + widths)
        return mask

    def forward(self, x):
        if not self.training:
            return x
        batch, freq, time = x.shape[:3]
        extra = (1,) * (x.dim() - 3)
        masked = (self._band_mask(batch, freq, self.freq_mask_param, self.num_freq_masks, x.device)
                  .reshape(batch, freq, 1, *extra)
                  | self._band_mask(batch, time, self.time_mask_param, self.num_time_masks, x.device)
                  .reshape(batch, 1, time, *extra))
        fill = x.detach().flatten(1).mean(dim=1).reshape(batch, 1, 1, *extra)
        return torch.where(masked, fill, x)

    def get_config(self):
        return {**super().get_config(), "freq_mask_param": self.freq_mask_param,
                "time_mask_param": self.time_mask_param, "num_freq_masks": self.num_freq_masks,
                "num_time_masks": self.num_time_masks}
