"""SubwordTokenizer: strings -> padded subword ids (BPE or WordPiece), trained by Hugging Face `tokenizers`.

Same interface as `TextVectorization` (`adapt`, `encode`, `vocabulary_size`, `get_config`): index 0 is
padding ("[PAD]") and 1 the unknown token ("[UNK]"), and sequences are padded or cut at the end. The trained
tokenizer is part of the config as the library's own JSON, so it travels inside the model file; loading it
parses JSON and runs no code.
"""
import itertools
import json
from typing import Callable, NamedTuple

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, UNK = "[PAD]", "[UNK]"
SPECIAL_TOKENS = [PAD, UNK]  # given to the trainer first, so they take ids 0 and 1
END_OF_WORD = "</w>"  # BPE marks word ends (Sennrich et al.), so "the film" and "thefilm" differ


class Kind(NamedTuple):
    model: Callable[[], models.Model]
    trainer: type
    options: dict
    decoder: Callable[[], decoders.Decoder]
    marked: Callable[[str], str]  # the form a character takes inside a word ("##e") or at its end ("e</w>")


KINDS = {
    "bpe": Kind(lambda: models.BPE(unk_token=UNK, end_of_word_suffix=END_OF_WORD, fuse_unk=True),
                trainers.BpeTrainer, {"end_of_word_suffix": END_OF_WORD},
                lambda: decoders.BPEDecoder(suffix=END_OF_WORD), lambda c: c + END_OF_WORD),
    "wordpiece": Kind(lambda: models.WordPiece(unk_token=UNK), trainers.WordPieceTrainer, {},
                      decoders.WordPiece, lambda c: "##" + c),
}


def _normalizer(lowercase: bool):
    if lowercase:  # BERT-uncased: "Café" -> "cafe"
        return normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    return normalizers.NFC()


def _alphabet(tokenizer: Tokenizer, texts: list[str]) -> list[str]:
    """The characters the trainer will see, sorted: those of the normalized texts that the pre-tokenizer keeps."""
    characters = set(tokenizer.normalizer.normalize_str("\n".join(texts)))
    return sorted(c for c in characters if tokenizer.pre_tokenizer.pre_tokenize_str(c))  # not whitespace


def _without_added_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer with its special tokens as plain vocabulary, so that a text saying "[PAD]" is not padding."""
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(data))


class SubwordTokenizer:
    """Maps each string to subword ids: normalize, split into words and punctuation, apply BPE or WordPiece.

    `vocab_size` counts padding and [UNK], as `max_tokens` does for `TextVectorization`; a small corpus
    may give fewer tokens (`vocabulary_size()` tells). With `lowercase`, texts are lowercased and accents
    stripped (BERT-uncased); punctuation is kept as tokens of its own.

    >>> tokenizer = SubwordTokenizer("bpe", vocab_size=8000, output_sequence_length=64)
    >>> tokenizer.adapt(train_texts); ids = tokenizer.encode(["a charming film"])   # int64 (1, 64)
    """

    def __init__(self, kind="bpe", *, vocab_size=8000, output_sequence_length=None, lowercase=True, tokenizer=None):
        if kind not in KINDS:
            raise ValueError(f"SubwordTokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"SubwordTokenizer vocab_size must be an integer >= 3 (padding, [UNK], one more), "
                             f"got {vocab_size!r}")
        if output_sequence_length is not None and (not isinstance(output_sequence_length, int)
                                                   or output_sequence_length < 1):
            raise ValueError(f"SubwordTokenizer output_sequence_length must be a positive integer or None, "
                             f"got {output_sequence_length!r}")
        self.kind, self.vocab_size, self.lowercase = kind, vocab_size, bool(lowercase)
        self.output_sequence_length = output_sequence_length
        self.tokenizer = None if tokenizer is None else _from_json(tokenizer)

    def adapt(self, texts) -> None:
        """Train the subword vocabulary on `texts`; the same texts give the same tokenizer in any process."""
        kind, texts = KINDS[self.kind], [str(text) for text in texts]
        tokenizer = Tokenizer(kind.model())
        tokenizer.normalizer = _normalizer(self.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.decoder = kind.decoder()
        # The trainer numbers the marked characters ("##e", "e</w>") in hash-map order, which differs between
        # processes and breaks ties between equally frequent merges differently (huggingface/tokenizers#1794):
        # listing them after the special tokens numbers them in sorted order instead.
        marked = [kind.marked(c) for c in _alphabet(tokenizer, texts)]
        smallest = len(SPECIAL_TOKENS) + 2 * len(marked)
        if smallest > self.vocab_size:
            raise ValueError(f"SubwordTokenizer vocab_size {self.vocab_size} is too small for the training texts: "
                             f"their {len(marked)} distinct characters take two tokens each ('e' and "
                             f"{kind.marked('e')!r}), so it must be at least {smallest} with padding and [UNK]")
        trainer = kind.trainer(vocab_size=self.vocab_size, special_tokens=SPECIAL_TOKENS + marked,
                               show_progress=False, **kind.options)
        tokenizer.train_from_iterator(texts, trainer)
        self.tokenizer = _without_added_tokens(tokenizer)

    def _trained(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError(f"SubwordTokenizer({self.kind!r}) has no vocabulary yet: call adapt(texts) first")
        return self.tokenizer

    def vocabulary_size(self) -> int:
        return self._trained().get_vocab_size()

    def tokens(self, text) -> list[str]:
        """The subword strings the model sees for one text, unpadded: "Charming!" -> ["charming</w>", "!</w>"]."""
        return self._trained().encode(str(text)).tokens[:self.output_sequence_length]

    def encode(self, texts) -> np.ndarray:
        """int64 ids (N, output_sequence_length), padded with 0 at the end (or to the longest text)."""
        # encode_batch_fast skips character offsets (a third of the time); padding in NumPy spares
        # the library building N x length token strings
        ids = [encoding.ids[:self.output_sequence_length]
               for encoding in self._trained().encode_batch_fast([str(text) for text in texts])]
        lengths = np.array([len(seq) for seq in ids], dtype=np.int64)
        length = self.output_sequence_length or int(lengths.max(initial=0))
        out = np.zeros((len(ids), length), dtype=np.int64)
        out[np.arange(length) < lengths[:, None]] = np.fromiter(itertools.chain.from_iterable(ids), np.int64,
                                                                count=int(lengths.sum()))
        return out

    def get_config(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "output_sequence_length": self.output_sequence_length,
                "lowercase": self.lowercase, "tokenizer": None if self.tokenizer is None else self.tokenizer.to_str()}

    @classmethod
    def from_config(cls, config: dict) -> "SubwordTokenizer":
        config = dict(config)
        return cls(config.pop("kind", "bpe"), **config)


def _from_json(text) -> Tokenizer:
    if not isinstance(text, str):
        raise ValueError(f"SubwordTokenizer tokenizer must be the JSON text of a trained tokenizer, got "
                         f"{type(text).__name__}")
    try:
        tokenizer = Tokenizer.from_str(text)
        tokenizer.no_padding()  # SubwordTokenizer pads and cuts, in encode
        tokenizer.no_truncation()
    except Exception as e:  # the Rust side raises plain Exception for malformed JSON
        raise ValueError(f"SubwordTokenizer tokenizer is not a valid `tokenizers` JSON: {e}") from None
    if [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] != [0, 1]:
        raise ValueError(f"SubwordTokenizer tokenizer must give {PAD} id 0 and {UNK} id 1 (padding and unknown)")
    return tokenizer
