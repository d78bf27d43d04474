"""PretrainedTokenizer: a checkpoint's own tokenizer (its `tokenizer.json`, or a BERT `vocab.txt`), run by
Hugging Face `tokenizers`, with the interface of `TextVectorization` (`encode`, `vocabulary_size`, `get_config`).

Texts become `[CLS] ... [SEP]` ids cut to `output_sequence_length` and right-padded with 0 (BERT's [PAD]).
The tokenizer's JSON is part of the config, so it travels inside the model file; loading it parses JSON and
runs no code.
"""
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from ember.errors import ModelFileError


class PretrainedTokenizer:
    """>>> tokenizer = PretrainedTokenizer.from_folder("all-MiniLM-L6-v2", output_sequence_length=64)
    >>> ids = tokenizer.encode(["a charming film"])   # int64 (1, 64): [CLS] a charming film [SEP] 0 0 ...
    """

    def __init__(self, tokenizer: str, output_sequence_length: int = 128):
        if not isinstance(output_sequence_length, int) or output_sequence_length < 2:
            raise ValueError(f"PretrainedTokenizer output_sequence_length must be an integer >= 2 ([CLS] and [SEP]), "
                             f"got {output_sequence_length!r}")
        try:
            self.tokenizer = Tokenizer.from_str(tokenizer)
        except Exception as e:  # tokenizers raises its own Exception type for malformed JSON
            raise ValueError(f"not a tokenizers JSON ({str(e).splitlines()[0]})") from None
        self.output_sequence_length = output_sequence_length
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=output_sequence_length)  # [CLS] and [SEP] included
        pad = self.tokenizer.token_to_id("[PAD]")
        if pad != 0:
            raise ValueError(f"the tokenizer's [PAD] token has id {pad}; ember's text models take 0 as padding")

    @classmethod
    def from_folder(cls, folder, output_sequence_length: int = 128) -> "PretrainedTokenizer":
        """The tokenizer of a checkpoint folder: `tokenizer.json`, else `vocab.txt` (BERT WordPiece, lowercased
        when `tokenizer_config.json` says `do_lower_case`, as uncased BERTs are)."""
        folder = Path(folder)
        try:
            if (folder / "tokenizer.json").is_file():
                return cls((folder / "tokenizer.json").read_text(encoding="utf-8"), output_sequence_length)
            if (folder / "vocab.txt").is_file():
                lowercase = _tokenizer_config(folder).get("do_lower_case", True)
                wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=bool(lowercase))
                return cls(wordpiece.to_str(), output_sequence_length)
        except (ValueError, OSError) as e:
            raise ModelFileError(f"{folder}: its tokenizer is unusable: {e}") from None
        raise ModelFileError(f"{folder}: no tokenizer.json or vocab.txt")

    def adapt(self, texts) -> None:
        """Nothing to learn: the vocabulary comes with the checkpoint."""

    def encode(self, texts) -> np.ndarray:
        """int64 (N, output_sequence_length) ids, right-padded with 0."""
        encodings = self.tokenizer.encode_batch([str(text) for text in texts])
        ids = np.zeros((len(encodings), self.output_sequence_length), dtype=np.int64)
        for row, encoding in zip(ids, encodings):
            row[:len(encoding.ids)] = encoding.ids
        return ids

    def __call__(self, texts) -> np.ndarray:
        return self.encode(texts)

    def vocabulary_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def get_config(self) -> dict:
        return {"tokenizer": self.tokenizer.to_str(), "output_sequence_length": self.output_sequence_length}

    @classmethod
    def from_config(cls, config: dict) -> "PretrainedTokenizer":
        return cls(**config)


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    return config if isinstance(config, dict) else {}
