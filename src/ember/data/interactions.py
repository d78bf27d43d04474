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


def sample_unseen(users: torch.Tensor, seen: torch.Tensor, num_items: int, *, generator=None,
                  first_item: int = 1) -> torch.Tensor:
    """One random item per entry of `users` that the user has not interacted with.

    `seen` holds the sorted `pair_codes` of every observed interaction; items are drawn uniformly from
    `[first_item, num_items)` and the draws that hit an observed pair are drawn again.
    """
    items = torch.randint(first_item, num_items, users.shape, generator=generator)
    redo = torch.isin(pair_codes(users, items, num_items), seen)
    while redo.any():
        items[redo] = torch.randint(first_item, num_items, (int(redo.sum()),), generator=generator)
        redo[redo.clone()] = torch.isin(pair_codes(users[redo], items[redo], num_items), seen)
    return items


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
        return self  # each epoch's batches move to the device as they are drawn

    def batches(self, batch_size: int, *, shuffle: bool = False, device=None, trim: bool = False):
        return self.epoch().batches(batch_size, shuffle=shuffle, device=device, trim=trim)
