"""Leave-one-out splits and negative sampling for implicit feedback."""
import numpy as np
import pytest
import torch

from ember.data.interactions import NegativeSampling, leave_one_out, pair_codes, ranking_candidates, sample_unseen


def test_leave_one_out_holds_out_each_users_latest_interaction():
    users = np.array([1, 1, 2, 1, 2, 3])
    times = np.array([5, 9, 1, 7, 1, 4])
    train, test = leave_one_out(users, times)
    assert test.tolist() == [1, 4, 5]  # user 1 at time 9; user 2's tie goes to the later row; user 3 alone
    assert sorted(train.tolist() + test.tolist()) == list(range(6))


def test_sampled_items_are_never_ones_the_user_interacted_with():
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 4]])
    seen = torch.unique(pair_codes(pairs[:, 0], pairs[:, 1], 6))
    users = torch.zeros(2000, dtype=torch.long)
    items = sample_unseen(users, seen, 6, generator=torch.Generator().manual_seed(0))
    assert set(items.tolist()) == {4, 5}  # user 0 has seen 1-3; item 0 is no item
    counts = np.bincount(items.numpy(), minlength=6)[4:]
    assert abs(counts[0] - counts[1]) < 200  # uniform over what is left


def test_each_epoch_pairs_every_positive_with_fresh_negatives():
    pairs = np.array([[u, i] for u in range(1, 4) for i in range(1, 4)])
    data = NegativeSampling(pairs, num_items=50, negatives=3, seed=0)
    assert len(data) == 9 * 4 and data.num_batches(8) == 5
    first, second = data.epoch(), data.epoch()
    x, y = first.xs[0], first.y[:, 0]
    assert y.sum() == 9 and len(y) == 36
    assert (x[y == 0][:, 1] > 3).all()  # no negative is an observed item
    assert not torch.equal(x, second.xs[0])
    xs, labels, _ = next(data.batches(36, shuffle=True))
    assert xs[0].shape == (36, 2) and labels.shape == (36, 1)


def test_negative_sampling_refuses_a_validation_split_and_bad_shapes():
    data = NegativeSampling(np.array([[1, 1]]), num_items=5)
    with pytest.raises(ValueError, match="validation_data"):
        data.split(0.1)
    with pytest.raises(ValueError, match="shape"):
        NegativeSampling(np.array([1, 2, 3]), num_items=5)


def test_ranking_candidates_are_distinct_and_never_seen():
    rng = np.random.default_rng(0)
    pairs = np.array([[u, i] for u in range(1, 21) for i in rng.choice(np.arange(1, 200), 30, replace=False)])
    held_out = np.arange(0, len(pairs), 30)  # the first interaction of each user
    x = ranking_candidates(pairs, held_out, num_items=200, negatives=99, seed=3)
    assert x.shape == (20, 100, 2)
    assert (x[:, :, 0] == pairs[held_out, 0][:, None]).all() and (x[:, 0, 1] == pairs[held_out, 1]).all()
    for row, user in enumerate(pairs[held_out, 0]):
        negatives = set(x[row, 1:, 1].tolist())
        assert len(negatives) == 99 and 0 not in negatives
        assert not negatives & set(pairs[pairs[:, 0] == user, 1].tolist())
    np.testing.assert_array_equal(x, ranking_candidates(pairs, held_out, num_items=200, negatives=99, seed=3))


def test_a_user_who_has_seen_everything_is_a_clear_error():
    pairs = torch.tensor([[1, 1], [1, 2], [2, 1]])
    seen = torch.unique(pair_codes(pairs[:, 0], pairs[:, 1], 3))
    with pytest.raises(ValueError, match="user 1 has interacted with all 2 items"):
        sample_unseen(torch.tensor([2, 1]), seen, 3)
    with pytest.raises(ValueError, match="user 2 has fewer than 2 unobserved items"):
        ranking_candidates(pairs.numpy(), np.array([2]), num_items=3, negatives=2)
