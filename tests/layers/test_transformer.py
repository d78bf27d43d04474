import numpy as np
import pytest
import torch
from torch import nn

from ember import layers, models
from tests.conftest import assert_close
from tests.layers.harness import check_layer

BATCH, STEPS, FEATURES, HEADS, INTERMEDIATE = 3, 6, 8, 2, 16
LENGTHS = [6, 2, 4]


def _padding_mask(lengths=LENGTHS, steps=STEPS):
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def _copy_attention(ours, theirs: nn.MultiheadAttention):
    theirs.in_proj_weight.copy_(torch.cat([ours.query_dense.weight, ours.key_dense.weight, ours.value_dense.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.query_dense.bias, ours.key_dense.bias, ours.value_dense.bias]))
    theirs.out_proj.weight.copy_(ours.output_dense.weight)
    theirs.out_proj.bias.copy_(ours.output_dense.bias)


def _copy_norm(ours, theirs: nn.LayerNorm):
    theirs.weight.copy_(ours.norm.gamma)
    theirs.bias.copy_(ours.norm.beta)


def _copy_feed_forward(ours, ref):
    ref.linear1.weight.copy_(ours.intermediate.linear.weight)
    ref.linear1.bias.copy_(ours.intermediate.linear.bias)
    ref.linear2.weight.copy_(ours.output_dense.linear.weight)
    ref.linear2.bias.copy_(ours.output_dense.linear.bias)


def _randomize_norms(block):
    with torch.no_grad():  # so that copying the wrong LayerNorm would show
        for name, p in block.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.randn_like(p))


def _encoder_and_reference(normalize_first=False):
    encoder = layers.TransformerEncoder(INTERMEDIATE, HEADS, normalize_first=normalize_first)
    encoder.eval()
    with torch.no_grad():
        encoder(torch.randn(1, STEPS, FEATURES))
    _randomize_norms(encoder)
    ref = nn.TransformerEncoderLayer(FEATURES, HEADS, INTERMEDIATE, dropout=0.0, batch_first=True,
                                     layer_norm_eps=1e-5, norm_first=normalize_first).eval()
    with torch.no_grad():
        _copy_attention(encoder.attention, ref.self_attn)
        _copy_feed_forward(encoder.feed_forward, ref)
        _copy_norm(encoder.attention_block, ref.norm1)
        _copy_norm(encoder.feed_forward_block, ref.norm2)
    return encoder, ref


@pytest.mark.parametrize("normalize_first", [False, True])
def test_encoder_matches_torch_encoder_layer(normalize_first):
    encoder, ref = _encoder_and_reference(normalize_first)
    x, padding = torch.randn(BATCH, STEPS, FEATURES), _padding_mask()
    with torch.no_grad():
        assert_close(encoder(x), ref(x))
        ours, theirs = encoder(x, padding_mask=padding), ref(x, src_key_padding_mask=~padding)
        assert_close(ours[padding], theirs[padding])
        assert_close(encoder(x, mask=padding), ours)  # the mask Sequential hands over


def test_encoder_padding_never_changes_real_steps():
    encoder, _ = _encoder_and_reference()
    x, padding = torch.randn(BATCH, STEPS, FEATURES), _padding_mask()
    with torch.no_grad():
        padded = encoder(x, padding_mask=padding)
        for i, n in enumerate(LENGTHS):
            assert_close(padded[i, :n], encoder(x[i:i + 1, :n])[0])


