"""Per-step training time of the classic Keras MNIST CNN at batch 32: ember vs PyTorch vs Keras 3.

Three contenders train the same network on the same data, in interleaved rounds in one process:
  ember   `model.fit(x, y, batch_size=32, epochs=1, verbose=0)` (accuracy metric on, as in the example)
  eager   a hand-written PyTorch loop: shuffle, index a batch, forward, cross-entropy, backward, Adam
  keras   Keras 3 with KERAS_BACKEND=torch, `model.fit(..., verbose=0)` (needs `pip install keras`)
Prints each round, then the median ms/step and the ratios ember/eager and ember/keras.

    python benchmarks/seed_cnn.py --rounds 5 --steps 300
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from interleave import fit_runner, keras_runner, run_contenders, step_arguments  # noqa: E402
from torch import nn  # noqa: E402

BATCH = 32
TARGETS = {"eager": 0.85, "keras": 0.45}


def mnist_like(n: int):
    """MNIST when $EMBER_DATA has it (values don't change timing, but real data is honest), else noise."""
    from ember import datasets
    if datasets.mnist.is_available():
        (x, y), _ = datasets.mnist.load_data()
        x, y = x[:n], y[:n]
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    return x.reshape(-1, 28, 28, 1).astype("float32") / 255, y


def classic_cnn(layers, models):
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def ember_runner(x, y):
    from ember import layers, models
    return fit_runner(classic_cnn(layers, models), x, y, BATCH)


def eager_runner(x, y, transform=None):
    """The loop a PyTorch user writes by hand (NCHW, torch defaults, no metrics); `transform` changes each
    training batch of images first (augmentation)."""
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y).long()

    def epoch():
        model.train()
        order = torch.randperm(len(images))
        for start in range(0, len(images), BATCH):
            index = order[start:start + BATCH]
            batch = images[index] if transform is None else transform(images[index])
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epoch


def main():
    args = step_arguments(__doc__, steps=300)
    torch.manual_seed(0)
    x, y = mnist_like(args.steps * BATCH)
    runners = {"ember": ember_runner(x, y), "eager": eager_runner(x, y), "keras": keras_runner(classic_cnn, x, y, BATCH)}
    run_contenders(runners, args, BATCH, TARGETS)


if __name__ == "__main__":
    main()
