"""Registered text classifiers (token ids in, class probabilities out)."""
from ember import layers
from ember.models.registry import register_model
from ember.models.sequential import Sequential


@register_model("bilstm_classifier")
def bilstm_classifier(vocabulary_size=20000, num_classes=2, embedding_dim=128, units=64, dropout=0.5,
                      input_dropout=0.0) -> Sequential:
    """Embedding (padding masked) -> Bidirectional LSTM -> dropout -> softmax: the classic Keras sentiment model.
    `input_dropout` drops embedding features for whole sequences (the LSTM's own `dropout`)."""
    return Sequential([
        layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True),
        layers.Bidirectional(layers.LSTM(units, dropout=input_dropout)),
        layers.Dropout(dropout),
        layers.Dense(num_classes, activation="softmax"),
    ], name="bilstm_classifier")