def test_decoder_matches_torch_decoder_layer():
    decoder = layers.TransformerDecoder(INTERMEDIATE, HEADS)
    decoder.eval()
    target, memory = torch.randn(BATCH, STEPS, FEATURES), torch.randn(BATCH, 5, FEATURES)
    with torch.no_grad():
        decoder(target, memory)
    _randomize_norms(decoder)
    ref = nn.TransformerDecoderLayer(FEATURES, HEADS, INTERMEDIATE, dropout=0.0, batch_first=True).eval()
    with torch.no_grad():
        _copy_attention(decoder.self_attention, ref.self_attn)
        _copy_attention(decoder.cross_attention, ref.multihead_attn)
        _copy_feed_forward(decoder.feed_forward, ref)
        for ours, theirs in [(decoder.self_attention_block, ref.norm1), (decoder.cross_attention_block, ref.norm2),
                             (decoder.feed_forward_block, ref.norm3)]:
            _copy_norm(ours, theirs)
        target_padding, memory_padding = _padding_mask(), _padding_mask([5, 3, 1], 5)
        causal = ~torch.ones(STEPS, STEPS, dtype=torch.bool).tril()
        ours = decoder(target, memory, decoder_padding_mask=target_padding, encoder_padding_mask=memory_padding)
        theirs = ref(target, memory, tgt_mask=causal, tgt_key_padding_mask=~target_padding,
                     memory_key_padding_mask=~memory_padding)
        assert_close(ours[target_padding], theirs[target_padding])
        # causal: a step never sees the future
        changed = target.clone()
        changed[:, 3:] += 1.0
        assert_close(decoder(changed, memory)[:, :3], decoder(target, memory)[:, :3])


def test_decoder_only_block_and_layer_life():
    check_layer(layers.TransformerDecoder(INTERMEDIATE, HEADS, dropout=0.1), (BATCH, STEPS, FEATURES))
    check_layer(layers.TransformerEncoder(INTERMEDIATE, HEADS, dropout=0.1, activation="gelu"),
                (BATCH, STEPS, FEATURES))
    with pytest.raises(ValueError, match="heads"):
        layers.TransformerEncoder(INTERMEDIATE, 3)(torch.randn(1, 2, FEATURES))


def test_positional_embedding_adds_a_position_vector_and_masks_padding():
    embedding = layers.PositionalEmbedding(sequence_length=5, input_dim=10, output_dim=4)
    ids = torch.tensor([[3, 3, 0, 0, 0], [1, 2, 3, 4, 5]])
    out = check_layer(embedding, (2, 5), dtype=torch.long)
    assert out.shape == (2, 5, 4)
    with torch.no_grad():
        out = embedding(ids)
        assert_close(out[0, 0] - embedding.position_embeddings[0], out[0, 1] - embedding.position_embeddings[1])
        assert_close(embedding(ids[:, :3]), out[:, :3])  # shorter inputs take the first positions
    assert torch.equal(embedding.compute_mask(ids), ids != 0)
    with pytest.raises(ValueError, match="longer than its sequence_length"):
        embedding(torch.ones(1, 6, dtype=torch.long))


def test_time_distributed_applies_one_layer_to_every_step():
    inner = layers.Conv2D(4, 3)
    wrapper = layers.TimeDistributed(inner)
    out = check_layer(wrapper, (2, 3, 6, 6, 1))
    assert out.shape == (2, 3, 4, 4, 4) and wrapper.output_shape == (None, 3, 4, 4, 4)
    x = torch.randn(2, 3, 6, 6, 1)
    with torch.no_grad():
        assert_close(wrapper(x)[:, 1], inner(x[:, 1]))
    with pytest.raises(ValueError, match="unknown layer class 'os.system'"):
        layers.TimeDistributed({"class_name": "os.system", "config": {}})


def test_transformer_sentiment_model_trains_saves_and_ignores_padding(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 30, (256, 12))
    lengths = rng.integers(2, 13, 256)
    ids[np.arange(12)[None, :] >= lengths[:, None]] = 0
    labels = (ids == 3).any(axis=1).astype("int64")  # does the text contain token 3?
    model = models.Sequential([
        layers.PositionalEmbedding(12, 30, 16),
        layers.TransformerEncoder(32, 2),
        layers.GlobalAveragePooling1D(),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, labels, epochs=25, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    path = tmp_path / "transformer.ember"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0), atol=1e-6)
    # a text run alone, unpadded, scores as it does inside the padded batch: attention and pooling skip padding
    short = int(np.argmin(lengths))
    alone = ids[short:short + 1, :lengths[short]]
    with torch.no_grad():
        assert_close(model(torch.from_numpy(alone)), model(torch.from_numpy(ids[short:short + 1])))
