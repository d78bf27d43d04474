"""Registered text classifiers (token ids in, class probabilities out)."""
from ember import layers
from ember.models.registry import register_model
from ember.models.sequential import Sequential


_POOLS = {"average": layers.GlobalAveragePooling1D, "max": layers.GlobalMaxPooling1D}


def _pool(pooling: str):
    if pooling not in _POOLS:
        raise ValueError(f"pooling must be {', '.join(map(repr, _POOLS))}, got {pooling!r}")
    return _POOLS[pooling]()


@register_model("bilstm_classifier")
def bilstm_classifier(vocabulary_size=20000, num_classes=2, embedding_dim=128, units=64, dropout=0.5,
                      input_dropout=0.0, pooling="last", embedding_l2=0.0) -> Sequential:
    """Embedding (padding masked) -> Bidirectional LSTM -> dropout -> softmax: the classic Keras sentiment model.
    `input_dropout` drops embedding features for whole sequences (the LSTM's own `dropout`). `pooling`: "last"
    (the final states, as Keras's example) or "max"/"average" over every real step's outputs. `embedding_l2`
    adds `embedding_l2 * sum(w**2)` over the embedding table to the loss."""
    last = pooling == "last"
    return Sequential([
        layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True,
                         embeddings_regularizer={"l2": embedding_l2} if embedding_l2 else None),
        layers.Bidirectional(layers.LSTM(units, dropout=input_dropout, return_sequences=not last)),
        *([] if last else [_pool(pooling)]),
        layers.Dropout(dropout),
        layers.Dense(num_classes, activation="softmax"),
    ], name="bilstm_classifier")


@register_model("transformer_classifier")
def transformer_classifier(vocabulary_size=20000, num_classes=2, embedding_dim=128, num_heads=4, intermediate_dim=256,
                           num_layers=1, dropout=0.1, pooling="average") -> Sequential:
    """Token + position embedding -> `num_layers` Transformer encoder blocks -> pooling over the real tokens ->
    dropout -> softmax. `pooling`: "average" or "max"."""
    return Sequential([
        layers.PositionalEmbedding(input_dim=vocabulary_size, output_dim=embedding_dim, mask_zero=True),
        *(layers.TransformerEncoder(intermediate_dim, num_heads, dropout=dropout) for _ in range(num_layers)),
        _pool(pooling),
        layers.Dropout(dropout),
        layers.Dense(num_classes, activation="softmax"),
    ], name="transformer_classifier")
