"""Ranking metrics for recommendation, in the NCF protocol and over the full catalogue.

A held-out item's rank counts the candidates that score at least as high (ties count against it, so a
model that scores everything alike gets no credit).

>>> hits, ndcg = hit_rate_and_ndcg(positive_scores, negative_scores, k=10)
"""
import numpy as np


def ranks(positive: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """0-based rank of each row's held-out score `positive[i]` among that row's `candidates[i, :]`."""
    positive = np.asarray(positive, dtype=np.float64).reshape(-1, 1)
    return (np.asarray(candidates, dtype=np.float64) >= positive).sum(axis=1)


def hit_rate_and_ndcg(positive: np.ndarray, negatives: np.ndarray, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k with one relevant item per user: positive (users,), negatives (users, n)."""
    rank = ranks(positive, negatives)
    hit = rank < k
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())


def full_ranking_recall(scores: np.ndarray, held_out: np.ndarray, exclude: np.ndarray, k: int = 10) -> float:
    """Recall@k of one held-out item per user ranked against every item: `scores` (users, items),
    `held_out` (users,) item columns, `exclude` (users, items) bool of items not to rank (already seen)."""
    scores = np.where(exclude, -np.inf, np.asarray(scores, dtype=np.float64))
    rows = np.arange(len(held_out))
    positive = scores[rows, held_out]
    scores[rows, held_out] = -np.inf
    return float((ranks(positive, scores) < k).mean())
