"""SubwordTokenizer: strings -> padded subword ids (BPE or WordPiece), trained by Hugging Face `tokenizers`.

Same interface as `TextVectorization` (`adapt`, `encode`, `vocabulary_size`, `get_config`): index 0 is
padding ("[PAD]") and 1 the unknown token ("[UNK]"), and sequences are padded or cut at the end. With
`reversible=True` spaces become part of the tokens ("▁", as SentencePiece), so `decode` gives back the text
exactly, as a model that writes text (a translator) needs. The trained
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
SPACE = "\u2581"  # "▁": a reversible tokenizer's mark of a space before a word (SentencePiece's)


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


def _reversible_tokenizer() -> Tokenizer:
    """BPE over words that carry their leading space as "▁", punctuation split off: decoding concatenates."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always"),
        pre_tokenizers.Punctuation(behavior="isolated")])
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always")
    return tokenizer


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

    def __init__(self, kind="bpe", *, vocab_size=8000, output_sequence_length=None, lowercase=True, reversible=False,
                 special_tokens=(), tokenizer=None):
        if kind not in KINDS:
            raise ValueError(f"SubwordTokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"SubwordTokenizer vocab_size must be an integer >= 3 (padding, [UNK], one more), "
                             f"got {vocab_size!r}")
        if output_sequence_length is not None and (not isinstance(output_sequence_length, int)
                                                   or output_sequence_length < 1):
            raise ValueError(f"SubwordTokenizer output_sequence_length must be a positive integer or None, "
                             f"got {output_sequence_length!r}")
        if reversible and kind != "bpe":
            raise ValueError(f"SubwordTokenizer reversible=True works with kind 'bpe', got {kind!r}")
        special_tokens = list(special_tokens)
        if any(not isinstance(t, str) or not t or t in SPECIAL_TOKENS for t in special_tokens) \
                or len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"SubwordTokenizer special_tokens must be distinct non-empty strings other than "
                             f"{PAD} and {UNK}, got {special_tokens!r}")
        self.kind, self.vocab_size, self.lowercase = kind, vocab_size, bool(lowercase)
        self.reversible, self.special_tokens = bool(reversible), special_tokens
        self.output_sequence_length = output_sequence_length
        self.tokenizer = None if tokenizer is None else _from_json(tokenizer, self.all_special_tokens)

    @property
    def all_special_tokens(self) -> list[str]:
        """[PAD], [UNK] and the extra `special_tokens`, which take ids 0, 1, 2, ... in this order."""
        return SPECIAL_TOKENS + self.special_tokens

    def token_id(self, token: str) -> int:
        """The id of a special token ("[PAD]" -> 0)."""
        if token not in self.all_special_tokens:
            raise KeyError(f"{token!r} is not one of this tokenizer's special tokens {self.all_special_tokens}")
        return self.all_special_tokens.index(token)

    def adapt(self, texts) -> None:
        """Train the subword vocabulary on `texts`; the same texts give the same tokenizer in any process."""
        kind, texts = KINDS[self.kind], [str(text) for text in texts]
        if self.reversible:
            tokenizer, options = _reversible_tokenizer(), {}
        else:
            tokenizer, options = Tokenizer(kind.model()), kind.options
            tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
            tokenizer.decoder = kind.decoder()
        tokenizer.normalizer = _normalizer(self.lowercase)
        # The trainer numbers the characters ("e", "##e", "e</w>") in hash-map order, which differs between
        # processes and breaks ties between equally frequent merges differently (huggingface/tokenizers#1794):
        # listing them after the special tokens numbers them in sorted order instead.
        alphabet = _alphabet(tokenizer, texts)
        if self.reversible:
            initial, per_character = sorted(set(alphabet) | {SPACE}), "one token each"
        else:
            initial, per_character = [kind.marked(c) for c in alphabet], f"two tokens each ('e' and {kind.marked('e')!r})"
        smallest = len(self.all_special_tokens) + len(initial) * (1 if self.reversible else 2)
        if smallest > self.vocab_size:
            raise ValueError(f"SubwordTokenizer vocab_size {self.vocab_size} is too small for the training texts: "
                             f"their {len(initial)} distinct characters take {per_character}, so it must be at "
                             f"least {smallest} with the special tokens")
        trainer = kind.trainer(vocab_size=self.vocab_size, special_tokens=self.all_special_tokens + initial,
                               show_progress=False, **options)
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

    def decode(self, ids) -> list[str]:
        """Texts from rows of ids: each row stops at its first padding, special tokens are dropped.
        A reversible tokenizer gives back the (normalized) text exactly."""
        tokenizer, special = self._trained(), len(self.all_special_tokens)
        rows = []
        for row in np.asarray(ids).reshape(-1, np.shape(ids)[-1]) if np.ndim(ids) else [[]]:
            row = [int(i) for i in row]
            row = row[:row.index(0)] if 0 in row else row
            rows.append([i for i in row if i >= special])
        return [text for text in tokenizer.decode_batch(rows, skip_special_tokens=False)]

    def get_config(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "output_sequence_length": self.output_sequence_length,
                "lowercase": self.lowercase, "reversible": self.reversible, "special_tokens": self.special_tokens,
                "tokenizer": None if self.tokenizer is None else self.tokenizer.to_str()}

    @classmethod
    def from_config(cls, config: dict) -> "SubwordTokenizer":
        config = dict(config)
        return cls(config.pop("kind", "bpe"), **config)


def _from_json(text, special_tokens=SPECIAL_TOKENS) -> Tokenizer:
    if not isinstance(text, str):
        raise ValueError(f"SubwordTokenizer tokenizer must be the JSON text of a trained tokenizer, got "
                         f"{type(text).__name__}")
    try:
        tokenizer = Tokenizer.from_str(text)
        tokenizer.no_padding()  # SubwordTokenizer pads and cuts, in encode
        tokenizer.no_truncation()
    except Exception as e:  # the Rust side raises plain Exception for malformed JSON
        raise ValueError(f"SubwordTokenizer tokenizer is not a valid `tokenizers` JSON: {e}") from None
    if [tokenizer.token_to_id(token) for token in special_tokens] != list(range(len(special_tokens))):
        raise ValueError(f"SubwordTokenizer tokenizer must give its special tokens {special_tokens} the ids "
                         f"0 to {len(special_tokens) - 1}")
    return tokenizer
