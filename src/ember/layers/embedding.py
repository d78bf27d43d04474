"""Embedding: integer token ids -> dense vectors, with Keras's `mask_zero` padding mask."""
import torch
from torch import nn

from ember.layers import regularizers
from ember.layers.base import Layer
from ember.layers.initializers import initialize


class Embedding(Layer):
    """Looks up a `output_dim` vector for each id in `[0, input_dim)`.

    With `mask_zero=True`, id 0 is padding: the layer emits a mask (`ids != 0`) that the following
    layers (RNNs, pooling, attention) use so that padding never changes a result.

    >>> layers.Embedding(10000, 64, mask_zero=True)
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 mask_zero=False, **kwargs):
        kwargs.pop("input_length", None)  # Keras 2 argument, not needed: any length works
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer, self.mask_zero = embeddings_initializer, bool(mask_zero)
        self.regularizers = {"embeddings": regularizers.get(embeddings_regularizer)}

    def build(self, input_shape):
        self.embeddings = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        initialize(self.embeddings, self.embeddings_initializer)

    def forward(self, ids):
        if ids.is_floating_point():
            ids = ids.long()
        return nn.functional.embedding(ids, self.embeddings)

    def compute_mask(self, ids, mask=None):
        return ids != 0 if self.mask_zero else None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer,
                "embeddings_regularizer": regularizers.serialize(self.regularizers["embeddings"]),
                "mask_zero": self.mask_zero}
