"""The `.ember` model file: a zip of `config.json` (architecture as data) and `model.safetensors` (weights).

Loading never unpickles and never imports: class names in the config are looked up in ember's own
tables (plus `custom_objects` the caller passes), and any other name is an error that names it.
"""
import json
import os
import tempfile
import zipfile
import zlib

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import ember
from ember.errors import ModelFileError
from ember.layers import LAYERS
from ember.models.generative import GENERATORS
from ember.models.model import Model
from ember.models.sequential import Sequential
from ember.models.translation import TRANSLATORS
from ember.train import losses as losses_lib
from ember.train import optimizers as optimizers_lib

FORMAT_VERSION = 1
CONFIG, WEIGHTS, OPTIMIZER = "config.json", "model.safetensors", "optimizer.safetensors"
EXTRA_FOLDERS = ("assets/", "training/")  # vocabularies and the like; a checkpoint's training state
_MAX_CONFIG_BYTES = 16 * 2**20
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it
BUILT_IN_INIT = {**TRANSLATORS, **GENERATORS}  # subclassed models of ember's own that build their layers in __init__
MODELS = {"Sequential": Sequential, **BUILT_IN_INIT}  # model classes a file may name


def write_atomically(path: str, write) -> None:
    """Write through a temporary file in the target folder, so a failure never leaves a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved model gets the permissions open() would give
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, path) from None  # name the file (a full disk, say)
    except BaseException:
        os.unlink(tmp)
        raise


def _tensors(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _optimizer_tensors(optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": torch.as_tensor(value).contiguous().cpu()
               for index, slots in state["state"].items() for name, value in slots.items()}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()} for group in state["param_groups"]]
    return tensors, groups


def save_model(model: Model, filepath, *, include_optimizer=True, extra: dict | None = None) -> None:
    """Write `model` to `filepath` (a `.ember` zip). `extra` maps further entry names under assets/ or
    training/ to their bytes (a training checkpoint's state)."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".ember"):
        raise ValueError(f"model files end in '.ember', got {filepath!r}")
    config = {"format_version": FORMAT_VERSION, "ember_version": ember.__version__,
              "class_name": type(model).__name__, "config": model.get_config(),
              "compile_config": model.compile_config()}
    if model.metadata:
        config["metadata"] = _json_safe(model.metadata)
    entries = {WEIGHTS: save_safetensors(_tensors(model.state_dict()))}
    if include_optimizer and model.optimizer is not None and config["compile_config"] is not None:
        tensors, config["optimizer_param_groups"] = _optimizer_tensors(model.optimizer)
        entries[OPTIMIZER] = save_safetensors(tensors)
    entries[CONFIG] = json.dumps(config, indent=2).encode()
    for name in extra or {}:
        if not name.startswith(EXTRA_FOLDERS):
            raise ValueError(f"extra entry {name!r} must lie under {' or '.join(EXTRA_FOLDERS)}")
    entries.update(extra or {})

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                # float tensors barely deflate (~7%) and deflating 100 MB costs seconds: store them as they are
                stored = name.endswith(".safetensors")
                archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else None)
    write_atomically(filepath, write)


def _json_safe(metadata: dict) -> dict:
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.metadata must hold JSON data only (strings, numbers, lists, dicts): {e}") from None


def _check_entries(archive: zipfile.ZipFile, path: str) -> None:
    for name in archive.namelist():
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise ModelFileError(f"{path}: unsafe entry {name!r} escapes the model file's folder")
        if name.endswith((".pkl", ".pickle", ".pt", ".pth", ".bin")) or name.endswith("data.pkl"):
            raise ModelFileError(f"{path}: entry {name!r} holds pickled data, which ember never loads")
        if name not in (CONFIG, WEIGHTS, OPTIMIZER) and not name.startswith(EXTRA_FOLDERS):
            raise ModelFileError(f"{path}: unexpected entry {name!r} (an .ember file holds {CONFIG}, {WEIGHTS}, "
                                 f"{OPTIMIZER}, assets/ and training/)")
    if CONFIG not in archive.namelist() or WEIGHTS not in archive.namelist():
        raise ModelFileError(f"{path}: not an ember model file (needs {CONFIG} and {WEIGHTS})")


def _read(archive, name, path, limit=None) -> bytes:
    info = archive.getinfo(name)
    if limit is not None and info.file_size > limit:
        raise ModelFileError(f"{path}: {name} is implausibly large ({info.file_size} bytes)")
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, NotImplementedError, RuntimeError) as e:
        # RuntimeError: an "encrypted" entry; NotImplementedError: an unknown compression method
        raise ModelFileError(f"{path}: {name} is corrupt ({e})") from None


