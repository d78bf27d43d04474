"""`ember quickstart`: the classic Keras MNIST CNN end to end, offline.

Trains on MNIST when its files are already on disk ($EMBER_DATA or the cache), else on the 8x8
digits shipped with scikit-learn, upsampled to 28x28 so the very same network applies.
"""
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ember import datasets, models

DEFAULT_EPOCHS = {"mnist": 5, "digits": 15}


def _as_images(x: np.ndarray, size: int = 28) -> np.ndarray:
    """uint8 (N, h, w) -> float32 (N, size, size, 1) in [0, 1], resized bilinearly if needed."""
    images = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def load(dataset: str):
    if dataset == "auto":
        dataset = "mnist" if datasets.mnist.is_available() else "digits"
    if dataset not in DEFAULT_EPOCHS:
        raise ValueError(f"quickstart dataset must be 'auto', 'mnist' or 'digits', got {dataset!r}")
    (x_train, y_train), (x_test, y_test) = getattr(datasets, dataset).load_data()
    return dataset, (_as_images(x_train), y_train), (_as_images(x_test), y_test)


def run(out_dir="ember_quickstart", *, dataset="auto", epochs=None, verbose="auto") -> dict:
    """Train, evaluate and save the classic CNN; returns the test metrics."""
    dataset, (x_train, y_train), (x_test, y_test) = load(dataset)
    epochs = epochs or DEFAULT_EPOCHS[dataset]
    print(f"ember quickstart: the classic MNIST CNN on {dataset} "
          f"({len(x_train):,} training / {len(x_test):,} test images, {epochs} epochs)")
    model = models.create_model("seed_cnn", input_shape=(28, 28, 1), num_classes=10)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, verbose=verbose)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    metrics = {"dataset": dataset, "test_loss": round(test_loss, 6), "test_accuracy": round(test_acc, 6)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails earlier leaves nothing behind
    path = out / "model.ember"
    model.save(path)
    reloaded = models.load_model(path)
    if not np.array_equal(reloaded.predict(x_test[:256], verbose=0), model.predict(x_test[:256], verbose=0)):
        raise RuntimeError(f"{path}: the reloaded model predicts differently")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy {test_acc:.4f}, test loss {test_loss:.4f}")
    print(f"saved the model to {path} (reloaded and checked); metrics in {out / 'metrics.json'}")
    return metrics
