"""Batches of token ids are cut to their longest text when the model masks padding (and only then)."""
import numpy as np
import pytest
import torch

from ember import layers, models
from ember.data.arrays import ArrayData, trim_padding


def _ids(n=64, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 50, (n, steps))
    lengths = rng.integers(0, steps // 2, n)  # short texts, long padding; some empty
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    return ids, (lengths % 2).astype("int64")


def test_trim_padding_cuts_after_the_last_real_column_only():
    ids = torch.tensor([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]])
    assert torch.equal(trim_padding(ids), ids[:, :2])
    assert trim_padding(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 1)  # empty texts keep one step
    images = torch.zeros(2, 5)
    assert trim_padding(images) is images  # floats are not token ids
    data = ArrayData(np.array([[3, 4, 0, 0], [5, 0, 0, 0], [6, 7, 8, 0]]), np.array([0, 1, 0]))
    assert [xs[0].shape[1] for xs, _, _ in data.batches(2, trim=True)] == [2, 3]
    assert [xs[0].shape[1] for xs, _, _ in data.batches(2)] == [4, 4]


def bilstm(pooling=None, **lstm):
    return models.Sequential([
        layers.Embedding(50, 8, mask_zero=True),
        layers.Bidirectional(layers.LSTM(6, return_sequences=pooling is not None, **lstm)),
        *([pooling] if pooling is not None else []),
        layers.Dense(2, activation="softmax"),
    ])


def transformer():
    return models.Sequential([
        layers.PositionalEmbedding(20, 50, 8), layers.TransformerEncoder(16, 2), layers.Dropout(0.1),
        layers.GlobalMaxPooling1D(), layers.Dense(2, activation="softmax"),
    ])


@pytest.mark.parametrize("make", [bilstm, lambda: bilstm(layers.GlobalAveragePooling1D()), transformer])
def test_masked_models_trim_and_give_the_same_outputs(make):
    model = make()
    assert model.ignores_padding_length()
    ids, labels = _ids()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ids, labels, epochs=1, batch_size=16, verbose=0)
    with torch.no_grad():
        untrimmed = model(torch.from_numpy(ids)).numpy()  # the whole padded batch at once
    np.testing.assert_allclose(model.predict(ids, batch_size=16, verbose=0), untrimmed, atol=1e-5)


@pytest.mark.parametrize("stack", [
    [layers.Embedding(50, 8), layers.LSTM(4)],                                   # no mask: padding is data
    [layers.Embedding(50, 8, mask_zero=True), layers.Flatten(), layers.Dense(2)],  # the length is in the weights
    [layers.Embedding(50, 8, mask_zero=True), layers.LSTM(4, return_sequences=True)],   # per-step outputs
    [layers.Embedding(50, 8, mask_zero=True), layers.LSTM(4, return_sequences=True, go_backwards=True),
     layers.GlobalAveragePooling1D()],
    [layers.Embedding(50, 8, mask_zero=True), layers.Conv1D(4, 3), layers.GlobalMaxPooling1D()],
])
def test_models_whose_output_depends_on_the_padded_length_keep_their_batches(stack):
    assert not models.Sequential(stack).ignores_padding_length()