def _load_config(archive, path) -> dict:
    try:
        config = json.loads(_read(archive, CONFIG, path, _MAX_CONFIG_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: {CONFIG} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise ModelFileError(f"{path}: {CONFIG} lacks 'class_name' or 'config'")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by ember {config.get('ember_version', '?')} in format "
                             f"{version!r}; this ember ({ember.__version__}) reads format {FORMAT_VERSION}: upgrade ember")
    return config


def _layer_from(entry: dict, classes: dict, path: str):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ModelFileError(f"{path}: a layer entry in {CONFIG} lacks 'class_name'")
    name = entry["class_name"]
    if name not in classes:
        raise ModelFileError(f"{path}: unknown layer class {name!r} in {CONFIG} (custom layers need "
                             "load_model(..., custom_objects={...}))")
    try:
        return classes[name].from_config(dict(entry.get("config") or {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: bad config for layer {name!r}: {e}") from None


def model_from_config(config: dict, custom_objects: dict | None = None, path: str = "config") -> Model:
    """Rebuild a model from the data in `config.json`; only known or explicitly passed classes are used."""
    classes = {**LAYERS, **(custom_objects or {})}
    name = config["class_name"]
    body = config["config"] if isinstance(config["config"], dict) else {}
    if name == "Sequential":
        model = Sequential(name=body.get("name"))
        if body.get("input_shape") is not None:
            model._set_input(body["input_shape"], body.get("input_dtype", "float32"))
        for entry in body.get("layers", []):
            model.layers.append(_layer_from(entry, classes, path))
        if model.input_shape is not None:
            model.build((None, *model.input_shape))
        return model
    if name in BUILT_IN_INIT:
        return _layer_from({"class_name": name, "config": body}, BUILT_IN_INIT, path)
    if name in (custom_objects or {}):
        return _layer_from({"class_name": name, "config": body}, classes, path)
    raise ModelFileError(f"{path}: unknown model class {name!r} (a subclassed model needs "
                         "load_model(..., custom_objects={...}))")


def _build(config: dict, custom_objects, path: str) -> Model:
    """`model_from_config`, with whatever a malformed config makes Python or torch raise said as the file's error."""
    try:
        return model_from_config(config, custom_objects, path)
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as e:
        raise ModelFileError(f"{path}: {CONFIG} does not describe a model ember can build "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _load_state(model, data: bytes, path: str, what: str) -> dict:
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise ModelFileError(f"{path}: {what} is not a valid safetensors file ({e})") from None


def _apply_weights(model, state: dict, path: str):
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not match the architecture (missing: {missing[:5]}, "
                             f"unexpected: {unexpected[:5]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(f"{path}: weight {key!r} has shape {tuple(tensor.shape)}, "
                                 f"the architecture needs {tuple(expected[key].shape)}")
    model.load_state_dict(state)


def _compile_from(model, compile_config: dict, path: str):
    try:
        optimizer_cls = optimizers_lib.OPTIMIZERS[compile_config["optimizer"]["class_name"]]
        loss_cls = losses_lib.LOSSES[compile_config["loss"]["class_name"]]
        model.compile(optimizer_cls(**compile_config["optimizer"]["config"]),
                      loss_cls(**compile_config["loss"]["config"]), compile_config["metrics"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: bad compile_config in {CONFIG} ({e})") from None


def _restore_optimizer(model, archive, config, path):
    state = _load_state(model, _read(archive, OPTIMIZER, path), path, OPTIMIZER)
    slots: dict[int, dict] = {}
    for key, tensor in state.items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = tensor
    try:
        model.optimizer.load_state_dict({"state": slots, "param_groups": config["optimizer_param_groups"]})
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: optimizer state does not match the model ({e})") from None
    _match_layouts(model.optimizer)


def _match_layouts(optimizer) -> None:
    """Give each per-weight state tensor its weight's memory layout (channels_last convolutions): the files
    hold contiguous tensors, and torch's fused Adam pairs weights and moments element by element in memory,
    so a moment in another layout would update the wrong weights."""
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _open(path: str) -> tuple[zipfile.ZipFile, dict]:
    """The checked archive of a model file and its config."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:  # NotImplementedError: "zip version"
        raise ModelFileError(f"{path}: not a valid ember model file (truncated or not a zip: {e})") from None
    try:
        _check_entries(archive, path)
        return archive, _load_config(archive, path)
    except BaseException:
        archive.close()
        raise


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True) -> Model:
    """Read a `.ember` file written by `Model.save`.

    >>> model = models.load_model("model.ember")
    """
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    archive, config = _open(path)
    with archive:
        model = _build(config, custom_objects, path)
        metadata = config.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ModelFileError(f"{path}: 'metadata' in {CONFIG} must be a JSON object")
        model.metadata = metadata
        _apply_weights(model, _load_state(model, _read(archive, WEIGHTS, path), path, WEIGHTS), path)
        if compile and config.get("compile_config"):
            _compile_from(model, config["compile_config"], path)
            if OPTIMIZER in archive.namelist() and model.optimizer is not None:
                _restore_optimizer(model, archive, config, path)
    model.eval()
    return model


def restore_checkpoint(model: Model, filepath, names=()) -> dict[str, bytes]:
    """Load the weights and optimizer state of the checkpoint `filepath` (a `.ember` file of the same
    architecture) into the compiled `model`, and return the bytes of its entries `names` that it holds."""
    path = os.fspath(filepath)
    archive, config = _open(path)
    with archive:
        _apply_weights(model, _load_state(model, _read(archive, WEIGHTS, path), path, WEIGHTS), path)
        if OPTIMIZER in archive.namelist():
            model._ensure_optimizer()
            _restore_optimizer(model, archive, config, path)
        return {name: _read(archive, name, path) for name in names if name in archive.namelist()}


def save_weights(model: Model, filepath) -> None:
    """Write the weights alone to a `.safetensors` file."""
    filepath = os.fspath(filepath)
    data = save_safetensors(_tensors(model.state_dict()))
    write_atomically(filepath, lambda f: f.write(data))


def load_weights(model: Model, filepath) -> None:
    path = os.fspath(filepath)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read weights ({e.strerror})") from None
    _apply_weights(model, _load_state(model, data, path, "weights file"), path)
