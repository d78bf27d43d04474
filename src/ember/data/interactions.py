"""Implicit feedback: (user, item) interactions, leave-one-out splits and negative sampling.

`NegativeSampling` is an `ArrayData` whose every epoch pairs each observed interaction (label 1) with
`negatives` items the user never interacted with (label 0), freshly drawn, as in NCF's training.

>>> data = NegativeSampling(pairs, num_items=1683, negatives=4)
>>> model.fit(data, epochs=20, batch_size=256)
"""
import numpy as np
import torch

from ember.data.arrays import ArrayData


def leave_one_out(users: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): each user's latest interaction is the test one (the later row wins a tie)."""
    rows = np.arange(len(users))
    order = np.lexsort((rows, timestamps, users))  # by user, then time, then position
    last = np.r_[users[order][1:] != users[order][:-1], True]
    test = np.sort(order[last])
    return np.setdiff1d(rows, test, assume_unique=True), test


def pair_codes(users, items, num_items: int):
    """One integer per (user, item) pair, to test membership of many pairs at once."""
    return users * num_items + items


def _check_unseen_left(users: torch.Tensor, seen: torch.Tensor, num_items: int, first_item: int) -> None:
    """Refuse a user who has interacted with every item: no negative can be drawn for them."""
    distinct = torch.unique(users)
    counts = (torch.searchsorted(seen, (distinct + 1) * num_items)
              - torch.searchsorted(seen, distinct * num_items + first_item))
    full = distinct[counts >= num_items - first_item]
    if len(full):
        raise ValueError(f"user {int(full[0])} has interacted with all {num_items - first_item} items: "
                         "there is no unobserved item to sample")


def sample_unseen(users: torch.Tensor, seen: torch.Tensor, num_items: int, *, generator=None,
                  first_item: int = 1) -> torch.Tensor:
    """One random item per entry of `users` that the user has not interacted with (with replacement).

    `seen` holds the sorted `pair_codes` of every observed interaction; items are drawn uniformly from
    `[first_item, num_items)` and the draws that hit an observed pair are drawn again.
    """
    _check_unseen_left(users, seen, num_items, first_item)
    items = torch.randint(first_item, num_items, users.shape, generator=generator)
    redo = torch.isin(pair_codes(users, items, num_items), seen)
    while redo.any():
        items[redo] = torch.randint(first_item, num_items, (int(redo.sum()),), generator=generator)
        redo[redo.clone()] = torch.isin(pair_codes(users[redo], items[redo], num_items), seen)
    return items


def ranking_candidates(pairs: np.ndarray, held_out: np.ndarray, num_items: int, *, negatives: int = 99,
                       seed: int = 0, first_item: int = 1) -> np.ndarray:
    """NCF's test protocol: for each held-out (user, item) row of `pairs[held_out]`, the held-out item followed by
    `negatives` distinct items the user never interacted with anywhere in `pairs`, as (rows, 1 + negatives, 2)
    (user, item) ids. Drawn without replacement, so no candidate is counted twice."""
    pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
    users, items = pairs[held_out, 0], pairs[held_out, 1]
    row_of = torch.full((int(pairs[:, 0].max()) + 1,), -1, dtype=torch.long)
    row_of[users] = torch.arange(len(users))
    allowed = torch.ones(len(users), num_items)
    allowed[:, :first_item] = 0
    mine = row_of[pairs[:, 0]] >= 0
    allowed[row_of[pairs[mine, 0]], pairs[mine, 1]] = 0  # everything each of these users interacted with
    short = (allowed.sum(dim=1) < negatives).nonzero()
    if len(short):
        raise ValueError(f"user {int(users[short[0, 0]])} has fewer than {negatives} unobserved items to rank "
                         "the held-out one among")
    sampled = torch.multinomial(allowed, negatives, replacement=False,
                                generator=torch.Generator().manual_seed(seed))
    candidates = torch.cat([items[:, None], sampled], dim=1)
    return torch.stack([users[:, None].expand_as(candidates), candidates], dim=-1).numpy()


class NegativeSampling(ArrayData):
    """Observed (user, item) pairs with `negatives` freshly sampled unobserved items each, per epoch.

    `seen`: pairs to never sample as negatives (default: `pairs` itself); `first_item`: the lowest item id.
    """

    def __init__(self, pairs, num_items: int, *, negatives: int = 4, seen=None, first_item: int = 1, seed=None):
        positives = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
        if positives.dim() != 2 or positives.shape[1] != 2:
            raise ValueError(f"pairs must have shape (N, 2) (user, item), got {tuple(positives.shape)}")
        if negatives < 1:
            raise ValueError(f"negatives must be at least 1, got {negatives}")
        super().__init__(positives, torch.ones(len(positives), 1))
        self.num_items, self.negatives, self.first_item = int(num_items), int(negatives), int(first_item)
        seen = positives if seen is None else torch.as_tensor(np.asarray(seen), dtype=torch.long)
        self.seen = torch.unique(pair_codes(seen[:, 0], seen[:, 1], self.num_items))  # sorted
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return len(self.xs[0]) * (1 + self.negatives)

    def epoch(self) -> ArrayData:
        """This epoch's samples: every positive and `negatives` new negatives per positive."""
        positives = self.xs[0]
        users = positives[:, 0].repeat(self.negatives)
        items = sample_unseen(users, self.seen, self.num_items, generator=self.generator, first_item=self.first_item)
        x = torch.cat([positives, torch.stack([users, items], dim=1)])
        y = torch.cat([torch.ones(len(positives), 1), torch.zeros(len(users), 1)])
        return ArrayData(x, y)

    def split(self, fraction):
        raise ValueError("NegativeSampling data has no validation_split: pass validation_data instead")

    def to(self, device):
        return self  # each epoch's samples move to the device when they are drawn

    def batches(self, batch_size: int, *, shuffle: bool = False, order=None, start: int = 0, device=None,
                trim: bool = False):
        epoch = self.epoch()
        if device is not None and torch.device(device).type != "cpu":
            epoch = epoch.to(device)  # one copy per epoch rather than one per batch
        return epoch.batches(batch_size, shuffle=shuffle, start=start, device=device, trim=trim)
