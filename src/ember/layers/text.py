"""TextVectorization: strings -> padded integer token ids, with Keras's arguments and `adapt`; and
TokenAugmentation, training-only noise on those ids.

The vocabulary is part of the layer's config, so it travels inside the model file (as JSON).
Index 0 is padding ("") and 1 the out-of-vocabulary token ("[UNK]"), as in Keras; sequences are
padded or cut at the end to `output_sequence_length`, so masks are right-padded as RNNs need.
"""
import collections
import re

import numpy as np
import torch
import torch.nn.functional as F

from ember.layers.augmentation import RandomLayer
from ember.layers.base import Layer

PAD, OOV = "", "[UNK]"
# Keras's default: lowercase, then strip ASCII punctuation
_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']')
STANDARDIZERS = {
    "lower_and_strip_punctuation": lambda text: _PUNCTUATION.sub("", text.lower()),
    "lower": str.lower,
    "strip_punctuation": lambda text: _PUNCTUATION.sub("", text),
    None: lambda text: text,
}


class TextVectorization(Layer):
    """Maps each string to token ids: standardize, split on whitespace, look up the vocabulary.

    >>> vectorize = layers.TextVectorization(max_tokens=20000, output_sequence_length=64)
    >>> vectorize.adapt(train_texts); ids = vectorize(["a charming film"])   # int64 (1, 64)
    """

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace",
                 output_mode="int", output_sequence_length=None, vocabulary=None, **kwargs):
        super().__init__(**kwargs)
        if standardize not in STANDARDIZERS:
            raise ValueError(f"standardize must be one of {', '.join(map(str, STANDARDIZERS))}, got {standardize!r}")
        if split != "whitespace":
            raise ValueError(f"split must be 'whitespace' (subword tokenizers are separate), got {split!r}")
        if output_mode != "int":
            raise ValueError(f"output_mode must be 'int', got {output_mode!r}")
        self.max_tokens, self.standardize = max_tokens, standardize
        self.output_sequence_length = output_sequence_length
        self.set_vocabulary(vocabulary or [PAD, OOV])

    def set_vocabulary(self, vocabulary) -> None:
        vocabulary = list(vocabulary)
        if vocabulary[:2] != [PAD, OOV]:
            vocabulary = [PAD, OOV, *(v for v in vocabulary if v not in (PAD, OOV))]
        self.vocabulary = vocabulary
        self.index = {token: i for i, token in enumerate(vocabulary)}

    def get_vocabulary(self) -> list[str]:
        return list(self.vocabulary)

    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def tokens(self, text: str) -> list[str]:
        return STANDARDIZERS[self.standardize](str(text)).split()

    def adapt(self, texts) -> None:
        """Build the vocabulary from `texts`: most frequent tokens first (ties in first-seen order)."""
        counts = collections.Counter(token for text in texts for token in self.tokens(text))
        limit = None if self.max_tokens is None else max(0, self.max_tokens - 2)
        self.set_vocabulary([PAD, OOV, *(token for token, _ in counts.most_common(limit))])

    def encode(self, texts) -> np.ndarray:
        """int64 ids (N, output_sequence_length), padded with 0 at the end (or to the longest text)."""
        ids = [[self.index.get(token, 1) for token in self.tokens(text)] for text in texts]
        length = self.output_sequence_length or max((len(seq) for seq in ids), default=0)
        out = np.zeros((len(ids), length), dtype=np.int64)
        for row, seq in zip(out, ids):
            seq = seq[:length]
            row[:len(seq)] = seq
        return out

    def forward(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        return torch.from_numpy(self.encode(texts))

    def __call__(self, texts):
        self.built = True  # no weights: nothing to build from strings
        return self.forward(texts)

    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens, "standardize": self.standardize,
                "split": "whitespace", "output_mode": "int", "output_sequence_length": self.output_sequence_length,
                "vocabulary": self.get_vocabulary()}


class TokenAugmentation(RandomLayer):
    """Training-only noise on token ids (batch, length) padded with 0: each token is dropped (the rest close up)
    with probability `drop_rate`, replaced by `mask_token` with `mask_rate`, and swapped with its right-hand
    neighbour with `swap_rate`. Ids in `keep_tokens` (say [CLS] and [SEP]) are never touched."""

    def __init__(self, drop_rate=0.1, mask_rate=0.0, swap_rate=0.0, mask_token: int = 1, keep_tokens=(),
                 seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        for name, rate in (("drop_rate", drop_rate), ("mask_rate", mask_rate), ("swap_rate", swap_rate)):
            if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
                raise ValueError(f"TokenAugmentation {name} must be in [0, 1), got {rate!r}")
        if not isinstance(mask_token, int) or mask_token < 0:
            raise ValueError(f"TokenAugmentation mask_token must be a token id, got {mask_token!r}")
        self.drop_rate, self.mask_rate, self.swap_rate = float(drop_rate), float(mask_rate), float(swap_rate)
        self.mask_token, self.keep_tokens = mask_token, [int(t) for t in keep_tokens]

    def augment(self, ids):
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"TokenAugmentation takes integer token ids (batch, length), got {ids.dtype} "
                             f"{tuple(ids.shape)}")
        gen = self.generator(ids.device)
        real = ids != 0
        free = real.clone()
        for token in self.keep_tokens:
            free &= ids != token
        if self.swap_rate:
            pair = free[:, :-1] & free[:, 1:] & (torch.rand(ids[:, 1:].shape, generator=gen, device=ids.device)
                                                 < self.swap_rate)
            pair[:, 1:] &= ~pair[:, :-1]  # a token takes part in one swap at most
            left = F.pad(pair, (0, 1))
            right = F.pad(pair, (1, 0))
            ids = torch.where(left, ids.roll(-1, 1), torch.where(right, ids.roll(1, 1), ids))
        if self.mask_rate:
            masked = free & (torch.rand(ids.shape, generator=gen, device=ids.device) < self.mask_rate)
            ids = torch.where(masked, torch.full_like(ids, self.mask_token), ids)
        if self.drop_rate:
            drop = free & (torch.rand(ids.shape, generator=gen, device=ids.device) < self.drop_rate)
            keep = real & ~drop
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
            ids = torch.where(keep.gather(1, order), ids.gather(1, order), torch.zeros_like(ids))
        return ids

    def get_config(self):
        return {**super().get_config(), "drop_rate": self.drop_rate, "mask_rate": self.mask_rate,
                "swap_rate": self.swap_rate, "mask_token": self.mask_token, "keep_tokens": self.keep_tokens}
