"""Registered convolutional classifiers."""
from ember import layers
from ember.models.registry import register_model
from ember.models.sequential import Sequential


@register_model("seed_cnn")
def seed_cnn(input_shape=(28, 28, 1), num_classes=10) -> Sequential:
    """The classic Keras MNIST CNN: Conv2D 32/64/64 with max pooling, Dense 64, softmax (93,322 weights on MNIST)."""
    return Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=tuple(input_shape)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="seed_cnn")
