"""translation: a sentence in one language in, its translation out (Multi30k German -> English).

One BPE vocabulary is trained on both sides of the training pairs (reversible, so translations come back
as plain text) and stored in the model file. Training batches group sentences of similar length up to
`data.max_tokens` tokens; after every epoch `val_bleu` scores greedy translations of the first
`data.validation_sentences` validation pairs. The test set is translated by beam search (`test_bleu`)
and greedily (`test_bleu_greedy`), scored by sacreBLEU on detokenized text against the references.

`ember translate MODEL "Ein Mann fährt Fahrrad."` translates any text; `--beam N` sets the beam.
"""
import dataclasses
import functools
import json
import re
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ember import datasets
from ember.data.arrays import ArrayData
from ember.data.sequences import TokenBatches
from ember.data.subword import SubwordTokenizer
from ember.errors import DatasetError, ModelFileError
from ember.evaluation import report
from ember.models import decoding
from ember.models.translation import BOS, EOS, PAD, UNK, Translator
from ember.tasks import config as config_lib
from ember.tasks.config import ConfigError, RunConfig, Section
from ember.tasks.model_specs import ModelSpec, create_registered
from ember.train import callbacks as callbacks_lib
from ember.train.losses import SparseCategoricalCrossentropy

SPECIAL = ["[BOS]", "[EOS]"]  # ids 2 and 3, after padding and [UNK]
EXAMPLES = 10  # test translations shown in the report
TRANSLATOR_MODELS = ("transformer_translator", "gru_translator")
# a sentence ends at . ! or ? followed by space and a capital, digit or opening quote (German capitalizes nouns,
# so an abbreviation before a noun splits too: harmless, each piece is translated)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ0-9\"„'(])")


class Data(Section):
    dataset: Literal["multi30k"] = "multi30k"
    source: Literal["de", "en"] = "de"
    target: Literal["de", "en"] = "en"
    vocab_size: int = Field(8000, ge=64, description="joint BPE vocabulary of both languages, special tokens "
                                                     "included")
    max_tokens: int = Field(2500, ge=64, description="token slots per training batch: sentences x the longest "
                                                     "one, padding included")
    max_length: int = Field(128, ge=2, description="training pairs with a side longer than this many tokens are "
                                                   "left out (any length translates)")
    subset: int | None = Field(None, ge=1, description="train on the first N training pairs only")
    validation_sentences: int = Field(500, ge=0, description="validation pairs translated (greedy) after each "
                                                             "epoch for val_bleu; 0: no val_bleu")

    @model_validator(mode="after")
    def _two_languages(self):
        if self.source == self.target:
            raise ValueError(f"data.source and data.target must differ, got {self.source!r} twice")
        return self


class Decoding(Section):
    beam_size: int = Field(4, ge=1, description="hypotheses kept per step for test_bleu and `ember translate`")
    length_penalty: float = Field(1.0, ge=0, description="beam scores are log-probability / length ** this")
    max_length: int | None = Field(None, ge=1, description="target tokens at most; default 1.5 x source + 10")
    batch_size: int = Field(64, ge=1, description="sentences decoded together")


class Train(config_lib.Train):
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="share of each target's probability spread "
                                                                "over the whole vocabulary")


class Config(RunConfig):
    task: Literal["translation"]
    data: Data = Data()
    model: ModelSpec = ModelSpec(name="transformer_translator")
    train: Train = Train()
    decoding: Decoding = Decoding()

    @model_validator(mode="after")
    def _registered_translator(self):
        if self.model.name not in TRANSLATOR_MODELS:
            given = "model.layers" if self.model.name is None else repr(self.model.name)
            raise ValueError(f"model.name: {given} is not a translator; translation needs one of "
                             f"{', '.join(TRANSLATOR_MODELS)}")
        return self


