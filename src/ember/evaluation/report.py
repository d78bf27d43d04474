"""Report sections every classification task shares: confusion matrix, most-confused pairs, per-class table."""
from pathlib import Path

import numpy as np

from ember.evaluation import classification, plots


def classification_sections(run_dir: Path, metrics: dict, class_names, draw_plots: bool, unit="test samples"):
    """Markdown sections (and plots/confusion_matrix.png when `draw_plots`) for a classifier's test metrics."""
    sections = []
    if draw_plots:
        plots.confusion_matrix(metrics["confusion_matrix"], class_names, run_dir / "plots" / "confusion_matrix.png")
        sections.append("## Confusion matrix\n\nRows are true classes, columns predicted classes; "
                        "the colour is the share of the row.\n\n![confusion matrix](plots/confusion_matrix.png)\n")
    pairs = classification.most_confused(metrics["confusion_matrix"], class_names)
    if pairs:
        rows = "\n".join(f"| {t} | {p} | {n} |" for t, p, n in pairs)
        sections.append(f"## Most confused classes\n\n| true | predicted as | {unit} |\n|---|---|---|\n{rows}\n")
    rows = "\n".join(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
                     for name, m in metrics["per_class"].items())
    sections.append(f"## Per class\n\n| class | precision | recall | F1 | {unit} |\n|---|---|---|---|---|\n{rows}\n")
    return sections


def evaluate_classifier(model, x_test, y_test, class_names, batch_size: int) -> tuple[dict, dict]:
    """(metrics for metrics.json, details for the report) of a classifier that outputs probabilities."""
    probabilities = model.predict(x_test, batch_size=batch_size, verbose=0)
    return classification.classification_metrics(y_test, probabilities, class_names), {"probabilities": probabilities}


def summary_line(metrics: dict, unit: str) -> str:
    return (f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
            f"macro F1 {metrics['test_macro_f1']:.4f} on {metrics['test_samples']:,} {unit}")


def highest_loss(y_true, probabilities, k: int) -> list[tuple[int, int, float]]:
    """(index, predicted class, its probability) of the `k` samples with the highest loss, worst first."""
    losses = classification.per_sample_loss(y_true, probabilities)
    worst = np.argsort(-losses, kind="stable")[:k]
    predicted = probabilities[worst].argmax(axis=1)
    return [(int(i), int(p), float(probabilities[i, p])) for i, p in zip(worst, predicted)]


def table_cell(text, limit: int = 120) -> str:
    """`text` fit for a Markdown table cell: pipes escaped, cut to `limit` characters with an ellipsis."""
    text = str(text).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def top_k(inputs, probabilities, class_names, k: int) -> list[dict]:
    """`ember predict` output: for each input, its k most probable classes."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [{"input": str(item), "predictions": [{"label": class_names[j], "probability": float(probabilities[i, j])}
                                                 for j in order[i]]}
            for i, item in enumerate(inputs)]
