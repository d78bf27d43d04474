"""Batches of token-id sequences grouped by length, as translation toolkits batch (fairseq's `--max-tokens`).

Sentences of similar length go together, so a batch is padded little; each batch holds up to `max_tokens`
token slots (sentences x the longest sequence in it, padding included), so short sentences come in big
batches and long ones in small. The batches come in a new random order every epoch.
"""
import numpy as np
import torch

from ember.data.arrays import ArrayData, trim_padding


class TokenBatches(ArrayData):
    """Inputs (one or several right-padded id arrays) and targets, batched by length up to `max_tokens`.

    >>> data = TokenBatches((source_ids, target_in_ids), target_out_ids, max_tokens=4000)
    >>> model.fit(data, epochs=10)          # batch_size is ignored: the batches hold about 4,000 tokens
    """

    def __init__(self, x, y, *, max_tokens: int = 4096, seed: int | None = None):
        super().__init__(x, y)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)
        arrays = [*self.xs] + ([self.y] if self.y is not None and self.y.dim() == 2 else [])
        self.lengths = torch.stack([(a != 0).sum(1) for a in arrays]).amax(0).clamp(min=1).numpy()
        self.rng = np.random.default_rng(seed)
        self._count = None

    def _groups(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut `order` (sorted by length) into runs of at most max_tokens slots each."""
        groups, start, longest = [], 0, 0
        for i, index in enumerate(order):
            longest_with = max(longest, int(self.lengths[index]))
            if i > start and (i - start + 1) * longest_with > self.max_tokens:
                groups.append(order[start:i])
                start, longest_with = i, int(self.lengths[index])
            longest = longest_with
        if start < len(order):
            groups.append(order[start:])
        return groups

    def _plan(self, shuffle: bool) -> list[np.ndarray]:
        # a random order within each length (the tie-break), so a length's batches differ between epochs
        ties = self.rng.random(len(self)) if shuffle else np.arange(len(self))
        groups = self._groups(np.lexsort((ties, self.lengths)))
        if shuffle:
            groups = [groups[i] for i in self.rng.permutation(len(groups))]
        return groups

    def num_batches(self, batch_size: int = 0) -> int:
        if self._count is None:  # the same for every order: it depends on the sorted lengths only
            self._count = len(self._groups(np.argsort(self.lengths, kind="stable")))
        return self._count

    def take(self, index) -> "ArrayData":
        return ArrayData(tuple(x[index] for x in self.xs), None if self.y is None else self.y[index])

    def to(self, device):
        return self  # each batch moves to the device when it is drawn

    def batches(self, batch_size: int = 0, *, shuffle: bool = False, order=None, start: int = 0, device=None,
                trim: bool = True):
        """(inputs, targets, None) per batch from batch `start` on, each cut to its longest sequence;
        `batch_size` and `order` are not used (the batches are planned here)."""
        for group in self._plan(shuffle)[start:]:
            index = torch.from_numpy(group)
            xs = tuple(trim_padding(x[index]) for x in self.xs)
            y = None if self.y is None else trim_padding(self.y[index])
            if device is not None and torch.device(device).type != "cpu":
                xs = tuple(x.to(device, non_blocking=True) for x in xs)
                y = None if y is None else y.to(device, non_blocking=True)
            yield xs, y, None
