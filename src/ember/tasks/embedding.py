"""Sentence embeddings and semantic search: `ember embed` and `ember search`.

An encoder is a pretrained checkpoint folder (or an installed package shipping one), read by
`models.from_pretrained` with its mean-pooling, unit-norm head; or an `.ember` text classifier fine-tuned from
one, whose layers up to the pooling give the embedding. Embeddings have unit length, so a dot product is a
cosine similarity: ranking corpus lines by it against a query is the retrieval step of retrieval-based
question answering.
"""
import json
from pathlib import Path

import numpy as np

from ember import layers
from ember.data.pretrained_tokenizer import PretrainedTokenizer
from ember.errors import DatasetError, ModelFileError
from ember.models import Sequential, load_model
from ember.models.pretrained import from_pretrained, resolve_folder


def _max_length(folder: Path, config_limit: int) -> int:
    """sentence-transformers' max_seq_length when the folder says it (256 for all-MiniLM-L6-v2), else the
    model's positions, at most 512."""
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, int) and 2 <= value:
            return min(value, config_limit)
    return min(512, config_limit)


def _pooled_part(model) -> Sequential:
    """A fine-tuned classifier's layers up to its pooling (and BERT's pooler), then unit normalization."""
    stack = list(model.layers)
    if not stack or not isinstance(stack[0], layers.BertEmbedding):
        raise ModelFileError("the model file is not a pretrained text encoder (it does not start with a "
                             "BertEmbedding): train one with model.pretrained")
    for i, layer in enumerate(stack):
        if isinstance(layer, layers.GlobalAveragePooling1D):
            return Sequential([*stack[:i + 1], layers.UnitNormalization()], name="encoder")
        if isinstance(layer, layers.FirstTokenPooling):
            return Sequential([*stack[:i + 2], layers.UnitNormalization()], name="encoder")
    raise ModelFileError("the model file's encoder has no pooling layer to take embeddings from")


def load_encoder(source) -> tuple[Sequential, PretrainedTokenizer]:
    """(encoder, tokenizer) from a checkpoint folder or package, or from an `.ember` file."""
    path = Path(source)
    if path.is_file():
        model = load_model(path, compile=False)
        from ember.tasks.text_classification import vectorizer_from_metadata
        tokenizer = vectorizer_from_metadata(model.metadata)
        if not isinstance(tokenizer, PretrainedTokenizer):
            raise ModelFileError(f"{path}: its texts are not tokenized by a pretrained tokenizer; embeddings need a "
                                 "model fine-tuned from a checkpoint (model.pretrained)")
        encoder = _pooled_part(model)
    else:
        folder = resolve_folder(source)
        encoder = from_pretrained(folder)
        limit = encoder.layers[0].max_positions
        tokenizer = PretrainedTokenizer.from_folder(folder, _max_length(folder, limit))
    encoder.eval()
    return encoder, tokenizer


def embed(source, texts, *, batch_size: int = 32) -> np.ndarray:
    """Unit-length float32 embeddings (len(texts), hidden size) of `texts`."""
    encoder, tokenizer = load_encoder(source)
    return encode(encoder, tokenizer, texts, batch_size=batch_size)


def encode(encoder, tokenizer, texts, *, batch_size: int = 32) -> np.ndarray:
    texts = [str(text) for text in texts]
    if not texts:
        return np.zeros((0, encoder.layers[0].hidden_dim), dtype=np.float32)
    return encoder.predict(tokenizer.encode(texts), batch_size=batch_size, verbose=0)


def read_corpus(path) -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the corpus ({e.strerror})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"{path}: the corpus has no non-empty lines")
    return lines


def search(source, corpus: list[str], queries, *, k: int = 5, batch_size: int = 32) -> list[dict]:
    """For each query, the `k` corpus lines most similar to it: [{"query", "results": [{"rank", "score",
    "line", "text"}]}], by cosine similarity of their embeddings."""
    encoder, tokenizer = load_encoder(source)
    documents = encode(encoder, tokenizer, corpus, batch_size=batch_size)
    found = []
    for query, vector in zip(queries, encode(encoder, tokenizer, queries, batch_size=batch_size)):
        scores = documents @ vector
        best = np.argsort(-scores, kind="stable")[:k]
        found.append({"query": query, "results": [{"rank": r + 1, "score": float(scores[i]), "line": int(i) + 1,
                                                   "text": corpus[i]} for r, i in enumerate(best)]})
    return found
