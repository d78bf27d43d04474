"""text_classification: a sentence in, one class out (sentiment on SST-2, or any labelled CSV/TSV).

Texts become padded token ids through a `TextVectorization` (words) or a `SubwordTokenizer` (BPE or
WordPiece) adapted on the training texts; its vocabulary is stored in the model file, so
`ember predict MODEL "a sentence"` works on raw text.
"""
import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ember import datasets
from ember.data.pretrained_tokenizer import PretrainedTokenizer
from ember.data.subword import SubwordTokenizer
from ember.data.text import read_labeled_text
from ember.errors import DatasetError, ModelFileError
from ember.evaluation import report
from ember.layers import TextVectorization
from ember.models import Sequential
from ember.models.pretrained import from_pretrained, resolve_folder
from ember.tasks.config import ConfigError, RunConfig, Section, absolute_path
from ember.tasks.model_specs import (AugmentedModelSpec, create_registered, finish_classifier, layer_from_spec,
                                     with_augmentation)

NAMED = {"sst2": lambda: list(datasets.sst2.CLASS_NAMES)}
# the classes a model file may name for its token ids; never a name imported from the file
VECTORIZERS = {"TextVectorization": TextVectorization, "SubwordTokenizer": SubwordTokenizer,
               "PretrainedTokenizer": PretrainedTokenizer}
Vectorizer = TextVectorization | SubwordTokenizer | PretrainedTokenizer


class Data(Section):
    dataset: Literal["sst2"] | None = None
    train_file: str | None = Field(None, description="CSV (.csv) or tab-separated (.tsv) file with a header")
    test_file: str | None = Field(None, description="default: hold out test_split of train_file")
    text_column: str = "sentence"
    label_column: str = "label"
    tokenizer: Literal["words", "bpe", "wordpiece"] = Field(
        "words", description="words: whitespace-separated words (TextVectorization); bpe, wordpiece: subwords "
                             "trained on the training texts with the `tokenizers` library (SubwordTokenizer)")
    max_tokens: int = Field(20000, ge=3, description="vocabulary size, padding and [UNK] included")
    sequence_length: int = Field(64, ge=1, description="token ids per text: longer texts are cut, shorter padded")
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation"] | None = Field(
        "lower_and_strip_punctuation",
        description="words: applied before splitting; bpe, wordpiece: a value with 'lower' lowercases and strips "
                    "accents, and punctuation always stays, as tokens of its own")
    validation_split: float = Field(0.1, ge=0, lt=1, description="last fraction of the training set")
    test_split: float = Field(0.2, gt=0, lt=1)
    subset: int | None = Field(None, ge=1, description="train on the first N training texts only")
    split_seed: int = Field(0, ge=0)

    _absolute = field_validator("train_file", "test_file")(absolute_path)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.train_file is None):
            raise ValueError("set exactly one of data.dataset and data.train_file")
        if self.test_file is not None and self.train_file is None:
            raise ValueError("data.test_file goes with data.train_file")
        return self


class TextModelSpec(AugmentedModelSpec):
    pretrained: str | None = Field(None, description="a BERT-family checkpoint folder (config.json, model.safetensors, "
                                   "tokenizer.json or vocab.txt), or an installed package shipping one; its "
                                   "tokenizer replaces data.tokenizer. args: pooling (mean, cls), dropout")

    @model_validator(mode="after")
    def _name_or_layers(self):
        if sum(value is not None for value in (self.name, self.layers, self.pretrained)) != 1:
            raise ValueError("set exactly one of model.name (a registered model), model.layers (a list of layers) "
                             "and model.pretrained (a checkpoint folder)")
        if self.layers is not None and self.args:
            raise ValueError("model.args applies to model.name and model.pretrained; give layer arguments in "
                             "model.layers")
        if self.pretrained is not None and set(self.args) - {"pooling", "dropout"}:
            raise ValueError(f"model.args for a pretrained model: pooling, dropout; got {sorted(self.args)}")
        return self


class Config(RunConfig):
    task: Literal["text_classification"]
    data: Data
    model: TextModelSpec = TextModelSpec(name="bilstm_classifier")


