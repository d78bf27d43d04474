"""In-memory arrays as batches, by tensor indexing: no per-sample Python anywhere."""
import numpy as np
import torch


MAX_CLASSES = 1_000_000  # labels at or above this are refused as mistakes (a class list that long is one)


def to_tensor(array, what: str) -> torch.Tensor:
    """NumPy, lists or tensors -> a tensor; float64 becomes float32 (Keras's floatx), bool becomes float32."""
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))
    if tensor.dtype == torch.float64 or tensor.dtype == torch.bool:
        tensor = tensor.float()
    if tensor.dim() == 0:
        raise ValueError(f"{what} must have a batch axis, got a scalar")
    return tensor


def as_inputs(x) -> tuple[torch.Tensor, ...]:
    """A model's inputs as a tuple: one array, or a list/tuple of arrays for several inputs."""
    if x is None:
        raise ValueError("no input data: pass x (an array, or a list of arrays for several inputs)")
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]) and hasattr(x[0], "__len__"):
        return tuple(to_tensor(a, f"x[{i}]") for i, a in enumerate(x))
    return (to_tensor(x, "x"),)


def class_weights_for(y: torch.Tensor, class_weight: dict) -> torch.Tensor:
    """Per-sample weights from Keras's `class_weight={class: weight}` (integer or one-hot labels)."""
    labels = y.argmax(dim=-1) if y.dim() > 1 and y.shape[-1] > 1 else y.reshape(len(y)).long()
    table = torch.ones(int(max(max(class_weight), labels.max().item())) + 1)
    for cls, weight in class_weight.items():
        table[int(cls)] = float(weight)
    return table[labels]


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Right-padded token ids (batch, steps) cut after the last column holding a real (non-zero) id.

    Padding to the longest text of each batch rather than of the dataset, as Hugging Face's collators do:
    a model that masks padding gives the same outputs, with less work (SST-2's texts fill a sixth of 56 steps).
    """
    if ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        return ids
    used = (ids != 0).any(dim=0).nonzero()
    steps = int(used[-1]) + 1 if len(used) else 1
    return ids[:, :steps] if steps < ids.shape[1] else ids


class ArrayData:
    """Inputs, targets and sample weights of equal length, batched by indexing.

    >>> data = ArrayData(x, y); for xs, y, w in data.batches(32, shuffle=True): ...
    """

    def __init__(self, x, y=None, sample_weight=None, class_weight=None):
        self.xs = as_inputs(x)
        self.y = to_tensor(y, "y") if y is not None else None
        self.weight = to_tensor(sample_weight, "sample_weight").float() if sample_weight is not None else None
        if class_weight is not None:
            if self.y is None:
                raise ValueError("class_weight needs targets y")
            weights = class_weights_for(self.y, class_weight)
            self.weight = weights if self.weight is None else self.weight * weights
        self._check_lengths()

    def _check_lengths(self):
        named = {f"x[{i}]" if len(self.xs) > 1 else "x": t for i, t in enumerate(self.xs)}
        named.update({"y": self.y, "sample_weight": self.weight})
        lengths = {name: len(t) for name, t in named.items() if t is not None}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise ValueError(f"inputs and targets must have the same number of samples: {detail}")

    def __len__(self) -> int:
        return len(self.xs[0])

    def _tensors(self):
        return (*self.xs, self.y, self.weight)

    @classmethod
    def _from(cls, tensors, n_inputs):
        data = cls.__new__(cls)
        data.xs, (data.y, data.weight) = tuple(tensors[:n_inputs]), tensors[n_inputs:]
        return data

    def take(self, index) -> "ArrayData":
        return self._from([t[index] if t is not None else None for t in self._tensors()], len(self.xs))

    def split(self, fraction: float) -> tuple["ArrayData", "ArrayData"]:
        """The first (1 - fraction) and the last `fraction` of the samples, as Keras's validation_split."""
        if not 0 < fraction < 1:
            raise ValueError(f"validation_split must be between 0 and 1, got {fraction!r}")
        cut = int(len(self) * (1 - fraction))
        return self.take(slice(0, cut)), self.take(slice(cut, None))

    def to(self, device: torch.device) -> "ArrayData":
        return self._from([t.to(device) if t is not None else None for t in self._tensors()], len(self.xs))

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def epoch_order(self, shuffle: bool) -> torch.Tensor | None:
        """The order of one epoch's samples: a fresh permutation when shuffling, else None (as stored)."""
        return torch.randperm(len(self)) if shuffle else None

    def batches(self, batch_size: int, *, shuffle: bool = False, order=None, start: int = 0, device=None,
                trim: bool = False):
        """Yields (inputs tuple, y or None, weight or None) per batch, from batch `start` on; samples in
        `order` if given (all of them, or a subset: a process's shard), else a new order each call when
        shuffling. `trim`: cut token-id inputs to the longest text in the batch (`trim_padding`)."""
        if order is None and shuffle:
            order = self.epoch_order(True)
        for first in range(start * batch_size, len(order) if order is not None else len(self), batch_size):
            index = order[first:first + batch_size] if order is not None else slice(first, first + batch_size)
            batch = [t[index] if t is not None else None for t in self._tensors()]
            if device is not None:
                batch = [t.to(device, non_blocking=True) if t is not None and t.device != device else t
                         for t in batch]
            xs = tuple(trim_padding(x) for x in batch[:len(self.xs)]) if trim else tuple(batch[:len(self.xs)])
            yield xs, batch[-2], batch[-1]
