"""HR@k, NDCG@k and full-ranking recall on hand-checked cases."""
import numpy as np
import pytest

from ember.evaluation.ranking import full_ranking_recall, hit_rate_and_ndcg, ranks


def test_hit_rate_and_ndcg_by_hand():
    positive = np.array([0.9, 0.5, 0.1])
    negatives = np.array([[0.1, 0.2, 0.3],    # rank 0: hit, gain 1
                          [0.6, 0.7, 0.1],    # rank 2: hit at k=3, gain 1/log2(4) = 0.5
                          [0.2, 0.3, 0.4]])   # rank 3: miss at k=3
    assert ranks(positive, negatives).tolist() == [0, 2, 3]
    hr, ndcg = hit_rate_and_ndcg(positive, negatives, k=3)
    assert hr == pytest.approx(2 / 3)
    assert ndcg == pytest.approx((1 + 0.5) / 3)


def test_ties_count_against_the_held_out_item():
    hr, ndcg = hit_rate_and_ndcg(np.zeros(4), np.zeros((4, 99)), k=10)
    assert hr == 0 and ndcg == 0  # a model scoring everything alike earns nothing


def test_full_ranking_recall_skips_seen_items():
    scores = np.array([[0.0, 0.9, 0.8, 0.1, 0.2],
                       [0.0, 0.9, 0.8, 0.7, 0.6]])
    exclude = np.array([[True, True, False, False, False],
                        [True, False, False, False, False]])
    held_out = np.array([2, 4])
    # user 0: item 1 is seen, so item 2 ranks first; user 1: item 4 trails items 1-3
    assert full_ranking_recall(scores, held_out, exclude, k=1) == 0.5
    assert full_ranking_recall(scores, held_out, exclude, k=4) == 1.0
