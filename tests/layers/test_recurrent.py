import pytest
import torch
from torch import nn

from ember import layers, models
from tests.conftest import assert_close
from tests.layers.harness import check_layer

RNNS = [(layers.SimpleRNN, nn.RNN), (layers.LSTM, nn.LSTM), (layers.GRU, nn.GRU)]


def _reference(layer, torch_class):
    ref = torch_class(layer.rnn.input_size, layer.units, batch_first=True)
    ref.load_state_dict(layer.rnn.state_dict())
    return ref


@pytest.mark.parametrize("ember_class, torch_class", RNNS)
def test_matches_torch_with_copied_weights(ember_class, torch_class):
    x = torch.randn(3, 7, 5)
    layer = ember_class(6, return_sequences=True)
    check_layer(layer, (3, 7, 5))
    ref = _reference(layer, torch_class)
    with torch.no_grad():
        expected, _ = ref(x)
        assert_close(layer(x), expected)
        last = ember_class.from_config({**layer.get_config(), "return_sequences": False})
        last(x)
        last.load_state_dict(layer.state_dict())
        assert_close(last(x), expected[:, -1])


@pytest.mark.parametrize("ember_class, torch_class", RNNS)
def test_masked_sequences_equal_their_unpadded_selves(ember_class, torch_class):
    layer = ember_class(4, return_sequences=True)
    x = torch.randn(3, 6, 5)
    lengths = [6, 2, 4]
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    layer.eval()
    with torch.no_grad():
        layer(x)
        padded = layer(x, mask=mask)
        ref = _reference(layer, torch_class)
        for i, n in enumerate(lengths):
            alone, _ = ref(x[i:i + 1, :n])
            assert_close(padded[i, :n], alone[0])
            assert torch.all(padded[i, n:] == 0)
            # padding values never matter
            other = x.clone()
            other[i, n:] = 100.0
            assert_close(layer(other, mask=mask)[i], padded[i])


def test_lstm_last_output_state_and_go_backwards():
    layer = layers.LSTM(4, return_state=True)
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    layer.eval()
    with torch.no_grad():
        out, h, c = layer(x, mask=mask)
        ref = _reference(layer, nn.LSTM)
        seq, (h_ref, c_ref) = ref(x[:1, :3])
        assert_close(out[0], seq[0, -1])
        assert_close(h[0], h_ref[0, 0])
        assert_close(c[0], c_ref[0, 0])
        back = layers.LSTM.from_config({**layer.get_config(), "return_state": False, "go_backwards": True})
        back(x)
        back.load_state_dict(layer.state_dict())
        reversed_seq, _ = ref(x[:1, :3].flip(1))
        assert_close(back(x, mask=mask)[0], reversed_seq[0, -1])


def test_keras_initial_weights():
    layer = layers.LSTM(8)
    layer(torch.randn(1, 2, 3))
    bias = layer.rnn.bias_ih_l0.detach()
    assert torch.all(bias[8:16] == 1) and torch.all(bias[:8] == 0) and torch.all(layer.rnn.bias_hh_l0 == 0)
    recurrent = layer.rnn.weight_hh_l0.detach()[:8]
    assert_close(recurrent @ recurrent.T, torch.eye(8), atol=1e-5, rtol=0)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
def test_bidirectional_matches_torch_bidirectional(merge_mode):
    layer = layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode=merge_mode)
    x = torch.randn(2, 5, 3)
    layer.eval()
    with torch.no_grad():
        out = layer(x)
        ref = nn.GRU(3, 4, batch_first=True, bidirectional=True)
        state = {**layer.forward_layer.rnn.state_dict(),
                 **{f"{k}_reverse": v for k, v in layer.backward_layer.rnn.state_dict().items()}}
        ref.load_state_dict(state)
        expected, _ = ref(x)
        ahead, behind = expected[..., :4], expected[..., 4:]
        merged = {"concat": expected, "sum": ahead + behind, "ave": (ahead + behind) / 2, "mul": ahead * behind}
        assert_close(out, merged[merge_mode])
    check_layer(layers.Bidirectional(layers.LSTM(3)), (2, 4, 5))


def test_left_padding_is_a_clear_error():
    layer = layers.GRU(2)
    with pytest.raises(ValueError, match="right-padded"):
        layer(torch.randn(1, 3, 2), mask=torch.tensor([[False, True, True]]))


def test_keras_sentiment_snippet_trains_on_padded_integer_sequences():
    import numpy as np
    rng = np.random.default_rng(0)
    x = np.zeros((256, 12), dtype="int64")
    y = np.zeros(256, dtype="float32")
    for i in range(256):
        n = rng.integers(2, 12)
        x[i, :n] = rng.integers(1, 50, n)
        y[i] = float((x[i, :n] == 7).any())  # positive iff token 7 occurs: needs the whole sequence
        if i % 2:
            x[i, rng.integers(0, n)] = 7
            y[i] = 1.0
    model = models.Sequential()
    model.add(layers.Embedding(50, 16, mask_zero=True))
    model.add(layers.Bidirectional(layers.LSTM(16)))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.9
    # padding never changes a prediction: the same sequences padded to twice the length
    longer = np.concatenate([x, np.zeros_like(x)], axis=1)
    np.testing.assert_allclose(model.predict(longer, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_embedding_masks_and_global_pooling_respects_them():
    emb = layers.Embedding(10, 3, mask_zero=True)
    ids = torch.tensor([[4, 2, 0, 0], [1, 1, 1, 3]])
    check_layer(layers.Embedding(10, 3), (2, 4), dtype=torch.int64)
    vectors = emb(ids)
    mask = emb.compute_mask(ids)
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    mean = layers.GlobalAveragePooling1D()(vectors, mask=mask)
    assert_close(mean[0], vectors[0, :2].mean(0))
    top = layers.GlobalMaxPooling1D()(vectors, mask=mask)
    assert_close(top[0], vectors[0, :2].amax(0))


def test_masked_bidirectional_sequences_match_torch_packed_bidirectional():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    layer = layers.Bidirectional(layers.GRU(4, return_sequences=True))
    x, lengths = torch.randn(3, 6, 5), torch.tensor([6, 2, 4])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    layer.eval()
    with torch.no_grad():
        layer(x, mask=mask)
        ref = nn.GRU(5, 4, batch_first=True, bidirectional=True)
        forward, backward = layer.forward_layer.rnn.state_dict(), layer.backward_layer.rnn.state_dict()
        ref.load_state_dict({**forward, **{f"{k}_reverse": v for k, v in backward.items()}})
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=6)
        assert_close(layer(x, mask=mask), expected)
