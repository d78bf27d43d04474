"""Encoder–decoder translators: token ids of a source sentence in, scores of the next target token out.

Both models share one vocabulary between source and target (a joint subword tokenizer), whose embedding
table is also the output projection unless `tie_embeddings=False` (tied embeddings, Press & Wolf 2017). Training calls
`model(source, target_in)` (teacher forcing: the target shifted right after [BOS]) and gets logits for every
target step; decoding (`ember.models.decoding`) calls `encode` once and `next_logits` per step, with a cache
so each step costs one token's work.

- `TransformerTranslator`: pre-LayerNorm Transformer (Vaswani et al. 2017; Xiong et al. 2020) built from
  ember's TransformerEncoder/TransformerDecoder blocks, sinusoidal positions (any length).
- `GRUTranslator`: bidirectional GRU encoder, GRU decoder with Luong's global attention (Luong et al. 2015):
  the recurrent baseline.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember import layers
from ember.layers.attention import KVCache
from ember.models.model import Model
from ember.models.registry import register_model

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the ids a translation tokenizer gives its special tokens


class Translator(Model):
    """What both translators share: the tied embedding, the training forward pass and the decoding hooks.

    A subclass builds its layers in `__init__` (arguments stored in `self._config`) and writes `encode`,
    `decode_features` (features of all target steps at once, or of the new ones with a cache), `new_cache`
    and `reorder`.
    """

    input_dtype = torch.int64

    def __init__(self, vocabulary_size: int, embedding_dim: int, *, tie_embeddings: bool = True, name=None):
        super().__init__(name=name)
        if vocabulary_size <= EOS + 1:
            raise ValueError(f"a translator needs a vocabulary beyond its {EOS + 1} special tokens, "
                             f"got vocabulary_size={vocabulary_size}")
        self.vocabulary_size, self.embedding_dim = int(vocabulary_size), int(embedding_dim)
        self.embeddings = nn.Parameter(torch.randn(self.vocabulary_size, self.embedding_dim) * embedding_dim ** -0.5)
        self.tie_embeddings = bool(tie_embeddings)
        if not self.tie_embeddings:  # a separate output projection, initialized as the embedding
            self.output_embeddings = nn.Parameter(torch.randn_like(self.embeddings) * embedding_dim ** -0.5)

    def _finish_building(self):
        """Build the lazy ember layers with one dummy pair, so the weights exist before training or loading."""
        self.eval()
        with torch.no_grad():
            self(torch.tensor([[4, EOS]]), torch.tensor([[BOS, 4]]))
        self.train()

    def forward(self, source, target_in):
        return self.decode(target_in, self.encode(source))

    def decode(self, target, state, cache=None, start=0):
        """(batch, steps, vocabulary) scores of the token after each target step."""
        return self.output_logits(self.decode_features(target, state, cache, start))

    def output_logits(self, features):
        return F.linear(features, self.embeddings if self.tie_embeddings else self.output_embeddings)

    def next_logits(self, prefix, state, cache=None):
        """(batch, vocabulary) scores of the token after `prefix` (batch, steps), [BOS] first. With a cache
        (from `new_cache`) only the last token of `prefix` is new: earlier ones were fed before; without
        one the whole prefix goes through the decoder again (only its last step meets the vocabulary)."""
        if cache is None:
            return self.output_logits(self.decode_features(prefix, state)[:, -1])
        return self.output_logits(self.decode_features(prefix[:, -1:], state, cache, prefix.shape[1] - 1)[:, -1])

    def ignores_padding_length(self) -> bool:
        return True

    def get_config(self) -> dict:
        return {"name": self.name, **self._config}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


class TransformerTranslator(Translator):
    """Pre-LayerNorm Transformer encoder–decoder: `encoder_layers` and `decoder_layers` blocks of `hidden_dim`
    features, `num_heads` heads and an `intermediate_dim` feed-forward layer; token embeddings scaled by
    sqrt(hidden_dim) plus sinusoidal positions.

    >>> model = TransformerTranslator(8000, hidden_dim=256, num_heads=4, intermediate_dim=1024)
    >>> logits = model(source_ids, target_in_ids)           # (batch, target steps, 8000)
    """

    def __init__(self, vocabulary_size, hidden_dim=256, num_heads=4, intermediate_dim=1024, encoder_layers=3,
                 decoder_layers=3, dropout=0.1, attention_dropout=None, tie_embeddings=True, name=None):
        super().__init__(vocabulary_size, hidden_dim, tie_embeddings=tie_embeddings,
                         name=name or "transformer_translator")
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self._config = {"vocabulary_size": vocabulary_size, "hidden_dim": hidden_dim, "num_heads": num_heads,
                        "intermediate_dim": intermediate_dim, "encoder_layers": encoder_layers,
                        "decoder_layers": decoder_layers, "dropout": dropout, "attention_dropout": attention_dropout,
                        "tie_embeddings": tie_embeddings}
        if not 0 <= attention_dropout < 1:
            raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout!r}")
        arguments = {"intermediate_dim": intermediate_dim, "num_heads": num_heads, "dropout": dropout,
                     "normalize_first": True}
        self.positions = layers.SinePositionEncoding()
        self.embedding_dropout = layers.Dropout(dropout)
        self.encoder_blocks = nn.ModuleList(layers.TransformerEncoder(**arguments) for _ in range(encoder_layers))
        self.decoder_blocks = nn.ModuleList(layers.TransformerDecoder(**arguments) for _ in range(decoder_layers))
        self.encoder_norm = layers.LayerNormalization(epsilon=1e-5)
        self.decoder_norm = layers.LayerNormalization(epsilon=1e-5)
        self._finish_building()
        for block in [*self.encoder_blocks, *self.decoder_blocks]:  # dropout on attention weights
            for module in block.modules():
                if isinstance(module, layers.MultiHeadAttention):
                    module.dropout = float(attention_dropout)

    def _embed(self, ids, start=0):
        x = F.embedding(ids, self.embeddings) * math.sqrt(self.embedding_dim)
        return self.embedding_dropout(x + self.positions(x, start=start))

    def encode(self, source) -> dict:
        """{"memory": (batch, steps, hidden_dim), "mask": (batch, steps) True at real tokens}."""
        mask = source != PAD
        x = self._embed(source)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=mask)
        return {"memory": self.encoder_norm(x), "mask": mask}

    def decode_features(self, target, state, cache=None, start=0):
        x = self._embed(target, start)
        for i, block in enumerate(self.decoder_blocks):
            x = block(x, state["memory"], encoder_padding_mask=state["mask"],
                      cache=None if cache is None else cache[i])
        return self.decoder_norm(x)

    def new_cache(self, state) -> list:
        return [block.new_cache() for block in self.decoder_blocks]

    @staticmethod
    def reorder(state, cache, index):
        """The state and cache of batch rows `index` (beam search's survivors, or the unfinished sentences)."""
        state = {key: value.index_select(0, index) for key, value in state.items()}
        if cache is not None:
            for kv in cache:
                for part in kv:
                    part.reorder(index)
        return state, cache


class GRUTranslator(Translator):
    """GRU encoder–decoder with attention: a bidirectional GRU reads the source; a GRU decoder, started
    from the source's mean encoding, reads the target so far; Luong's "general" attention of each decoder
    step over the encoder outputs gives a context, and `tanh(W [context; h])` the output features.

    >>> model = GRUTranslator(8000, embedding_dim=256, units=512)
    """

    def __init__(self, vocabulary_size, embedding_dim=256, units=512, dropout=0.2, tie_embeddings=True, name=None):
        super().__init__(vocabulary_size, embedding_dim, tie_embeddings=tie_embeddings, name=name or "gru_translator")
        self._config = {"vocabulary_size": vocabulary_size, "embedding_dim": embedding_dim, "units": units,
                        "dropout": dropout, "tie_embeddings": tie_embeddings}
        self.units = int(units)
        self.dropout = layers.Dropout(dropout)
        self.encoder = layers.Bidirectional(layers.GRU(units, return_sequences=True))
        self.bridge = layers.Dense(units, activation="tanh")
        self.attention_keys = layers.Dense(units, use_bias=False)  # W_a applied to the encoder outputs, once
        self.decoder = layers.GRU(units, return_sequences=True, return_state=True)
        self.attentional = layers.Dense(units, activation="tanh")
        self.to_embedding = layers.Dense(embedding_dim)
        self._finish_building()

    def encode(self, source) -> dict:
        mask = source != PAD
        outputs = self.encoder(self.dropout(F.embedding(source, self.embeddings)), mask=mask)
        real = mask.unsqueeze(-1).to(outputs.dtype)
        mean = (outputs * real).sum(1) / real.sum(1).clamp(min=1)
        return {"memory": outputs, "keys": self.attention_keys(outputs), "mask": mask,
                "initial": self.bridge(mean)}

    def decode_features(self, target, state, cache=None, start=0):
        hidden = state["initial"] if cache is None or cache["hidden"] is None else cache["hidden"]
        outputs, hidden = self.decoder(self.dropout(F.embedding(target, self.embeddings)), initial_state=[hidden])
        if cache is not None:
            cache["hidden"] = hidden
        scores = outputs @ state["keys"].transpose(1, 2)  # (batch, target steps, source steps)
        scores = scores.masked_fill(~state["mask"][:, None, :], float("-inf"))
        context = torch.softmax(scores, dim=-1) @ state["memory"]
        features = self.attentional(torch.cat([context, outputs], dim=-1))
        return self.to_embedding(self.dropout(features))

    def new_cache(self, state) -> dict:
        return {"hidden": None}

    @staticmethod
    def reorder(state, cache, index):
        state = {key: value.index_select(0, index) for key, value in state.items()}
        if cache is not None and cache["hidden"] is not None:
            cache["hidden"] = cache["hidden"].index_select(0, index)
        return state, cache


TRANSLATORS = {cls.__name__: cls for cls in (TransformerTranslator, GRUTranslator)}


@register_model("transformer_translator")
def transformer_translator(vocabulary_size, hidden_dim=256, num_heads=4, intermediate_dim=1024, encoder_layers=3,
                           decoder_layers=3, dropout=0.1, attention_dropout=None,
                           tie_embeddings=True) -> TransformerTranslator:
    """Pre-LayerNorm Transformer encoder–decoder, embeddings tied by default (see TransformerTranslator)."""
    return TransformerTranslator(vocabulary_size, hidden_dim, num_heads, intermediate_dim, encoder_layers,
                                 decoder_layers, dropout, attention_dropout, tie_embeddings)


@register_model("gru_translator")
def gru_translator(vocabulary_size, embedding_dim=256, units=512, dropout=0.2, tie_embeddings=True) -> GRUTranslator:
    """Bidirectional-GRU encoder, GRU decoder with Luong attention (see GRUTranslator)."""
    return GRUTranslator(vocabulary_size, embedding_dim, units, dropout, tie_embeddings)


__all__ = ["Translator", "TransformerTranslator", "GRUTranslator", "KVCache", "TRANSLATORS"]
