"""The plots a run report shows, drawn with matplotlib's file-only Agg backend (no display needed)."""
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)  # files only: never open a window, never need a display
    import matplotlib.pyplot as plt
    return plt


def learning_curves(history: list[dict], path) -> Path:
    """One panel per metric (loss, accuracy, ...), training and validation curves against the epoch."""
    plt = _pyplot()
    names = [k for k in history[0] if not k.startswith("val_") and k not in ("epoch", "lr", "seconds", "minutes")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [row[name] for row in history], marker="o", label=f"training {name}")
        if f"val_{name}" in history[0]:
            ax.plot(epochs, [row[f"val_{name}"] for row in history], marker="o", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name.replace("_", " "))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, plt, path)


def bleu_curve(points, path, title="Validation BLEU against training time") -> Path:
    """BLEU (y) against minutes of training (x), one marker per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    minutes, scores = zip(*points)
    ax.plot(minutes, scores, marker="o")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("BLEU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, path)


def confusion_matrix(counts, class_names, path, title="Confusion matrix (test set)") -> Path:
    """Rows are true classes, columns predictions; colour is the row's share, the number the count."""
    plt = _pyplot()
    counts = np.asarray(counts)
    n = len(class_names)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(14, max(4.5, 0.55 * n + 2))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(n)
    labels = [str(c) for c in class_names]
    ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels)) > 2 else 0, ha="right" if n > 2 else "center")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, plt, path)


def image_grid(images, captions, path, columns: int = 8, title=None, alerts=None) -> Path:
    """Images (N, H, W, C) with values in [0, 1], each captioned, in a grid; `alerts[i]` captions it in red."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 2.1 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    alerts = alerts if alerts is not None else [False] * len(images)
    for ax, image, caption, alert in zip(axes.flat, images, captions, alerts):
        image = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        ax.set_title(caption, fontsize=7, color="tab:red" if alert else "black")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # long class names stay inside the picture
    plt.close(fig)
    return path
