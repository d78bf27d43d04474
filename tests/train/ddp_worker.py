"""Trains a small CNN with `model.fit` and saves its weights: run alone or under torchrun by test_distributed.

python ddp_worker.py OUT.safetensors BATCH_SIZE [EPOCHS] [precision=bf16] [accumulate=2]
"""
import sys

import numpy as np
from safetensors.torch import save_file

from ember import layers, models, optimizers
from ember.seeding import set_random_seed
from ember.train import distributed


def main(out, batch_size, epochs=2, *options):
    options = dict(option.split("=", 1) for option in options)
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((512, 12, 12, 1), dtype=np.float32)
    x[np.arange(512), rng.integers(0, 12, 512), rng.integers(0, 12, 512)] += 2.0  # one bright pixel
    bright = x.reshape(512, -1).argmax(axis=1)
    y = (bright // 12 >= 6) * 2 + (bright % 12 >= 6)  # the quadrant it lies in
    model = models.Sequential([layers.Conv2D(8, (3, 3), activation="relu", input_shape=(12, 12, 1)),
                               layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dense(16, activation="relu"),
                               layers.Dense(4, activation="softmax")])
    optimizer = optimizers.Adam(gradient_accumulation_steps=int(options.get("accumulate", 1)))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], precision=options.get("precision", "fp32"))
    history = model.fit(x, y, batch_size=int(batch_size), epochs=int(epochs), validation_split=0.25, verbose=0)
    if distributed.info().is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
        print("history", {k: [round(v, 6) for v in vs] for k, vs in history.history.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
