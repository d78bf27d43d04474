import numpy as np
import pytest
import torch

from ember import models
from ember.models.generative import ConditionalVAE


def blobs(n=128, seed=0):
    """Two classes of 8x8 images: a bright top half or a bright bottom half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.random((n, 8, 8, 1), dtype=np.float32) * 0.2
    x[y == 0, :4] += 0.7
    x[y == 1, 4:] += 0.7
    return x, y


def test_it_learns_each_class_and_draws_it_on_request(tmp_path):
    torch.manual_seed(0)
    x, y = blobs()
    vae = ConditionalVAE((8, 8, 1), num_classes=2, latent_dim=2, filters=(8, 16), hidden=32)
    vae.compile(optimizer="adam")
    history = vae.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    tops, bottoms = vae.generate([0] * 16, seed=1), vae.generate([1] * 16, seed=1)
    assert tops.shape == (16, 8, 8, 1) and tops.min() >= 0 and tops.max() <= 1
    assert (tops[:, :4].mean() - tops[:, 4:].mean()) > 0.3 and (bottoms[:, 4:].mean() - bottoms[:, :4].mean()) > 0.3
    assert np.array_equal(vae.generate([0] * 4, seed=3), vae.generate([0] * 4, seed=3))
    typical = vae.generate([0, 0], temperature=0.0)
    assert np.array_equal(typical[0], typical[1])  # the latent mean, whatever the seed
    vae.save(tmp_path / "vae.ember")
    loaded = models.load_model(tmp_path / "vae.ember")
    assert np.allclose(loaded.generate([1] * 4, seed=2), vae.generate([1] * 4, seed=2), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_shape": (10, 8, 1)}, "divisible by 4"),
    ({"image_shape": (8, 8)}, "height, width, channels"),
    ({"latent_dim": 0}, "latent_dim"),
])
def test_bad_shapes_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditionalVAE(**{"image_shape": (8, 8, 1), **kwargs})


def test_a_label_out_of_range_is_named():
    vae = ConditionalVAE((8, 8, 1), num_classes=3)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        vae.generate([3])
