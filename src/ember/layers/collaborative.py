"""Collaborative filtering: layers that score (user, item) id pairs from learned user and item embeddings.

Input: int64 ids of shape (batch, 2), column 0 the user and column 1 the item; output: (batch, 1).
"""
import torch
from torch import nn

from ember.layers import regularizers
from ember.layers.base import Layer, inference_pass_id
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


class SVDPlusPlus(Layer):
    """Koren's SVD++ with side information: biased MF whose user vector also sums what the user rated
    (implicit feedback) and both vectors their attributes (LightFM/SVDFeature-style).

        rating = mean + b_u + b_i + mean(attribute biases)
                 + (p_u + |N(u)|^-1/2 * sum_{j in N(u)} y_j + mean(user attribute factors))
                 . (q_i + mean(item attribute factors))

    `N(u)` (the items each user rated in training) and the attribute ids are constants of the data, set with
    `set_side_information` and saved with the weights; the config keeps only their sizes. Attribute id 0 is
    "none" (rows are padded with it). `factors_regularizer` and `bias_regularizer` are activity penalties on
    the rows each batch looks up (the classic per-rating regularization, divided by the batch size);
    `side_regularizer` is a weight penalty on the implicit and attribute tables.

    >>> layer = layers.SVDPlusPlus(944, 1683, factors=128, implicit_interactions=80000, user_attributes=31,
    ...                            user_attributes_per_row=3, item_attributes=36, item_attributes_per_row=7)
    >>> layer.set_side_information(interactions=x_train, user_attributes=u_ids, item_attributes=i_ids)
    """

    def __init__(self, num_users, num_items, factors=128, *, global_mean=0.0, implicit_interactions=0,
                 user_attributes=0, user_attributes_per_row=0, item_attributes=0, item_attributes_per_row=0,
                 embeddings_initializer="random_normal", factors_regularizer=None, bias_regularizer=None,
                 side_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_users, self.num_items, self.factors = int(num_users), int(num_items), int(factors)
        self.global_mean = float(global_mean)
        self.implicit_interactions = int(implicit_interactions)
        self.user_attributes, self.user_attributes_per_row = int(user_attributes), int(user_attributes_per_row)
        self.item_attributes, self.item_attributes_per_row = int(item_attributes), int(item_attributes_per_row)
        sizes = {"num_users": self.num_users, "num_items": self.num_items, "factors": self.factors}
        counts = {"implicit_interactions": self.implicit_interactions, "user_attributes": self.user_attributes,
                  "user_attributes_per_row": self.user_attributes_per_row, "item_attributes": self.item_attributes,
                  "item_attributes_per_row": self.item_attributes_per_row}
        bad = [f"{k}={v}" for k, v in sizes.items() if v < 1] + [f"{k}={v}" for k, v in counts.items() if v < 0]
        bad += [f"{who}_attributes={counts[who + '_attributes']} with {who}_attributes_per_row=0"
                for who in ("user", "item") if counts[f"{who}_attributes"] and not counts[f"{who}_attributes_per_row"]]
        if bad:
            raise ValueError(f"SVDPlusPlus: sizes must be positive and counts non-negative, and attributes need a "
                             f"row width; got {', '.join(bad)}")
        self.embeddings_initializer = embeddings_initializer
        self.factors_regularizer = regularizers.serialize(regularizers.get(factors_regularizer))
        self.bias_regularizer = regularizers.serialize(regularizers.get(bias_regularizer))
        self.side_regularizer = regularizers.serialize(regularizers.get(side_regularizer))
        # the data's constants, zero until set_side_information (or a saved model's weights) fill them
        self.register_buffer("interaction_offsets", torch.zeros(self.num_users + 1, dtype=torch.long))
        self.register_buffer("interaction_items", torch.zeros(self.implicit_interactions, dtype=torch.long))
        self.register_buffer("user_attribute_ids", torch.zeros(self.num_users, self.user_attributes_per_row,
                                                               dtype=torch.long))
        self.register_buffer("item_attribute_ids", torch.zeros(self.num_items, self.item_attributes_per_row,
                                                               dtype=torch.long))
        self._implicit_table = None  # (inference pass, every user's implicit vector): _every_users_implicit

    def build(self, input_shape):
        def looked_up(rows, width, initializer, regularizer):
            return Embedding(rows, width, embeddings_initializer=initializer, activity_regularizer=regularizer)

        def side(name, rows, width):  # implicit and attribute tables: zeros, penalized as whole weights
            setattr(self, name, nn.Parameter(torch.zeros(rows, width)))
            self.regularizers[name] = regularizers.get(self.side_regularizer)
        self.regularizers = {}
        init = self.embeddings_initializer
        self.user_factors = looked_up(self.num_users, self.factors, init, self.factors_regularizer)
        self.item_factors = looked_up(self.num_items, self.factors, init, self.factors_regularizer)
        self.user_bias = looked_up(self.num_users, 1, "zeros", self.bias_regularizer)
        self.item_bias = looked_up(self.num_items, 1, "zeros", self.bias_regularizer)
        self.offset = nn.Parameter(torch.tensor([self.global_mean]))
        if self.implicit_interactions:
            side("implicit_factors", self.num_items, self.factors)
        for who, size in (("user", self.user_attributes), ("item", self.item_attributes)):
            if size:
                side(f"{who}_attribute_factors", size, self.factors)
                side(f"{who}_attribute_bias", size, 1)

    def set_side_information(self, *, interactions=None, user_attributes=None, item_attributes=None) -> None:
        """Fill the constants: `interactions` (N, 2) (user, item) training pairs, `user_attributes`
        (num_users, per_row) and `item_attributes` (num_items, per_row) attribute ids (0 = none)."""
        def check(name, value, shape, limit):
            value = torch.as_tensor(value, dtype=torch.long)
            if value.numel() == 0:
                value = value.reshape(0, *shape[1:])
            if tuple(value.shape) != shape:
                raise ValueError(f"{self.name}: {name} has shape {tuple(value.shape)}, the layer was made for {shape}")
            if value.numel() and (value.min() < 0 or value.max() >= limit):
                raise ValueError(f"{self.name}: {name} holds ids outside 0..{limit - 1}")
            return value
        if interactions is not None:
            pairs = check("interactions", interactions, (self.implicit_interactions, 2),
                          max(self.num_users, self.num_items))
            users, items = pairs[:, 0], pairs[:, 1]
            if len(pairs) and (users.max() >= self.num_users or items.max() >= self.num_items):
                raise ValueError(f"{self.name}: interactions hold user or item ids beyond the tables")
            order = torch.argsort(users * self.num_items + items)
            self.interaction_items.copy_(items[order])
            self.interaction_offsets.zero_()
            self.interaction_offsets[1:] = torch.cumsum(torch.bincount(users, minlength=self.num_users), 0)
        if user_attributes is not None:
            self.user_attribute_ids.copy_(check("user_attributes", user_attributes,
                                                tuple(self.user_attribute_ids.shape), max(self.user_attributes, 1)))
        if item_attributes is not None:
            self.item_attribute_ids.copy_(check("item_attributes", item_attributes,
                                                tuple(self.item_attribute_ids.shape), max(self.item_attributes, 1)))

    def _implicit(self, users: torch.Tensor) -> torch.Tensor:
        """|N(u)|^-1/2 * sum of y_j over the items j each user rated. Training sums the batch users' rows (one
        embedding_bag); evaluation sums every user's (fixed shapes, which ONNX export needs) and picks."""
        if not self.training:
            return self._every_users_implicit()[users]
        starts = self.interaction_offsets[users]
        counts = self.interaction_offsets[users + 1] - starts
        bag_offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())  # one device sync per batch: the bags' total length
        positions = (torch.arange(total, device=users.device)
                     + (starts - bag_offsets).repeat_interleave(counts, output_size=total))
        weights = counts.clamp(min=1).float().rsqrt().repeat_interleave(counts, output_size=total)
        return nn.functional.embedding_bag(self.interaction_items[positions], self.implicit_factors,
                                           bag_offsets, mode="sum", per_sample_weights=weights)

    def _every_users_implicit(self) -> torch.Tensor:
        """Every user's implicit vector for evaluation, summed once per evaluate or predict loop instead of
        once per batch (on MovieLens-100k it is 25 of the 26 ms of a 256-rating batch). Weights may change
        between loops without any trace (torch's fused Adam does not bump their versions), so nothing is
        kept beyond one loop (`inference_pass`), nor under autograd."""
        current = inference_pass_id()
        if current is None or torch.is_grad_enabled():
            return self._implicit_of_every_user()
        if self._implicit_table is None or self._implicit_table[0] is not current:
            self._implicit_table = (current, self._implicit_of_every_user())
        return self._implicit_table[1]

    def _implicit_of_every_user(self) -> torch.Tensor:
        offsets = self.interaction_offsets
        counts = offsets[1:] - offsets[:-1]
        # the user of each stored interaction: how many users' rows start at or before it (a cumulative count)
        starts = torch.zeros(self.implicit_interactions + 1, device=offsets.device, dtype=torch.long).index_add(
            0, offsets[1:-1], torch.ones_like(offsets[1:-1]))
        owners = torch.cumsum(starts, 0)[:-1]
        weights = counts.clamp(min=1).float().rsqrt()[owners]
        rated = self.implicit_factors[self.interaction_items] * weights[:, None]
        return torch.zeros(self.num_users, self.factors, device=offsets.device, dtype=rated.dtype).index_add(
            0, owners, rated)

    def _attributes(self, who: str, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = getattr(self, f"{who}_attribute_ids")[rows]
        factors, bias = getattr(self, f"{who}_attribute_factors"), getattr(self, f"{who}_attribute_bias")
        return tuple(nn.functional.embedding_bag(ids, table, mode="mean", padding_idx=0) for table in (factors, bias))

    def forward(self, ids):
        users, items = _split_ids(ids)
        user, item = self.user_factors(users), self.item_factors(items)
        score = self.offset + self.user_bias(users) + self.item_bias(items)
        if self.implicit_interactions:
            user = user + self._implicit(users)
        if self.user_attributes:
            factors, bias = self._attributes("user", users)
            user, score = user + factors, score + bias
        if self.item_attributes:
            factors, bias = self._attributes("item", items)
            item, score = item + factors, score + bias
        return score + (user * item).sum(dim=-1, keepdim=True)

    def get_config(self):
        return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
                "factors": self.factors, "global_mean": self.global_mean,
                "implicit_interactions": self.implicit_interactions,
                "user_attributes": self.user_attributes, "user_attributes_per_row": self.user_attributes_per_row,
                "item_attributes": self.item_attributes, "item_attributes_per_row": self.item_attributes_per_row,
                "embeddings_initializer": self.embeddings_initializer,
                "factors_regularizer": self.factors_regularizer, "bias_regularizer": self.bias_regularizer,
                "side_regularizer": self.side_regularizer}
