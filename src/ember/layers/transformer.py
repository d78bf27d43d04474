"""Transformer building blocks (Vaswani et al. 2017) with KerasHub's arguments:
PositionalEmbedding (token + learned position), SinePositionEncoding (fixed, any length),
TransformerEncoder and TransformerDecoder (with key/value caches for decoding one step at a time).

The blocks are post-norm by default (`normalize_first=False`, as the paper and KerasHub); padding masks
come from the embedding (`mask_zero`) through Sequential, or explicitly as `padding_mask=`.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.layers.attention import KVCache, MultiHeadAttention
from ember.layers.base import Layer
from ember.layers.core import Dense, Dropout
from ember.layers.initializers import initialize
from ember.layers.normalization import LayerNormalization


class PositionalEmbedding(Layer):
    """Token embedding plus a learned embedding of each position, `output_dim` wide.

    Index 0 is padding when `mask_zero=True` (the default here, as in Chollet's Deep Learning with Python);
    the mask then flows to the Transformer blocks and pooling. `sequence_length` is the longest input it
    takes (default: the length of the first input it sees).

    >>> layers.PositionalEmbedding(sequence_length=64, input_dim=20000, output_dim=128)
    """

    def __init__(self, sequence_length=None, input_dim=None, output_dim=None, mask_zero=True,
                 embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if input_dim is None or output_dim is None:
            raise ValueError("PositionalEmbedding needs input_dim (vocabulary size) and output_dim")
        self.sequence_length = int(sequence_length) if sequence_length is not None else None
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.mask_zero, self.embeddings_initializer = bool(mask_zero), embeddings_initializer

    def build(self, input_shape):
        if self.sequence_length is None:
            self.sequence_length = int(input_shape[1])
        self.token_embeddings = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        self.position_embeddings = nn.Parameter(torch.empty(self.sequence_length, self.output_dim))
        initialize(self.token_embeddings, self.embeddings_initializer)
        initialize(self.position_embeddings, self.embeddings_initializer)

    def forward(self, ids):
        steps = ids.shape[1]
        if steps > self.sequence_length:
            raise ValueError(f"layer {self.name!r}: input of {steps} steps is longer than its sequence_length "
                             f"{self.sequence_length}")
        ids = ids if not ids.is_floating_point() else ids.long()
        return F.embedding(ids, self.token_embeddings) + self.position_embeddings[:steps]

    def compute_mask(self, ids, mask=None):
        return ids != 0 if self.mask_zero else None

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length, "input_dim": self.input_dim,
                "output_dim": self.output_dim, "mask_zero": self.mask_zero,
                "embeddings_initializer": self.embeddings_initializer}


class SinePositionEncoding(Layer):
    """The fixed sinusoidal position signal of Vaswani et al. for (batch, steps, features) inputs, for any
    number of steps: add it to the token embeddings. `start` shifts the positions (the next step when
    decoding one step at a time).

    >>> x = embeddings + layers.SinePositionEncoding()(embeddings)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)

    def forward(self, inputs, start: int = 0):
        steps, features = inputs.shape[1], inputs.shape[-1]
        position = torch.arange(start, start + steps, device=inputs.device, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, features, 2, device=inputs.device, dtype=torch.float32)
                         * (-math.log(self.max_wavelength) / features))
        signal = torch.zeros(steps, features, device=inputs.device)
        signal[:, 0::2] = torch.sin(position * rate)
        signal[:, 1::2] = torch.cos(position * rate[:features // 2])
        return signal.to(inputs.dtype).expand(inputs.shape[0], steps, features)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


class _FeedForward(nn.Module):
    """Dense(intermediate_dim, activation) -> Dense(hidden_dim) -> dropout: the position-wise block."""

    def __init__(self, intermediate_dim, hidden_dim, activation, dropout, initializers):
        super().__init__()
        self.intermediate = Dense(intermediate_dim, activation=activation, **initializers)
        self.output_dense = Dense(hidden_dim, **initializers)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.output_dense(self.intermediate(x)))


class _Sublayer(nn.Module):
    """`x + sublayer(x)` with the LayerNormalization after (post-norm) or before (pre-norm)."""

    def __init__(self, normalize_first, epsilon):
        super().__init__()
        self.normalize_first = normalize_first
        self.norm = LayerNormalization(epsilon=epsilon)

    def forward(self, x, sublayer):
        if self.normalize_first:
            return x + sublayer(self.norm(x))
        return self.norm(x + sublayer(x))


class _Block(Layer):
    """Arguments and sublayers shared by the encoder and decoder blocks."""

    supports_masking = True

    def __init__(self, intermediate_dim, num_heads, dropout=0.0, activation="relu", layer_norm_epsilon=1e-5,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", normalize_first=False, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim, self.num_heads = int(intermediate_dim), int(num_heads)
        self.dropout, self.activation, self.layer_norm_epsilon = float(dropout), activation, float(layer_norm_epsilon)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.normalize_first = bool(normalize_first)

    def _attention(self, hidden_dim) -> MultiHeadAttention:
        if hidden_dim % self.num_heads:
            raise ValueError(f"layer {self.name!r}: {hidden_dim} features do not split into {self.num_heads} heads")
        return MultiHeadAttention(self.num_heads, hidden_dim // self.num_heads, dropout=self.dropout,
                                  **self._initializers())

    def _initializers(self) -> dict:
        return {"kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer}

    def _sublayer(self) -> _Sublayer:
        return _Sublayer(self.normalize_first, self.layer_norm_epsilon)

    def _feed_forward(self, hidden_dim) -> _FeedForward:
        return _FeedForward(self.intermediate_dim, hidden_dim, self.activation, self.dropout, self._initializers())

    def get_config(self):
        return {**super().get_config(), "intermediate_dim": self.intermediate_dim, "num_heads": self.num_heads,
                "dropout": self.dropout, "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon, **self._initializers(),
                "normalize_first": self.normalize_first}


class TransformerEncoder(_Block):
    """Self-attention then a feed-forward block, each with dropout, a residual and LayerNormalization.

    Heads split the input features (`key_dim = features // num_heads`), as KerasHub does.

    >>> layers.TransformerEncoder(intermediate_dim=256, num_heads=4)
    """

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.attention = self._attention(hidden_dim)
        self.attention_dropout = Dropout(self.dropout)
        self.attention_block, self.feed_forward_block = self._sublayer(), self._sublayer()
        self.feed_forward = self._feed_forward(hidden_dim)

    def forward(self, inputs, mask=None, padding_mask=None, attention_mask=None):
        padding_mask = padding_mask if padding_mask is not None else mask

        def attend(x):
            return self.attention_dropout(self.attention(x, x, key_mask=padding_mask, attention_mask=attention_mask))
        x = self.attention_block(inputs, attend)
        return self.feed_forward_block(x, self.feed_forward)


class TransformerDecoder(_Block):
    """Causal self-attention, then cross-attention to `encoder_sequence` (when given), then feed-forward.

    Without `encoder_sequence` it is a decoder-only (GPT-style) block. To decode one step at a time, give
    `cache=decoder.new_cache()` and only the new steps: earlier steps' keys and values are kept in it.

    >>> decoder = layers.TransformerDecoder(intermediate_dim=256, num_heads=4)
    >>> out = decoder(targets, encoder_outputs, decoder_padding_mask=..., encoder_padding_mask=...)
    """

    @staticmethod
    def new_cache() -> tuple[KVCache, KVCache]:
        """(self-attention cache, cross-attention cache), both empty."""
        return KVCache(), KVCache(static=True)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.self_attention, self.cross_attention = self._attention(hidden_dim), self._attention(hidden_dim)
        self.attention_dropout = Dropout(self.dropout)
        self.self_attention_block, self.cross_attention_block = self._sublayer(), self._sublayer()
        self.feed_forward_block = self._sublayer()
        self.feed_forward = self._feed_forward(hidden_dim)

    def forward(self, decoder_sequence, encoder_sequence=None, mask=None, decoder_padding_mask=None,
                decoder_attention_mask=None, encoder_padding_mask=None, encoder_attention_mask=None,
                use_causal_mask=True, cache: tuple[KVCache, KVCache] | None = None):
        own_mask = decoder_padding_mask if decoder_padding_mask is not None else mask
        if cache is not None and (own_mask is not None or decoder_attention_mask is not None):
            raise ValueError(f"layer {self.name!r}: a decoder mask covers only the new steps, not the cached ones; "
                             "decode one step at a time without decoder_padding_mask/decoder_attention_mask")
        self_cache, cross_cache = cache if cache is not None else (None, None)

        def attend_to_self(x):
            return self.attention_dropout(self.self_attention(
                x, x, key_mask=own_mask, attention_mask=decoder_attention_mask, use_causal_mask=use_causal_mask,
                cache=self_cache))

        def attend_to_encoder(x):
            return self.attention_dropout(self.cross_attention(
                x, encoder_sequence, key_mask=encoder_padding_mask, attention_mask=encoder_attention_mask,
                cache=cross_cache))
        x = self.self_attention_block(decoder_sequence, attend_to_self)
        if encoder_sequence is not None:
            x = self.cross_attention_block(x, attend_to_encoder)
        return self.feed_forward_block(x, self.feed_forward)



class BertEmbedding(Layer):
    """BERT's input embedding: token + learned position + segment (all segment 0), then LayerNormalization
    and dropout. Index 0 is padding (BERT's [PAD]); its mask flows to the encoder blocks and pooling.
    `from_pretrained` fills it from a checkpoint's `embeddings.*` tensors.

    >>> layers.BertEmbedding(vocabulary_size=30522, hidden_dim=384, max_positions=512)
    """

    supports_masking = True

    def __init__(self, vocabulary_size, hidden_dim, max_positions=512, type_vocabulary_size=2,
                 layer_norm_epsilon=1e-12, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.hidden_dim = int(vocabulary_size), int(hidden_dim)
        self.max_positions, self.type_vocabulary_size = int(max_positions), int(type_vocabulary_size)
        self.layer_norm_epsilon, self.dropout = float(layer_norm_epsilon), float(dropout)

    def build(self, input_shape):
        self.token_embeddings = nn.Embedding(self.vocabulary_size, self.hidden_dim)
        self.position_embeddings = nn.Embedding(self.max_positions, self.hidden_dim)
        self.type_embeddings = nn.Embedding(self.type_vocabulary_size, self.hidden_dim)
        for table in (self.token_embeddings, self.position_embeddings, self.type_embeddings):
            nn.init.trunc_normal_(table.weight, std=0.02)  # BERT's initializer_range
        self.norm = LayerNormalization(epsilon=self.layer_norm_epsilon)
        self.embedding_dropout = Dropout(self.dropout)

    def forward(self, ids):
        steps = ids.shape[1]
        if steps > self.max_positions:
            raise ValueError(f"layer {self.name!r}: input of {steps} tokens is longer than its {self.max_positions} "
                             "positions")
        ids = ids if not ids.is_floating_point() else ids.long()
        x = self.token_embeddings(ids) + self.position_embeddings.weight[:steps] + self.type_embeddings.weight[0]
        return self.embedding_dropout(self.norm(x))

    def compute_mask(self, ids, mask=None):
        return ids != 0

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim,
                "max_positions": self.max_positions, "type_vocabulary_size": self.type_vocabulary_size,
                "layer_norm_epsilon": self.layer_norm_epsilon, "dropout": self.dropout}


class FirstTokenPooling(Layer):
    """(batch, steps, features) -> (batch, features): the first step, BERT's [CLS] token."""

    supports_masking = True

    def forward(self, x, mask=None):
        return x[:, 0]

    def compute_mask(self, x, mask=None):
        return None