@dataclasses.dataclass
class Corpus:
    """Sentence pairs as text, the joint tokenizer, and the training pairs as ids."""
    tokenizer: SubwordTokenizer
    train_source: np.ndarray   # (N, steps) ids ending in [EOS]
    train_target: np.ndarray   # (N, steps) ids ending in [EOS]
    val_texts: tuple[np.ndarray, np.ndarray]
    test_texts: tuple[np.ndarray, np.ndarray]
    languages: tuple[str, str]
    source: str
    decoding: dict = dataclasses.field(default_factory=dict)  # the config's decoding section, kept with the model

    def test_size(self) -> int:
        return len(self.test_texts[0])


def with_end(ids: np.ndarray) -> np.ndarray:
    """Right-padded ids with [EOS] after each row's last real token (one column wider)."""
    lengths = (ids != PAD).sum(1)
    out = np.zeros((len(ids), ids.shape[1] + 1), dtype=np.int64)
    out[:, :-1] = ids
    out[np.arange(len(ids)), lengths] = EOS
    return out


def shifted_right(target: np.ndarray) -> np.ndarray:
    """The decoder's input for teacher forcing: [BOS] then the target without its [EOS]."""
    shifted = np.concatenate([np.full((len(target), 1), BOS, dtype=np.int64), target[:, :-1]], axis=1)
    shifted[shifted == EOS] = PAD
    return shifted


def load_data(*, dataset="multi30k", source="de", target="en", vocab_size=8000, max_length=128, subset=None,
              **_) -> Corpus:
    (x_train, y_train), val, test = getattr(datasets, dataset).load_data(source=source, target=target)
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    tokenizer = SubwordTokenizer("bpe", vocab_size=vocab_size, lowercase=False, reversible=True,
                                 special_tokens=SPECIAL)
    try:
        tokenizer.adapt(np.concatenate([x_train, y_train]))  # training text only
    except ValueError as e:
        raise ConfigError(f"data.vocab_size: {e}") from None
    x_ids, y_ids = with_end(tokenizer.encode(x_train)), with_end(tokenizer.encode(y_train))
    fits = ((x_ids != PAD).sum(1) <= max_length + 1) & ((y_ids != PAD).sum(1) <= max_length + 1)
    if not fits.any():
        raise DatasetError(f"{dataset}: no training pair has both sides within data.max_length={max_length} tokens")
    return Corpus(tokenizer, x_ids[fits], y_ids[fits], val, test, (source, target),
                  f"dataset {dataset} {source}->{target}")


def encode_sources(tokenizer: SubwordTokenizer, texts) -> np.ndarray:
    """Source ids ending in [EOS]. Characters the vocabulary never saw ([UNK]) are left out: every training
    character is in the vocabulary, so the model never learned what [UNK] means."""
    ids = tokenizer.encode([str(t) for t in texts])
    ids[ids == UNK] = PAD
    ids = np.take_along_axis(ids, np.argsort(ids == PAD, axis=1, kind="stable"), axis=1)  # real ids first, in order
    return with_end(ids)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (the model was trained on one sentence at a time); none for blank text."""
    return [part for part in SENTENCE_BREAK.split(str(text).strip()) if part]


def translate_texts(model: Translator, tokenizer: SubwordTokenizer, texts, *, beam_size=1, length_penalty=1.0,
                    max_length=None, batch_size=64) -> list[str]:
    """Translations of `texts`, decoded with beam search (`beam_size` > 1) or greedily."""
    if len(texts) == 0:
        return []
    ids = decoding.translate_ids(model, encode_sources(tokenizer, texts), beam_size=beam_size,
                                 length_penalty=length_penalty, max_length=max_length, batch_size=batch_size)
    return tokenizer.decode(_padded(ids))


def _padded(rows: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(rows), max(1, max(len(r) for r in rows))), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def bleu(hypotheses, references):
    """sacreBLEU's corpus BLEU (13a tokenization, cased) of detokenized text: the BLEU object."""
    import sacrebleu
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)])


