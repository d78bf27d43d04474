"""What augmentation costs per training step: the classic MNIST CNN at batch 32, with and without it.

Contenders, interleaved rounds in one process:
  ember   the classic CNN behind RandomRotation(0.04) + RandomZoom(0.1) + RandomTranslation(0.1, 0.1), `fit`
  plain   the same CNN without augmentation, `fit`: the reference (target: ember <= 1.10 x plain)
  eager   a hand-written PyTorch loop with the same three transforms as one affine_grid + grid_sample per batch
  keras   Keras 3 (KERAS_BACKEND=torch) with its RandomRotation, RandomZoom and RandomTranslation layers
Prints each round, then the median ms/step and ember's ratios.

    python benchmarks/augmentation.py --rounds 5 --steps 200
"""
import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from interleave import fit_runner, keras_runner, run_contenders, step_arguments  # noqa: E402
from seed_cnn import BATCH, classic_cnn, eager_runner, mnist_like  # noqa: E402

TARGETS = {"plain": 1.10, "eager": 1.0, "keras": 0.45}
ROTATION, ZOOM, SHIFT = 0.04, 0.1, 0.1


def augmented(layers, models):
    """The classic CNN with the three geometric augmentation layers in front (zeros outside the image)."""
    inner = classic_cnn(layers, models)
    fill = {"fill_mode": "constant"}
    model = models.Sequential([layers.Input((28, 28, 1)), layers.RandomRotation(ROTATION, **fill),
                               layers.RandomZoom(ZOOM, **fill), layers.RandomTranslation(SHIFT, SHIFT, **fill),
                               *inner.layers])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def ember_runner(x, y, augment: bool):
    from ember import layers, models
    model = augmented(layers, models) if augment else classic_cnn(layers, models)
    return fit_runner(model, x, y, BATCH)


def random_affine(images):
    """The three transforms of a batch (N, 1, 28, 28), composed into one resampling, as a PyTorch user
    without torchvision would write them."""
    n = len(images)
    angle = (torch.rand(n) * 2 - 1) * ROTATION * 2 * math.pi
    zoom = 1 + (torch.rand(n) * 2 - 1) * ZOOM
    shift = (torch.rand(n, 2) * 2 - 1) * SHIFT * 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) * zoom, -torch.sin(angle) * zoom
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * zoom, torch.cos(angle) * zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def main():
    args = step_arguments(__doc__, steps=200)
    torch.manual_seed(0)
    x, y = mnist_like(args.steps * BATCH)
    runners = {"ember": ember_runner(x, y, augment=True), "plain": ember_runner(x, y, augment=False),
               "eager": eager_runner(x, y, transform=random_affine), "keras": keras_runner(augmented, x, y, BATCH)}
    run_contenders(runners, args, BATCH, TARGETS)


if __name__ == "__main__":
    main()
