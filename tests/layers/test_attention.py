import pytest
import torch
from torch import nn

from ember import layers
from ember.layers.attention import causal_mask
from tests.conftest import assert_close

BATCH, STEPS, FEATURES, HEADS = 3, 6, 8, 2
LENGTHS = [6, 2, 4]


def _padding_mask(lengths=LENGTHS, steps=STEPS):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def _built(attention, query, value=None):
    attention.eval()
    with torch.no_grad():
        attention(query, query if value is None else value)
    return attention


def _torch_reference(attention) -> nn.MultiheadAttention:
    """nn.MultiheadAttention holding the same weights (it needs key_dim * heads == features)."""
    ref = nn.MultiheadAttention(FEATURES, attention.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attention.query_dense.weight, attention.key_dense.weight,
                                            attention.value_dense.weight]))
        ref.in_proj_bias.copy_(torch.cat([attention.query_dense.bias, attention.key_dense.bias,
                                          attention.value_dense.bias]))
        ref.out_proj.weight.copy_(attention.output_dense.weight)
        ref.out_proj.bias.copy_(attention.output_dense.bias)
    return ref.eval()


def test_layer_life_and_keras_shapes():
    attention = layers.MultiHeadAttention(num_heads=HEADS, key_dim=5, value_dim=3, output_shape=7)
    x = torch.randn(BATCH, STEPS, FEATURES, requires_grad=True)
    out = attention(x, x)
    assert out.shape == (BATCH, STEPS, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in attention.parameters())
    clone = layers.LAYERS["MultiHeadAttention"].from_config(attention.get_config())
    assert clone.get_config() == attention.get_config()
    _built(clone, x.detach()).load_state_dict(attention.state_dict())
    attention.eval()
    with torch.no_grad():
        assert_close(clone(x, x), attention(x, x))
    # Keras's EinsumDense kernel fans: (features, heads, key_dim) -> limit sqrt(6 / (features*heads + features*key_dim))
    limit = (6 / (FEATURES * HEADS + FEATURES * 5)) ** 0.5
    assert attention.query_dense.weight.abs().max() <= limit
    assert attention.query_dense.weight.abs().max() > 0.8 * limit


def test_matches_torch_multihead_attention_with_copied_weights():
    query, value = torch.randn(BATCH, 4, FEATURES), torch.randn(BATCH, STEPS, FEATURES)
    attention = _built(layers.MultiHeadAttention(num_heads=HEADS, key_dim=FEATURES // HEADS), query, value)
    ref = _torch_reference(attention)
    with torch.no_grad():
        out, scores = attention(query, value, return_attention_scores=True)
        expected, expected_scores = ref(query, value, value, average_attn_weights=False)
        assert_close(out, expected)
        assert_close(scores, expected_scores)
        assert_close(attention(query, value), expected)  # the SDPA path


def test_padding_and_causal_masks_match_torch():
    x = torch.randn(BATCH, STEPS, FEATURES)
    attention = _built(layers.MultiHeadAttention(num_heads=HEADS, key_dim=FEATURES // HEADS), x)
    ref = _torch_reference(attention)
    padding = _padding_mask()
    with torch.no_grad():
        out, scores = attention(x, x, value_mask=padding, use_causal_mask=True, return_attention_scores=True)
        expected, expected_scores = ref(x, x, x, key_padding_mask=~padding, attn_mask=~causal_mask(STEPS, STEPS),
                                        average_attn_weights=False)
        assert_close(attention(x, x, value_mask=padding, use_causal_mask=True), out)
        for i, n in enumerate(LENGTHS):
            assert_close(out[i, :n], expected[i, :n])
            assert_close(scores[i, :, :n], expected_scores[i, :, :n])


def test_explicit_attention_mask_equals_key_mask():
    x = torch.randn(BATCH, STEPS, FEATURES)
    attention = _built(layers.MultiHeadAttention(num_heads=HEADS, key_dim=3), x)
    padding = _padding_mask()
    with torch.no_grad():
        by_key = attention(x, x, key_mask=padding)
        by_matrix = attention(x, x, attention_mask=padding[:, None, :].expand(-1, STEPS, -1))
    assert_close(by_key, by_matrix)


def test_padding_never_changes_a_real_steps_output():
    x = torch.randn(BATCH, STEPS, FEATURES)
    attention = _built(layers.MultiHeadAttention(num_heads=HEADS, key_dim=3), x)
    padding = _padding_mask()
    with torch.no_grad():
        padded = attention(x, x, query_mask=padding, value_mask=padding)
        for i, n in enumerate(LENGTHS):
            alone = attention(x[i:i + 1, :n], x[i:i + 1, :n])
            assert_close(padded[i, :n], alone[0])
        noisy = x.clone()
        noisy[~padding] = 1e3
        assert_close(attention(noisy, noisy, value_mask=padding)[padding], padded[padding])


def test_a_query_with_no_allowed_key_gets_zeros_not_nan():
    x = torch.randn(2, 3, FEATURES)
    attention = _built(layers.MultiHeadAttention(num_heads=HEADS, key_dim=3, use_bias=False), x)
    nothing = torch.tensor([[False, False, False], [True, True, False]])
    with torch.no_grad():
        out, scores = attention(x, x, value_mask=nothing, return_attention_scores=True)
        assert torch.isfinite(out).all() and torch.all(out[0] == 0)
        assert torch.all(scores[0] == 0)
        assert_close(attention(x, x, value_mask=nothing), out)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="attention_axes"):
        layers.MultiHeadAttention(2, 4, attention_axes=(1, 2))
    with pytest.raises(ValueError, match="dropout"):
        layers.MultiHeadAttention(2, 4, dropout=1.5)
