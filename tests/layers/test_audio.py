"""Audio feature layers against librosa (an independent implementation), and SpecAugment's masking."""
import numpy as np
import pytest
import torch

from ember import layers
from ember.layers.audio import mel_filterbank
from tests.layers.harness import check_layer

librosa = pytest.importorskip("librosa")


def tone_and_noise(n=8000, rate=8000):
    t = np.arange(n) / rate
    noise = np.random.default_rng(0).standard_normal(n)
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


@pytest.mark.parametrize("rate, fft, mels, fmin, fmax", [(8000, 256, 40, 20.0, None), (16000, 512, 64, 0.0, 7000.0)])
def test_mel_filterbank_matches_librosa(rate, fft, mels, fmin, fmax):
    ours = mel_filterbank(sample_rate=rate, fft_length=fft, num_mel_bins=mels, min_freq=fmin, max_freq=fmax)
    reference = librosa.filters.mel(sr=rate, n_fft=fft, n_mels=mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-7, rtol=1e-5)


def test_power_spectrogram_matches_librosa_stft():
    layer = layers.MelSpectrogram(fft_length=256, sequence_stride=80, sampling_rate=8000, num_mel_bins=40)
    x = tone_and_noise()
    ours = layer.power_spectrogram(torch.from_numpy(x)[None])[0].numpy()
    reference = np.abs(librosa.stft(x, n_fft=256, hop_length=80, window="hann", center=True,
                                    pad_mode="constant")) ** 2
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * reference.max())


def test_log_mel_and_mfcc_match_librosa():
    options = dict(fft_length=256, sequence_stride=80, sampling_rate=8000, num_mel_bins=40, min_freq=20.0)
    x = tone_and_noise()
    mel = layers.MelSpectrogram(**options)(torch.from_numpy(x)[None])[0].numpy()
    power = librosa.feature.melspectrogram(y=x, sr=8000, n_fft=256, hop_length=80, n_mels=40, fmin=20.0,
                                           center=True, pad_mode="constant")
    reference = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
    assert mel.shape == reference.shape == (40, 101)
    np.testing.assert_allclose(mel, reference, atol=1e-3)
    mfcc = layers.MFCC(num_mfcc=13, **options)(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(mfcc, librosa.feature.mfcc(S=reference, n_mfcc=13), atol=1e-2)


def test_feature_layers_pass_the_harness_and_keep_constants_out_of_the_weights():
    for layer in (layers.MelSpectrogram(fft_length=64, sequence_stride=32, sampling_rate=8000, num_mel_bins=8),
                  layers.MFCC(num_mfcc=4, fft_length=64, sequence_stride=32, sampling_rate=8000, num_mel_bins=8)):
        check_layer(layer, (2, 400))
        assert layer.state_dict() == {} and layer.count_params() == 0


def test_spec_augment_masks_bands_in_training_only():
    layer = layers.SpecAugment(freq_mask_param=3, time_mask_param=5, num_freq_masks=2)
    x = torch.randn(16, 20, 30, 1)
    check_layer(layer, (4, 20, 30, 1))
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    out = layer(x)
    changed = (out != x)[..., 0]
    assert changed.any()
    # every changed value sits in a fully masked frequency row or time column of its sample
    rows, cols = changed.all(dim=2), changed.all(dim=1)
    assert torch.equal(changed, rows[:, :, None] | cols[:, None, :])
    assert (rows.sum(dim=1) <= 6).all() and (cols.sum(dim=1) <= 5).all()
