"""Translators and their decoding: caches give the same numbers as recomputing, beam search beats greedy
where greedy is short-sighted, and odd inputs decode without crashing."""
import math

import pytest
import torch

from ember import models
from ember.layers import MultiHeadAttention, SinePositionEncoding, TransformerDecoder
from ember.layers.attention import KVCache
from ember.models import decoding
from ember.models.translation import BOS, EOS, PAD, GRUTranslator, TransformerTranslator
from tests.conftest import assert_close

TRANSLATORS = [lambda: TransformerTranslator(60, hidden_dim=32, num_heads=4, intermediate_dim=64, encoder_layers=2,
                                             decoder_layers=2),
               lambda: GRUTranslator(60, embedding_dim=16, units=24, tie_embeddings=False)]


def sources(batch=5, steps=9, vocabulary=60):
    """Right-padded source ids ending in [EOS], of different lengths."""
    ids = torch.randint(4, vocabulary, (batch, steps))
    for row, length in enumerate(torch.linspace(2, steps, batch).long().tolist()):
        ids[row, length - 1] = EOS
        ids[row, length:] = PAD
    return ids


def test_cached_self_attention_equals_causal_attention_over_the_whole_sequence():
    attention = MultiHeadAttention(num_heads=2, key_dim=8)
    x = torch.randn(3, 6, 16)
    full = attention(x, x, use_causal_mask=True)
    cache = KVCache()
    steps = [attention(x[:, t:t + 1], x[:, t:t + 1], use_causal_mask=True, cache=cache) for t in range(6)]
    assert_close(torch.cat(steps, dim=1), full)
    assert len(cache) == 6


def test_decoder_block_with_a_cache_equals_the_full_decoder():
    block = TransformerDecoder(intermediate_dim=32, num_heads=2, normalize_first=True)
    target, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    memory_mask = torch.ones(2, 7, dtype=torch.bool)
    memory_mask[1, 4:] = False
    block.eval()
    full = block(target, memory, encoder_padding_mask=memory_mask)
    cache = block.new_cache()
    steps = [block(target[:, t:t + 1], memory, encoder_padding_mask=memory_mask, cache=cache) for t in range(5)]
    assert_close(torch.cat(steps, dim=1), full)


def test_sine_position_encoding_is_vaswanis_formula_at_any_offset():
    signal = SinePositionEncoding()(torch.zeros(1, 3, 6), start=100)
    for position in range(3):
        for i in range(3):
            angle = (100 + position) / 10000 ** (2 * i / 6)
            assert signal[0, position, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert signal[0, position, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


@pytest.mark.parametrize("build", TRANSLATORS)
def test_next_logits_with_a_cache_equal_the_full_decoder(build):
    model = build().eval()
    source, target = sources(), torch.randint(4, 60, (5, 6))
    target[:, 0] = BOS
    with torch.no_grad():
        state = model.encode(source)
        full = model.decode(target, state)
        cache = model.new_cache(state)
        steps = torch.stack([model.next_logits(target[:, :t + 1], state, cache) for t in range(6)], dim=1)
    assert_close(steps, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("build", TRANSLATORS)
def test_greedy_and_beam_search_give_the_same_output_with_and_without_the_cache(build):
    model, source = build(), sources()
    assert decoding.greedy_search(model, source) == decoding.greedy_search(model, source, use_cache=False)
    assert decoding.beam_search(model, source, beam_size=3) == \
        decoding.beam_search(model, source, beam_size=3, use_cache=False)
    assert decoding.beam_search(model, source, beam_size=1) == decoding.greedy_search(model, source)


@pytest.mark.parametrize("build", TRANSLATORS)
def test_every_sentence_stops_at_its_length_limit(build):
    model, source = build(), sources()
    limits = decoding.length_limits(source)
    assert limits.tolist() == [math.ceil(1.5 * n) + 10 for n in (source != PAD).sum(1).tolist()]
    for result in (decoding.greedy_search(model, source, max_length=4),
                   decoding.beam_search(model, source, beam_size=2, max_length=4)):
        assert len(result) == len(source) and all(len(ids) <= 4 for ids in result)
        assert all(token not in (PAD, BOS, EOS) for ids in result for token in ids)


class ShortSighted:
    """A fixed two-token language: after [BOS], A (0.6) or B (0.4); after A, A 0.36, B 0.34, [EOS] 0.3 (a
    ramble); after B, [EOS]. Greedy takes A and rambles; the most probable sentence is "B" (0.4)."""
    A, B = 4, 5
    device = torch.device("cpu")

    def eval(self):
        return self

    def encode(self, source):
        return {"source": source}

    def new_cache(self, state):
        return None

    def next_logits(self, prefix, state, cache=None):
        table = {BOS: {self.A: 0.6, self.B: 0.4}, self.A: {self.A: 0.36, self.B: 0.34, EOS: 0.3},
                 self.B: {EOS: 1.0}}
        probs = torch.full((len(prefix), 6), 1e-9)
        for row, last in enumerate(prefix[:, -1].tolist()):
            for token, p in table[last].items():
                probs[row, token] = p
        return probs.log()

    @staticmethod
    def reorder(state, cache, index):
        return {"source": state["source"].index_select(0, index)}, cache


def test_beam_search_finds_the_more_probable_sentence_that_greedy_misses():
    model, source = ShortSighted(), torch.tensor([[4, EOS]])
    assert decoding.greedy_search(model, source, max_length=6) == [[4] * 6]
    assert decoding.beam_search(model, source, beam_size=2, length_penalty=0.0, max_length=6) == [[5]]


def test_translate_ids_keeps_the_input_order_across_batches():
    model, source = TRANSLATORS[0](), sources(batch=7)
    whole = decoding.greedy_search(model, source, max_length=5)
    assert decoding.translate_ids(model, source, max_length=5, batch_size=3) == whole


@pytest.mark.parametrize("build", TRANSLATORS)
def test_translators_save_and_load_with_identical_outputs(build, tmp_path):
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "m.ember")
    loaded = models.load_model(tmp_path / "m.ember")
    source, target = sources(), torch.full((5, 3), BOS)
    model.eval()
    with torch.no_grad():
        assert_close(loaded(source, target), model(source, target))
    assert type(loaded) is type(model) and loaded.count_params() == model.count_params()
    assert loaded.tie_embeddings == model.tie_embeddings
    assert ("output_embeddings" in dict(model.named_parameters())) is not model.tie_embeddings
