"""TextVectorization: strings -> padded integer token ids, with Keras's arguments and `adapt`.

The vocabulary is part of the layer's config, so it travels inside the model file (as JSON).
Index 0 is padding ("") and 1 the out-of-vocabulary token ("[UNK]"), as in Keras; sequences are
padded or cut at the end to `output_sequence_length`, so masks are right-padded as RNNs need.
"""
import collections
import re

import numpy as np
import torch

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
