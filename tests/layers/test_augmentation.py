import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ember import layers, models
from ember.layers import AUGMENTATION_LAYERS

IMAGE_LAYERS = [
    lambda seed: layers.RandomFlip(seed=seed),
    lambda seed: layers.RandomRotation(0.1, seed=seed),
    lambda seed: layers.RandomZoom(0.2, seed=seed),
    lambda seed: layers.RandomTranslation(0.1, 0.2, seed=seed),
    lambda seed: layers.RandomContrast(0.5, value_range=(0, 1), seed=seed),
    lambda seed: layers.RandomBrightness(0.2, value_range=(0, 1), seed=seed),
    lambda seed: layers.RandomErasing(value_range=(0, 1), seed=seed),
    lambda seed: layers.MixUp(seed=seed),
    lambda seed: layers.CutMix(seed=seed),
]


def images(n=16, h=12, w=10, c=3, seed=0):
    return torch.rand((n, h, w, c), generator=torch.Generator().manual_seed(seed))


def run(layer, x, training=True):
    layer.train(training)
    return layer(x)


@pytest.mark.parametrize("make", IMAGE_LAYERS)
def test_identity_outside_training_and_seeded_in_it(make):
    x = images()
    assert torch.equal(run(make(1), x, training=False), x)
    first, again, other = run(make(1), x), run(make(1), x), run(make(2), x)
    assert first.shape == x.shape and not torch.equal(first, x)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_unseeded_layers_follow_torch_manual_seed():
    x = images()
    torch.manual_seed(5)
    first = run(layers.RandomRotation(0.1), x)
    torch.manual_seed(5)
    assert torch.equal(run(layers.RandomRotation(0.1), x), first)


def test_rotation_by_a_quarter_turn_is_rot90_counter_clockwise():
    x = images(4, 8, 8, 2)
    out = run(layers.RandomRotation((0.25, 0.25), fill_mode="constant"), x)
    assert torch.allclose(out, torch.rot90(x, 1, dims=(1, 2)), atol=1e-5)


def test_translation_shifts_by_the_fraction_and_fills():
    x = images(2, 8, 6, 1)
    out = run(layers.RandomTranslation((0.25, 0.25), (0, 0), fill_mode="constant", fill_value=0.5), x)
    assert torch.allclose(out[:, 2:], x[:, :-2], atol=1e-5)  # down by a quarter of 8 rows
    assert torch.allclose(out[:, :2], torch.full_like(out[:, :2], 0.5))
    wrapped = run(layers.RandomTranslation((0, 0), (1 / 3, 1 / 3), fill_mode="wrap", interpolation="nearest"), x)
    assert torch.equal(wrapped, torch.roll(x, 2, dims=2))


