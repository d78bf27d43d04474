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


@register_model("audio_cnn")
def audio_cnn(input_length=8000, num_classes=10, sampling_rate=8000, fft_length=256, sequence_stride=80,
              num_mel_bins=40, spec_augment=True, widths=(32, 64, 64), dense_units=64, dropout=0.3) -> Sequential:
    """Waveforms in: log-mel spectrogram (inside the model), input normalization, SpecAugment while training,
    then Conv2D/batch-norm/max-pooling stages over (mel bins, frames), Dense, dropout and softmax."""
    model = Sequential([
        layers.MelSpectrogram(fft_length=fft_length, sequence_stride=sequence_stride, sampling_rate=sampling_rate,
                              num_mel_bins=num_mel_bins, input_shape=(int(input_length),)),
        layers.Reshape((num_mel_bins, -1, 1)),
        layers.BatchNormalization(momentum=0.9),
        *([layers.SpecAugment(freq_mask_param=num_mel_bins // 8, time_mask_param=10)] if spec_augment else []),
    ], name="audio_cnn")
    for width in widths:
        model.add(layers.Conv2D(width, 3, padding="same", activation="relu"))
        model.add(layers.BatchNormalization(momentum=0.9))
        model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    model.add(layers.Dense(dense_units, activation="relu"))
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model