class ValidationBleu(callbacks_lib.Callback):
    """After each epoch: greedy translations of the first validation pairs -> `val_bleu` and the minutes
    since training began (`minutes`, this scoring included) in the epoch's logs. Checkpoints and early
    stopping may monitor val_bleu (higher is better)."""

    logged = ("val_bleu", "minutes")

    def __init__(self, tokenizer, texts, batch_size: int):
        super().__init__()
        self.tokenizer, (self.sources, self.references), self.batch_size = tokenizer, texts, batch_size

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        hypotheses = translate_texts(self.model, self.tokenizer, self.sources, batch_size=self.batch_size)
        self.model.train()
        if logs is not None:
            logs["val_bleu"] = bleu(hypotheses, self.references).score
            logs["minutes"] = (time.perf_counter() - self.started) / 60


class Translation:
    name = "translation"
    config_class = Config

    def loss_and_metrics(self, config: Config):
        return SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD,
                                             label_smoothing=config.train.label_smoothing), []

    def test_size(self, data: Corpus) -> int:
        return data.test_size()

    def load_data(self, config: Config) -> Corpus:
        corpus = load_data(**config.data.model_dump())
        corpus.decoding = config.decoding.model_dump()
        return corpus

    def build_model(self, config: Config, data: Corpus) -> Translator:
        return create_registered(config.model.name, config.model.args,
                                 vocabulary_size=data.tokenizer.vocabulary_size())

    def fit_arrays(self, config: Config, data: Corpus):
        batches = TokenBatches((data.train_source, shifted_right(data.train_target)), data.train_target,
                               max_tokens=config.data.max_tokens, seed=config.train.seed)
        return batches, None

    def validation_data(self, config: Config, data: Corpus) -> ArrayData:
        sources, references = data.val_texts
        source = encode_sources(data.tokenizer, sources)
        target = with_end(data.tokenizer.encode(list(references)))
        return TokenBatches((source, shifted_right(target)), target, max_tokens=config.data.max_tokens)

    def callbacks(self, config: Config, data: Corpus) -> list:
        n = config.data.validation_sentences
        if not n:
            return []
        sources, references = data.val_texts
        return [ValidationBleu(data.tokenizer, (sources[:n], references[:n]), config.decoding.batch_size)]

    def metadata(self, data: Corpus) -> dict:
        return {"task": self.name, "languages": list(data.languages), "decoding": data.decoding,
                "preprocessing": {"tokenizer": data.tokenizer.get_config()}}

    def tokenizer(self, model) -> SubwordTokenizer:
        entry = (model.metadata.get("preprocessing") or {}).get("tokenizer")
        if not isinstance(entry, dict) or not entry.get("tokenizer"):
            raise ModelFileError("the model file has no translation tokenizer: train it with `ember train` and a "
                                 "translation config")
        try:
            return SubwordTokenizer.from_config(entry)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"the model file's tokenizer is unusable: {e}") from None

    def decoding(self, model) -> Decoding:
        """The decoding settings the model was trained with (its config's `decoding` section)."""
        try:
            return Decoding(**(model.metadata.get("decoding") or {}))
        except ValueError as e:
            raise ModelFileError(f"the model file's decoding settings are unusable: {e}") from None

    def evaluation_data(self, model, data_arg: str) -> Corpus:
        if data_arg != "multi30k":
            raise DatasetError(f"--data {data_arg}: translation models are evaluated on 'multi30k'")
        source, target = model.metadata.get("languages", ["de", "en"])
        _, val, test = datasets.multi30k.load_data(source=source, target=target)
        empty = np.zeros((0, 1), dtype=np.int64)
        return Corpus(self.tokenizer(model), empty, empty, val, test, (source, target), f"dataset {data_arg}")

    def evaluate(self, model, data: Corpus, batch_size: int):
        settings, tokenizer = self.decoding(model), self.tokenizer(model)  # the vocabulary it was trained with
        sources, references = data.test_texts
        started = time.perf_counter()
        greedy = translate_texts(model, tokenizer, sources, batch_size=settings.batch_size,
                                 max_length=settings.max_length)
        greedy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        beam = translate_texts(model, tokenizer, sources, beam_size=settings.beam_size,
                               length_penalty=settings.length_penalty, max_length=settings.max_length,
                               batch_size=settings.batch_size)
        beam_seconds = time.perf_counter() - started
        beam_bleu, greedy_bleu = bleu(beam, references), bleu(greedy, references)
        metrics = {"test_bleu": round(beam_bleu.score, 2), "test_bleu_greedy": round(greedy_bleu.score, 2),
                   "beam_size": settings.beam_size, "length_penalty": settings.length_penalty,
                   "test_sentences": len(sources)}
        seconds = {"beam": round(beam_seconds, 1), "greedy": round(greedy_seconds, 1)}  # not metrics: they vary
        return metrics, {"beam": beam, "greedy": greedy, "bleu": beam_bleu, "seconds": seconds}

    def summary_line(self, metrics: dict) -> str:
        return (f"test BLEU {metrics['test_bleu']:.2f} (beam {metrics['beam_size']}), "
                f"{metrics['test_bleu_greedy']:.2f} (greedy) on {metrics['test_sentences']:,} test sentences")

    def report_sections(self, run_dir: Path, data: Corpus, metrics: dict, details: dict, config: Config) -> list[str]:
        from ember.evaluation import plots
        sections = [f"## BLEU\n\nsacreBLEU, detokenized and cased, on {metrics['test_sentences']:,} test "
                    f"sentences: **{metrics['test_bleu']:.2f}** with beam search (beam {metrics['beam_size']}, "
                    f"length penalty {metrics['length_penalty']}), {metrics['test_bleu_greedy']:.2f} greedy. "
                    f"Decoding took {details['seconds']['beam']} s (beam) and {details['seconds']['greedy']} s "
                    f"(greedy).\n\n`{details['bleu']}`\n"]
        history = _history(run_dir / "metrics.jsonl")
        curve = [(row["minutes"], row["val_bleu"]) for row in history if "val_bleu" in row and "minutes" in row]
        if curve:
            rows = "\n".join(f"| {i + 1} | {m:.1f} | {b:.2f} |" for i, (m, b) in enumerate(curve))
            figure = ""
            if config.output.plots:
                plots.bleu_curve(curve, run_dir / "plots" / "bleu_vs_time.png")
                figure = "![validation BLEU against training time](plots/bleu_vs_time.png)\n\n"
            sections.append(f"## BLEU against training time\n\nGreedy BLEU on the first "
                            f"{config.data.validation_sentences} validation sentences after each epoch, against "
                            f"the minutes since training began.\n\n{figure}| epoch | minutes | val BLEU |\n"
                            f"|---|---|---|\n{rows}\n")
        sources, references = data.test_texts
        cell = functools.partial(report.table_cell, limit=140)
        rows = "\n".join(f"| {cell(sources[i])} | {cell(references[i])} | {cell(details['beam'][i])} |"
                         for i in range(min(EXAMPLES, len(sources))))
        sections.append(f"## Test translations\n\n| source | reference | translation (beam) |\n|---|---|---|\n"
                        f"{rows}\n")
        return sections

    def predict(self, model, inputs, top_k: int = 1, *, beam_size=None, max_length=None) -> list[dict]:
        """Translations of the input texts (`top_k` is not used: one translation each). A text of several
        sentences is translated sentence by sentence; a blank one translates to ""."""
        settings = self.decoding(model)
        texts = [str(text) for text in inputs]
        sentences = [split_sentences(text) for text in texts]
        translated = iter(translate_texts(model, self.tokenizer(model), [s for parts in sentences for s in parts],
                                          beam_size=beam_size or settings.beam_size,
                                          length_penalty=settings.length_penalty,
                                          max_length=max_length or settings.max_length,
                                          batch_size=settings.batch_size))
        return [{"input": text, "translation": " ".join(next(translated) for _ in parts)}
                for text, parts in zip(texts, sentences)]


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TASK = Translation()