def test_zoom_in_by_two_reads_the_central_half():
    x = images(2, 8, 8, 1)
    out = run(layers.RandomZoom((-0.5, -0.5), interpolation="bilinear"), x)
    centre = x[:, 2:6, 2:6].permute(0, 3, 1, 2)
    expected = F.interpolate(centre, size=(8, 8), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    # the outermost output pixels read beyond the central half, which interpolate clamps away
    assert torch.allclose(out[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(run(layers.RandomZoom(0.0), x), x, atol=1e-5)


def test_consecutive_geometric_layers_resample_once_and_compose_exactly(monkeypatch):
    x = images(8, 12, 12, 1)
    chain = [layers.RandomTranslation((0.25, 0.25), 0, fill_mode="constant", interpolation="nearest"),
             layers.RandomTranslation(0, (0.25, 0.25), fill_mode="constant", interpolation="nearest"),
             layers.RandomRotation((0.5, 0.5), fill_mode="constant", interpolation="nearest")]
    model = models.Sequential([layers.Input((12, 12, 1)), *chain])
    one_by_one = x
    for layer in chain:
        one_by_one = run(layer, one_by_one)
    calls = []
    real = F.grid_sample
    monkeypatch.setattr(F, "grid_sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    model.train()
    assert torch.allclose(model(x), one_by_one, atol=1e-5) and len(calls) == 1


def test_flip_mirrors_some_images_and_keeps_the_others():
    x = images(64)
    out = run(layers.RandomFlip("horizontal", seed=0), x)
    mirrored = [torch.equal(o, i.flip(1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 10 < sum(mirrored) < 54


def test_random_crop_takes_windows_in_training_and_the_centre_otherwise():
    x = images(6, 12, 10, 1)
    crop = layers.RandomCrop(8, 6, seed=0)
    out = run(crop, x)
    assert out.shape == (6, 8, 6, 1)
    for o, i in zip(out, x):
        windows = i.unfold(0, 8, 1).unfold(1, 6, 1)  # (5, 5, 1, 8, 6)
        assert any(torch.equal(o[..., 0], windows[r, c, 0]) for r in range(5) for c in range(5))
    square = images(2, 12, 12, 1)
    assert torch.equal(run(layers.RandomCrop(12, 12), square, training=False), square)
    assert run(crop, x, training=False).shape == (6, 8, 6, 1)
    model = models.Sequential([layers.Input((12, 10, 1)), layers.RandomCrop(8, 6), layers.Flatten()])
    assert model.output_shape == (None, 48)


def test_contrast_keeps_the_mean_and_brightness_shifts_it_within_range():
    x = images(8) * 0.5 + 0.25
    out = run(layers.RandomContrast(0.5, value_range=(0, 1), seed=0), x)
    assert torch.allclose(out.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-5)
    shifted = run(layers.RandomBrightness(0.1, value_range=(0, 1), seed=0), x)
    delta = (shifted - x).flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6) and delta.abs().max() <= 0.1 + 1e-6
    assert run(layers.RandomBrightness(1.0, value_range=(0, 1), seed=1), x).min() >= 0


def test_erasing_blanks_one_rectangle_of_the_asked_area():
    x = images(32, 20, 20, 1) + 1  # no pixel is 0 before erasing
    out = run(layers.RandomErasing(scale=(0.1, 0.2), fill_value=0.0, seed=0), x)
    for o in out[..., 0]:
        rows, cols = torch.nonzero(o == 0, as_tuple=True)
        area = len(rows) / 400
        assert 0.05 <= area <= 0.25
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a full rectangle


def test_mixup_blends_pairs_and_the_loss_mixes_their_labels():
    x = images(8)
    mix = layers.MixUp(alpha=0.4, seed=0)
    out = run(mix, x)
    partner, own = mix.last_mix
    assert torch.allclose(out, own[:, None, None, None] * x + (1 - own[:, None, None, None]) * x[partner])
    model = models.Sequential([layers.Input((12, 10, 3)), layers.MixUp(seed=3), layers.Flatten(),
                               layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    model.train()
    loss, y_pred = model.compute_loss_and_predictions((x,), y, None)
    partner, own = layers.MixUp(seed=3)._draw(x)
    log_p = F.log_softmax(y_pred, dim=-1)  # no metric reads probabilities: the predictions are logits
    expected = -(own * log_p[torch.arange(8), y] + (1 - own) * log_p[torch.arange(8), y[partner]]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    model.eval()
    plain, _ = model.compute_loss_and_predictions((x,), y, None)
    assert torch.allclose(plain, F.nll_loss(torch.log(model(x)), y), atol=1e-5)


def test_mixup_and_cutmix_take_keras_dicts():
    x, labels = images(8), F.one_hot(torch.arange(8) % 4, 4).float()
    for mixer in (layers.MixUp(seed=0), layers.CutMix(seed=0)):
        out = mixer({"images": x, "labels": labels})
        assert out["images"].shape == x.shape and torch.allclose(out["labels"].sum(1), torch.ones(8))


def test_cutmix_pastes_a_box_and_weighs_labels_by_the_area_kept():
    x = images(16, 16, 16, 1)
    cut = layers.CutMix(seed=1)
    out = run(cut, x)
    partner, kept = cut.last_mix
    from_self = (out == x).all(-1).float().mean(dim=(1, 2))
    from_partner = (out == x[partner]).all(-1)
    assert torch.all((out == x) | (out == x[partner]))
    assert torch.allclose(from_self, kept, atol=1 / 256 + 1e-6) or torch.equal(partner, torch.arange(16))
    assert from_partner.any()


def test_one_label_mixer_per_model():
    model = models.Sequential([layers.Input((12, 10, 3)), layers.MixUp(), layers.CutMix(), layers.Flatten(),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.train()
    with pytest.raises(ValueError, match="one label-mixing layer"):
        model.compute_loss_and_predictions((images(4),), torch.tensor([0, 1, 0, 1]), None)


def test_token_augmentation_drops_masks_and_swaps_but_keeps_special_tokens_and_padding():
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 3, 0, 0]] * 64)
    drop = run(layers.TokenAugmentation(drop_rate=0.5, keep_tokens=[2, 3], seed=0), ids)
    for row in drop:
        real = row[row != 0]
        assert real[0] == 2 and real[-1] == 3 and torch.all(row[len(real):] == 0)  # closed up, padding last
        assert torch.all(torch.diff(real[1:-1]) > 0)  # the order kept
    assert (drop != 0).sum(1).float().mean() < 7
    swap = run(layers.TokenAugmentation(drop_rate=0, swap_rate=0.5, keep_tokens=[2, 3], seed=0), ids)
    assert torch.equal(swap.sort(1).values, ids.sort(1).values) and not torch.equal(swap, ids)
    assert torch.all(swap[:, 0] == 2) and torch.all(swap[:, 7] == 3)
    masked = run(layers.TokenAugmentation(drop_rate=0, mask_rate=0.5, mask_token=1, seed=0), ids)
    assert torch.all((masked == ids) | (masked == 1)) and torch.all(masked[:, 8:] == 0)
    assert torch.equal(run(layers.TokenAugmentation(drop_rate=0), ids), ids)


@pytest.mark.parametrize("make, message", [
    (lambda: layers.RandomFlip("diagonal"), "mode"),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "fill_mode"),
    (lambda: layers.RandomZoom((0.3, 0.1)), "lower <= upper"),
    (lambda: layers.RandomCrop(0, 4), "positive integers"),
    (lambda: layers.RandomErasing(factor=2), "probability"),
    (lambda: layers.MixUp(alpha=0), "positive"),
    (lambda: layers.TokenAugmentation(drop_rate=1.5), "drop_rate"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_model_with_augmentation_saves_loads_and_predicts_without_it(tmp_path):
    model = models.Sequential([layers.Input((12, 10, 3)), *[cls(seed=0) for cls in (layers.RandomFlip,)],
                               layers.RandomRotation(0.1), layers.RandomZoom(0.1), layers.RandomContrast(0.2),
                               layers.CutMix(), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = images(32).numpy(), np.arange(32) % 3
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.ember")
    loaded = models.load_model(tmp_path / "m.ember")
    assert [type(layer).__name__ for layer in loaded.layers][:5] == ["RandomFlip", "RandomRotation", "RandomZoom",
                                                                     "RandomContrast", "CutMix"]
    plain = models.Sequential([layers.Input((12, 10, 3)), layers.Flatten(), layers.Dense(3, activation="softmax")])
    plain.layers[-1].load_state_dict(model.layers[-1].state_dict())
    assert np.allclose(loaded.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)


def test_every_augmentation_layer_is_a_registered_layer():
    assert all(layers.LAYERS[cls.__name__] is cls for cls in AUGMENTATION_LAYERS)


def test_token_augmentation_in_front_of_a_masked_text_model_trains_and_keeps_trimming_padding():
    model = models.Sequential([layers.Input((12,), dtype="int64"), layers.TokenAugmentation(drop_rate=0.2, seed=0),
                               layers.Embedding(50, 8, mask_zero=True), layers.GlobalAveragePooling1D(),
                               layers.Dense(2, activation="softmax")])
    assert model.ignores_padding_length()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (64, 12))
    ids[:, 8:] = 0
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(ids, ids[:, 0] % 2, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
