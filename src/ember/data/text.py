"""Labelled text from CSV/TSV files: one column of text, one of labels (integers or class names)."""
import csv
import re
from pathlib import Path

import numpy as np

from ember.data.arrays import MAX_CLASSES
from ember.errors import DatasetError


def read_labeled_text(path, text_column="sentence", label_column="label", class_names=None):
    """(texts, int64 labels, class names) from a CSV (.csv) or tab-separated (.tsv, .txt) file with a header.

    Integer labels are class indices; other labels are class names, indexed in sorted order (or in the
    order of `class_names` when given, e.g. the training file's classes for a test file).
    """
    path = Path(path)
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else
                                    csv.QUOTE_NONE)
            rows = list(reader)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    ragged = next((i for i, row in enumerate(rows) if None in row or None in row.values()), None)
    if ragged is not None:  # DictReader puts extra fields under None and fills missing ones with None
        raise DatasetError(f"{path}: line {ragged + 2} has {'more' if None in rows[ragged] else 'fewer'} fields "
                           f"than the header's {len(reader.fieldnames)} (quote texts holding {delimiter!r})")
    if not rows or text_column not in rows[0] or label_column not in rows[0]:
        found = ", ".join(k for k in rows[0] if k) if rows else "no rows"
        raise DatasetError(f"{path}: needs columns {text_column!r} and {label_column!r} (found {found})")
    texts = np.array([(row[text_column] or "").strip() for row in rows])
    raw = [(row[label_column] or "").strip() for row in rows]
    if class_names is None and all(re.fullmatch(r"-?[0-9]+", label) for label in raw):  # not isdigit(): "¹"
        labels = [int(label) for label in raw]
        if min(labels) < 0 or max(labels) >= MAX_CLASSES:
            bad = min(labels) if min(labels) < 0 else max(labels)
            raise DatasetError(f"{path}: labels must be class indices 0, 1, ... below {MAX_CLASSES:,}, found {bad}")
        labels = np.array(labels, dtype=np.int64)
        return texts, labels, [str(i) for i in range(labels.max() + 1)]
    names = list(class_names) if class_names is not None else sorted(set(raw))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DatasetError(f"{path}: labels {unknown[:5]} are not among the classes {names}")
    return texts, np.array([index[label] for label in raw], dtype=np.int64), names