@dataclasses.dataclass
class Texts:
    """Token ids (N, sequence_length), labels, and the raw test texts for the report."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_texts: np.ndarray
    class_names: list[str]
    vectorizer: Vectorizer
    source: str


def _split(texts, labels, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = max(1, int(round(len(texts) * fraction)))
    test, train = order[:n_test], order[n_test:]
    return (texts[train], labels[train]), (texts[test], labels[test])


def load_texts(*, dataset=None, train_file=None, test_file=None, text_column="sentence", label_column="label",
               test_split=0.2, split_seed=0):
    """((train_texts, train_labels), (test_texts, test_labels), class_names, source)."""
    if dataset is not None:
        train, test = getattr(datasets, dataset).load_data()
        return train, test, NAMED[dataset](), f"dataset {dataset}"
    texts, labels, names = read_labeled_text(train_file, text_column, label_column)
    if test_file is None:
        train, test = _split(texts, labels, test_split, split_seed)
    else:
        train = texts, labels
        test_texts, test_labels, _ = read_labeled_text(test_file, text_column, label_column,
                                                       None if names[0] == "0" else names)
        test = test_texts, test_labels
        names = [str(i) for i in range(max(labels.max(), test_labels.max()) + 1)] if names[0] == "0" else names
    return train, test, names, f"file {train_file}"


def make_vectorizer(tokenizer="words", *, max_tokens=20000, sequence_length=64,
                    standardize="lower_and_strip_punctuation") -> Vectorizer:
    """An un-adapted TextVectorization ("words") or SubwordTokenizer ("bpe", "wordpiece")."""
    if tokenizer == "words":
        return TextVectorization(max_tokens=max_tokens, standardize=standardize, output_sequence_length=sequence_length)
    return SubwordTokenizer(tokenizer, vocab_size=max_tokens, output_sequence_length=sequence_length,
                            lowercase="lower" in (standardize or ""))


def load_data(*, tokenizer="words", max_tokens=20000, sequence_length=64, standardize="lower_and_strip_punctuation",
              subset=None, pretrained=None, **source) -> Texts:
    """Token ids of the texts; `pretrained`: a checkpoint folder whose own tokenizer encodes them."""
    (x_train, y_train), (x_test, y_test), names, where = load_texts(**source)
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    if len(x_train) == 0:
        raise DatasetError(f"{where}: no training texts")
    if pretrained is not None:
        vectorizer = PretrainedTokenizer.from_folder(resolve_folder(pretrained), sequence_length)
    else:
        vectorizer = make_vectorizer(tokenizer, max_tokens=max_tokens, sequence_length=sequence_length,
                                     standardize=standardize)
    try:
        vectorizer.adapt(x_train)  # the vocabulary comes from the training texts only
    except ValueError as e:
        raise ConfigError(f"data.max_tokens: {e}") from None
    return Texts(vectorizer.encode(x_train), y_train, vectorizer.encode(x_test), y_test, x_test, names, vectorizer,
                 where)


def build_model(vocabulary_size: int, sequence_length: int, num_classes: int, *, name=None, args=None, layers=None,
                pretrained=None, augmentation=()):
    """A registered text model (given `vocabulary_size` and `num_classes`), a Sequential of `layers`, or a
    pretrained encoder with a classification head; after the `augmentation` layers (TokenAugmentation)."""
    what = name or ("model.pretrained" if pretrained else "model.layers")
    if pretrained is not None:
        try:
            model = from_pretrained(pretrained, head="classification", num_classes=num_classes, **(args or {}))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.args: {e}") from None
    elif name is not None:
        model = create_registered(name, args, vocabulary_size=vocabulary_size, num_classes=num_classes)
    else:
        model = Sequential([layer_from_spec(s, i) for i, s in enumerate(layers)], name="sequential")
    model = with_augmentation(model, list(augmentation), what)
    model._set_input((sequence_length,), "int64")  # token ids
    try:
        model.build((None, sequence_length))
    except (RuntimeError, IndexError) as e:
        raise ConfigError(f"{what} cannot take token ids of shape ({sequence_length},) from a vocabulary of "
                          f"{vocabulary_size}: {str(e).splitlines()[0]}") from None
    return finish_classifier(model, what, num_classes)


def vectorizer_from_metadata(metadata: dict) -> Vectorizer:
    """The vectorizer a text-classification model file carries (its `metadata`), rebuilt from JSON."""
    entry = (metadata.get("preprocessing") or {}).get("vectorizer")
    if not isinstance(entry, dict) or not entry or not metadata.get("class_names"):
        raise DatasetError("the model file has no text-classification metadata (vocabulary and class names): "
                           "train it with `ember train`")
    if "class_name" not in entry:  # files written before subword tokenizers: a bare TextVectorization config
        entry = {"class_name": "TextVectorization", "config": entry}
    name = entry["class_name"]
    if not isinstance(name, str) or name not in VECTORIZERS:
        raise ModelFileError(f"the model file's vectorizer {name!r} is not one of {', '.join(VECTORIZERS)}")
    try:
        return VECTORIZERS[name].from_config(dict(entry.get("config") or {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"the model file's {name} config is unusable: {e}") from None


class TextClassification:
    name = "text_classification"
    config_class = Config
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    def loss_and_metrics(self, config):
        return self.loss, self.metrics

    def test_size(self, data) -> int:
        return len(data.y_test)

    def load_data(self, config: Config) -> Texts:
        return load_data(**config.data.model_dump(exclude={"validation_split"}), pretrained=config.model.pretrained)

    def build_model(self, config: Config, data: Texts):
        return build_model(data.vectorizer.vocabulary_size(), data.x_train.shape[1], len(data.class_names),
                           **config.model.model_dump())

    def fit_arrays(self, config: Config, data: Texts):
        return data.x_train, data.y_train

    def metadata(self, data: Texts) -> dict:
        vectorizer = data.vectorizer
        return {"task": self.name, "class_names": data.class_names,
                "preprocessing": {"vectorizer": {"class_name": type(vectorizer).__name__,
                                                 "config": vectorizer.get_config()}}}

    def _vectorizer(self, model) -> Vectorizer:
        return vectorizer_from_metadata(model.metadata)

    def evaluation_data(self, model, data_arg: str) -> Texts:
        vectorizer = self._vectorizer(model)
        names = model.metadata["class_names"]
        if data_arg in NAMED:
            _, (texts, labels), _, source = load_texts(dataset=data_arg)
        elif Path(data_arg).is_file():
            texts, labels, _ = read_labeled_text(data_arg, class_names=None if names[0] == "0" else names)
            source = f"file {data_arg}"
        else:
            raise DatasetError(f"--data {data_arg}: not a dataset name ({', '.join(NAMED)}) or a CSV/TSV file")
        ids = vectorizer.encode(texts)
        return Texts(ids[:0], labels[:0], ids, labels, texts, names, vectorizer, source)

    def evaluate(self, model, data: Texts, batch_size: int) -> tuple[dict, dict]:
        return report.evaluate_classifier(model, data.x_test, data.y_test, data.class_names, batch_size)

    def summary_line(self, metrics: dict) -> str:
        return report.summary_line(metrics, "test texts")

    def report_sections(self, run_dir: Path, data: Texts, metrics: dict, details: dict, config: Config) -> list[str]:
        names = data.class_names
        sections = report.classification_sections(run_dir, metrics, names, config.output.plots, "test texts")
        k = min(config.output.worst_examples, len(data.y_test))
        if k:
            cell = report.table_cell
            rows = "\n".join(f"| {cell(data.test_texts[i])} | {names[data.y_test[i]]} | {names[p]} | {prob:.3f} |"
                             for i, p, prob in report.highest_loss(data.y_test, details["probabilities"], k))
            sections.append(f"## Highest-loss test texts\n\n| text | true | predicted | probability |\n"
                            f"|---|---|---|---|\n{rows}\n")
        return sections

    def predict(self, model, inputs, top_k: int = 3) -> list[dict]:
        """Top-k classes for each input text."""
        ids = self._vectorizer(model).encode(list(inputs))
        probabilities = model.predict(ids, verbose=0)
        return report.top_k(inputs, probabilities, model.metadata["class_names"], top_k)


TASK = TextClassification()
