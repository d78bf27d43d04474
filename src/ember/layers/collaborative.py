"""Collaborative filtering: layers that score (user, item) id pairs from learned user and item embeddings.

Input: int64 ids of shape (batch, 2), column 0 the user and column 1 the item; output: (batch, 1).
"""
import torch
from torch import nn

from ember.layers import regularizers
from ember.layers.base import Layer
from ember.layers.core import Dense, Dropout
from ember.layers.embedding import Embedding


def _table(rows: int, width: int, initializer, regularizer) -> Embedding:
    return Embedding(rows, width, embeddings_initializer=initializer, embeddings_regularizer=regularizer)


def _split_ids(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = ids.long()
    return ids[:, 0], ids[:, 1]


class MatrixFactorization(Layer):
    """Biased matrix factorization: `rating = mean + b_user + b_item + p_user . q_item`.

    `global_mean` starts the learned offset at the training ratings' mean; the regularizers penalize the
    factor and bias tables (Keras's `embeddings_regularizer`), which is what keeps MF from overfitting.

    >>> layers.MatrixFactorization(944, 1683, factors=64, global_mean=3.53, embeddings_regularizer={"l2": 1e-4})
    """

    def __init__(self, num_users, num_items, factors=64, *, global_mean=0.0, embeddings_initializer="random_normal",
                 embeddings_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_users, self.num_items, self.factors = int(num_users), int(num_items), int(factors)
        self.global_mean = float(global_mean)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = regularizers.serialize(regularizers.get(embeddings_regularizer))
        self.bias_regularizer = regularizers.serialize(regularizers.get(bias_regularizer))

    def build(self, input_shape):
        init, regularizer = self.embeddings_initializer, self.embeddings_regularizer
        self.user_factors = _table(self.num_users, self.factors, init, regularizer)
        self.item_factors = _table(self.num_items, self.factors, init, regularizer)
        self.user_bias = _table(self.num_users, 1, "zeros", self.bias_regularizer)
        self.item_bias = _table(self.num_items, 1, "zeros", self.bias_regularizer)
        self.offset = nn.Parameter(torch.tensor([self.global_mean]))

    def forward(self, ids):
        users, items = _split_ids(ids)
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=-1, keepdim=True)
        return self.offset + self.user_bias(users) + self.item_bias(items) + dot

    def get_config(self):
        return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
                "factors": self.factors, "global_mean": self.global_mean,
                "embeddings_initializer": self.embeddings_initializer,
                "embeddings_regularizer": self.embeddings_regularizer, "bias_regularizer": self.bias_regularizer}


class NeuMF(Layer):
    """Neural matrix factorization (He et al., 2017): a GMF branch (element-wise product of `factors`-wide
    embeddings) and an MLP branch (concatenated embeddings through `mlp_units` ReLU layers), joined into one
    logit per pair. End the model in `Activation("sigmoid")` and train with binary cross-entropy on
    observed (1) and sampled unobserved (0) pairs.

    >>> layers.NeuMF(944, 1683, factors=16, mlp_units=(64, 32, 16))
    """

    def __init__(self, num_users, num_items, factors=16, mlp_units=(64, 32, 16), *, dropout=0.0,
                 embeddings_initializer="random_normal", embeddings_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_users, self.num_items, self.factors = int(num_users), int(num_items), int(factors)
        self.mlp_units = tuple(int(u) for u in mlp_units)
        if not self.mlp_units or self.mlp_units[0] % 2:
            raise ValueError(f"mlp_units must start with an even width (user and item halves), got {mlp_units!r}")
        self.dropout = float(dropout)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = regularizers.serialize(regularizers.get(embeddings_regularizer))

    def build(self, input_shape):
        def table(rows, width):
            return _table(rows, width, self.embeddings_initializer, self.embeddings_regularizer)
        half = self.mlp_units[0] // 2
        self.gmf_user, self.gmf_item = table(self.num_users, self.factors), table(self.num_items, self.factors)
        self.mlp_user, self.mlp_item = table(self.num_users, half), table(self.num_items, half)
        self.mlp = nn.Sequential(*(layer for units in self.mlp_units[1:]
                                   for layer in (Dropout(self.dropout), Dense(units, activation="relu"))))
        self.output_layer = Dense(1, kernel_initializer="lecun_uniform")

    def forward(self, ids):
        users, items = _split_ids(ids)
        gmf = self.gmf_user(users) * self.gmf_item(items)
        mlp = self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=-1))
        return self.output_layer(torch.cat([gmf, mlp], dim=-1))

    def get_config(self):
        return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
                "factors": self.factors, "mlp_units": list(self.mlp_units), "dropout": self.dropout,
                "embeddings_initializer": self.embeddings_initializer,
                "embeddings_regularizer": self.embeddings_regularizer}
