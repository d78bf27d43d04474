"""MultiHeadAttention with Keras's arguments and call signature, computed by `F.scaled_dot_product_attention`.

Masks are booleans, True where attention is allowed (Keras's convention): `attention_mask` is (batch, T, S);
`query_mask`/`value_mask`/`key_mask` are (batch, T) or (batch, S) padding masks; `use_causal_mask` lets step t
see steps <= t only. A query that may attend to nothing (all its keys masked) gets zeros from the attention.

For decoding one step at a time, pass a `KVCache`: the keys and values of earlier steps are kept there
instead of being computed again from the whole prefix.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ember.layers.base import Layer
from ember.layers.initializers import initialize


def _keras_dense(in_features, out_features, kernel_layout, to_weight, initializer, bias_initializer,
                 use_bias) -> nn.Linear:
    """An nn.Linear initialized as Keras initializes an EinsumDense kernel: drawn in `kernel_layout`, on which
    torch's fan rule gives Keras's fans, then arranged by `to_weight` into the (out, in) weight."""
    linear = nn.Linear(in_features, out_features, bias=use_bias)
    kernel = torch.empty(kernel_layout)
    initialize(kernel, initializer)
    with torch.no_grad():
        linear.weight.copy_(to_weight(kernel))
    if use_bias:
        initialize(linear.bias, bias_initializer)
    return linear


def _projection(in_features, heads, head_dim, *init) -> nn.Linear:
    """(…, in_features) -> (…, heads * head_dim); Keras's (in, heads, head_dim) kernel: fan_in = in * heads,
    fan_out = in * head_dim."""
    return _keras_dense(in_features, heads * head_dim, (head_dim, heads, in_features),
                        lambda k: k.permute(1, 0, 2).reshape(heads * head_dim, in_features), *init)


def _output_projection(heads, head_dim, out_features, *init) -> nn.Linear:
    """(…, heads * head_dim) -> (…, out_features); Keras's (heads, head_dim, out) kernel fans."""
    return _keras_dense(heads * head_dim, out_features, (out_features, head_dim, heads),
                        lambda k: k.permute(0, 2, 1).reshape(out_features, heads * head_dim), *init)


def causal_mask(query_steps: int, key_steps: int, device=None) -> torch.Tensor:
    """(T, S) boolean: query step t may see key steps <= t (aligned at the end when T < S, as Keras)."""
    return torch.ones(query_steps, key_steps, dtype=torch.bool, device=device).tril(key_steps - query_steps)


def combine_masks(*, query_mask=None, key_mask=None, attention_mask=None, causal=None) -> torch.Tensor | None:
    """One boolean mask broadcastable to (batch, heads, T, S), or None when everything may attend.

    The query mask is kept out: a padded query row still attends to the real keys, so no row is empty
    unless a sequence has no real steps at all; padded query outputs are ignored downstream anyway.
    """
    mask = None
    if key_mask is not None:
        mask = key_mask.bool()[:, None, None, :]
    if attention_mask is not None:
        extra = attention_mask.bool()[:, None] if attention_mask.dim() == 3 else attention_mask.bool()
        mask = extra if mask is None else mask & extra
    if causal is not None:
        mask = causal if mask is None else mask & causal
    return mask


class KVCache:
    """Keys and values a MultiHeadAttention computed, (batch, heads, steps, head_dim) each, kept between calls.

    `static=False` (causal self-attention): each call appends the keys and values of its new query steps.
    `static=True` (cross-attention to a fixed sequence): the first call computes them, later calls reuse them.

    >>> cache = KVCache(); out = attention(x_t, x_t, cache=cache, use_causal_mask=True)   # x_t: the new step
    """

    def __init__(self, static: bool = False):
        self.static, self.key, self.value = static, None, None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[2]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows `index` (beam search follows its surviving hypotheses this way)."""
        if self.key is not None:
            self.key, self.value = self.key.index_select(0, index), self.value.index_select(0, index)


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al. 2017): project query, key and value into `num_heads` heads of
    `key_dim`, attend, concatenate, project back to the query's features (or `output_shape`).

    >>> attention = layers.MultiHeadAttention(num_heads=4, key_dim=32)
    >>> out = attention(query, value)                       # self-attention: attention(x, x)
    >>> out, scores = attention(query, value, return_attention_scores=True, use_causal_mask=True)
    """

    supports_masking = True

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if attention_axes not in (None, -2, (-2,), [-2], 1, (1,), [1]):
            raise ValueError(f"MultiHeadAttention attends over the steps axis only; attention_axes={attention_axes!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"MultiHeadAttention dropout must be in [0, 1), got {dropout!r}")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.dropout, self.use_bias = float(dropout), use_bias
        self.output_features = (output_shape if isinstance(output_shape, int) or output_shape is None
                                else int(tuple(output_shape)[-1]))
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build_from(self, query, value, key=None, **_):
        key = value if key is None else key
        heads, init = self.num_heads, (self.kernel_initializer, self.bias_initializer, self.use_bias)
        self.query_dense = _projection(query.shape[-1], heads, self.key_dim, *init)
        self.key_dense = _projection(key.shape[-1], heads, self.key_dim, *init)
        self.value_dense = _projection(value.shape[-1], heads, self.value_dim, *init)
        out = self.output_features or query.shape[-1]
        self.output_dense = _output_projection(heads, self.value_dim, out, *init)

    def _heads(self, x, dense, head_dim):
        """(batch, steps, features) -> (batch, heads, steps, head_dim)"""
        return dense(x).unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)

    def _keys_and_values(self, key, value, cache: KVCache | None):
        if cache is not None and cache.static and cache.key is not None:
            return cache.key, cache.value
        k = self._heads(key, self.key_dense, self.key_dim)
        v = self._heads(value, self.value_dense, self.value_dim)
        if cache is not None:
            if cache.key is not None:  # earlier steps first: the new queries come last
                k, v = torch.cat([cache.key, k], dim=2), torch.cat([cache.value, v], dim=2)
            cache.key, cache.value = k, v
        return k, v

    def forward(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
                return_attention_scores=False, training=None, use_causal_mask=False, cache: KVCache | None = None):
        key = value if key is None else key
        key_mask = key_mask if key_mask is not None else value_mask
        q = self._heads(query, self.query_dense, self.key_dim)
        k, v = self._keys_and_values(key, value, cache)
        steps, key_steps = q.shape[2], k.shape[2]
        # one new step may see every cached one; a square causal mask without others is SDPA's is_causal
        causal = use_causal_mask and steps > 1
        fused_causal = causal and steps == key_steps and key_mask is None and attention_mask is None
        causal = causal_mask(steps, key_steps, query.device) if causal and not fused_causal else None
        mask = combine_masks(key_mask=key_mask, attention_mask=attention_mask, causal=causal)
        dropout = self.dropout if self.training else 0.0
        if return_attention_scores:
            if fused_causal:
                mask = causal_mask(steps, key_steps, query.device)
            attended, scores = self._attend_with_scores(q, k, v, mask, dropout)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                                      is_causal=fused_causal)
        out = self.output_dense(attended.transpose(1, 2).flatten(2))
        return (out, scores) if return_attention_scores else out

    @staticmethod
    def _attend_with_scores(q, k, v, mask, dropout):
        """The same computation as SDPA, spelled out to return the (batch, heads, T, S) attention weights."""
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        scores = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row with no allowed key: all zeros
        return F.dropout(scores, dropout) @ v, scores

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.output_features, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}
