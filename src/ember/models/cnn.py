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


@register_model("resnet_small")
def resnet_small(input_shape=(28, 28, 1), num_classes=10, widths=(16, 32, 64), blocks_per_stage=1) -> Sequential:
    """A small ResNet: a 3x3 stem, one stage of residual blocks per width (each later stage halves the
    resolution), global average pooling and a softmax classifier (about 78k weights with the defaults)."""
    model = Sequential([
        layers.Conv2D(widths[0], 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      input_shape=tuple(input_shape)),
        layers.BatchNormalization(momentum=0.9),
        layers.Activation("relu"),
    ], name="resnet_small")
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            model.add(layers.ResidualBlock(width, strides=2 if stage > 0 and block == 0 else 1))
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model
