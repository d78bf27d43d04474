"""Run configs: YAML validated strictly with pydantic, so a typo is an error, never silently ignored.

A config has `task`, `data`, `model`, `train`, `callbacks` and `output`. `train`, `callbacks` and `output`
are the same for every task (below); each task declares its own `data` and `model` sections.

>>> config = load_config("configs/mnist_cnn.yaml", overrides=["train.epochs=3"])
"""
import difflib
import math
import re
from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ember.errors import EmberError
from ember.train import optimizers as optimizers_lib


class ConfigError(EmberError, ValueError):
    """A config that cannot run: the message names the file, the key and the value."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values are not coerced across types."""
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class Schedule(Section):
    """Learning-rate schedule, applied at each epoch start (as Keras's LearningRateScheduler), or at each
    optimizer step when `warmup_steps` is set (as Transformers are trained)."""
    name: Literal["constant", "cosine", "linear", "step", "exponential", "inverse_sqrt"] = "constant"
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up from lr/10 over these first epochs")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 over these first optimizer steps; the "
                                                   "schedule then follows steps, not epochs")
    min_lr: float = Field(0.0, ge=0, description="cosine and linear: the learning rate they decay to")
    step_size: int = Field(1, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step and exponential: the decay factor")

    @model_validator(mode="after")
    def _one_warmup(self):
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("set one of train.schedule.warmup_steps and train.schedule.warmup_epochs")
        if self.name == "inverse_sqrt" and not self.warmup_steps:
            raise ValueError("train.schedule inverse_sqrt needs warmup_steps (lr * sqrt(warmup_steps / step))")
        return self

    def factor(self, epoch: int, epochs: int, lr: float) -> float:
        """The learning rate for `epoch` (0-based) of `epochs`, from the base rate `lr`."""
        if epoch < self.warmup_epochs:
            return lr * (0.1 + 0.9 * epoch / self.warmup_epochs)
        return self._decayed(epoch - self.warmup_epochs, max(1, epochs - self.warmup_epochs), lr, epoch)

    def at_step(self, step: int, steps_per_epoch: int, epochs: int, lr: float) -> float:
        """The learning rate for optimizer step `step` (0-based), with `warmup_steps` set."""
        if step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        t, span = step - self.warmup_steps, max(1, steps_per_epoch * epochs - self.warmup_steps)
        if self.name == "inverse_sqrt":
            return lr * math.sqrt(self.warmup_steps / (step + 1))
        return self._decayed(t, span, lr, step // max(1, steps_per_epoch))

    def _decayed(self, t: float, span: int, lr: float, epoch: int) -> float:
        """Cosine over `span` (epochs or steps); step and exponential decay count epochs after the warm-up."""
        if self.name == "cosine":
            return self.min_lr + (lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
        if self.name == "linear":  # to min_lr at the end, as BERT is fine-tuned
            return self.min_lr + (lr - self.min_lr) * max(0.0, 1 - t / span)
        epoch -= self.warmup_epochs
        if self.name == "step":
            return lr * self.gamma ** (epoch // self.step_size)
        if self.name == "exponential":
            return lr * self.gamma ** epoch
        return lr


class Train(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: str = "adam"
    lr: float | None = Field(None, gt=0, description="default: the optimizer's Keras default")
    weight_decay: float = Field(0.0, ge=0)
    decay_norms_and_biases: bool = Field(True, description="false: no weight decay on biases and normalization "
                                         "scales and offsets (the 1-D weights), as Transformers are fine-tuned")
    layer_lr_decay: float | None = Field(None, gt=0, le=1, description="layer-wise learning-rate decay: each "
                                         "layer below the output trains at this fraction of the rate above it")
    schedule: Schedule = Schedule()
    seed: int | None = Field(0, ge=0, lt=2**32, description="null: a different run each time")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="bf16 or fp16: the forward pass under "
                                                       "autocast (fp16 with a loss scaler)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto: CUDA when present "
                        "(under torchrun, each process its own GPU), else the CPU")
    gradient_accumulation_steps: int = Field(1, ge=1, description="batches per optimizer step (their mean "
                                             "gradient): a larger effective batch in the same memory")
    clip_norm: float | None = Field(None, gt=0, description="clip the gradients' global norm to this before "
                                    "each step")
    checkpoint_every: int | None = Field(None, ge=1, description="batches between resumable checkpoints "
                                         "(`ember train --resume`); default: one at each epoch's end")
    keep_checkpoints: int = Field(1, ge=1, description="how many resumable checkpoints stay (the newest)")
    deterministic: bool = Field(False, description="deterministic torch algorithms only: a run (and a resumed "
                                "run) repeats bit for bit on the same machine")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name.lower() not in optimizers_lib.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}{did_you_mean(name, optimizers_lib.OPTIMIZERS)}; "
                             f"known: {', '.join(optimizers_lib.OPTIMIZERS)}")
        return name.lower()

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_by_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_alias(cls, value):
        aliases = {32: "fp32", "32": "fp32", 16: "fp16", "16-mixed": "fp16", "bf16-mixed": "bf16"}
        return aliases.get(value, value) if isinstance(value, (int, str)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _checkpoints_between_steps(self):
        every, accumulate = self.checkpoint_every, self.gradient_accumulation_steps
        if every is not None and every % accumulate:
            raise ValueError(f"train.checkpoint_every ({every}) must be a multiple of "
                             f"train.gradient_accumulation_steps ({accumulate}): a checkpoint holds no half-"
                             "accumulated gradients")
        return self


class EarlyStopping(Section):
    monitor: str = "val_loss"
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True


class ReduceLROnPlateau(Section):
    monitor: str = "val_loss"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    min_lr: float = Field(0.0, ge=0)


class Checkpoints(Section):
    monitor: str | None = Field(None, description="default: val_loss with validation data, else loss")
    save_last: bool = Field(True, description="checkpoints/last.ember after every epoch")
    save_best: bool = Field(True, description="checkpoints/best.ember whenever `monitor` improves")


class Callbacks(Section):
    checkpoints: Checkpoints = Checkpoints()
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    terminate_on_nan: bool = True


class Output(Section):
    dir: str | None = Field(None, description="run directory; `--out` wins; default runs/<config name>")
    plots: bool = True
    report: bool = True
    worst_examples: int = Field(16, ge=0, description="highest-loss test samples shown in the report")


class RunConfig(Section):
    """The sections every task shares; each task's config class adds its `data` and `model`."""
    task: str
    train: Train = Train()
    callbacks: Callbacks = Callbacks()
    output: Output = Output()

    @model_validator(mode="after")
    def _one_lr_policy(self):
        plan = self.train.schedule
        if self.callbacks.reduce_lr_on_plateau is not None and (plan.name != "constant" or plan.warmup_epochs
                                                                 or plan.warmup_steps):
            raise ValueError("train.schedule and callbacks.reduce_lr_on_plateau both set the learning rate; "
                             "use one of them")
        return self


def absolute_path(path: str | None) -> str | None:
    """Data paths are stored absolute, so a run's config.yaml finds its data from any working directory."""
    return None if path is None else str(Path(path).expanduser().absolute())


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- reading ----------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 1e-3 as a string (it wants 1.0e-3); learning rates are written 1e-3, so read them as floats
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))

def read_yaml(path) -> dict:
    """The YAML mapping in `path`; syntax errors name the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config ({e})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the config is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections (task, data, model, train, ...), "
                          f"got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, overrides, source: str = "--set") -> dict:
    """Apply "a.b.c=value" strings to the nested dict `raw` (values parsed as YAML: 3, 0.1, true, [1, 2])."""
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        try:
            value = yaml.load(text, Loader=_UniqueKeyLoader) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node, parts = raw, key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{source} {item!r}: {'.'.join(parts[:depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


# -- validating -------------------------------------------------------------------------------------
def _fields_at(cls, loc) -> dict | None:
    """The fields of the section that holds `loc`'s last key, to suggest a near name for a typo."""
    for part in loc[:-1]:
        if cls is None or isinstance(part, int):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = next((a for a in _section_types(field.annotation)), None)
    return cls.model_fields if cls is not None else None


def _section_types(annotation):
    args = getattr(annotation, "__args__", None) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _describe(error: dict, cls) -> str:
    # errors inside a union or a validator carry the branch's type in loc ("str", "dict[str,any]"): keep keys only
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not (p.startswith(("function-", "tagged-union"))
                                                                       or p in _TYPE_TAGS or "[" in p))
    key = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        fields = _fields_at(cls, loc) or {}
        return f"unknown key {key!r}{did_you_mean(loc[-1], fields)}"
    if error["type"] == "missing":
        return f"missing key {key!r}"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    value = error.get("input")
    got = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
    return f"{key}: {message}{got}" if key else f"{message}{got}"


def validate(raw: dict, cls, source: str, overridden=()):
    """`cls` validated from `raw`; the first problem as a ConfigError naming `source` (or the --set that caused it)."""
    try:
        return cls.model_validate(raw)
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        key = ".".join(str(p) for p in errors[0]["loc"])
        culprit = next((k for k in overridden if key == k or key.startswith(k + ".")), None)
        where = f"--set {culprit}" if culprit else source
        raise ConfigError(f"{where}: {_describe(errors[0], cls)}{more}") from None


def load_config(path, overrides=None):
    """Read, override and validate a config file; returns the task's config object."""
    raw = apply_overrides(read_yaml(path), overrides)
    overridden = [item.partition("=")[0].strip() for item in overrides or []]
    return config_from_dict(raw, source=str(path), overridden=overridden)


def config_from_dict(raw: dict, source: str = "config", overridden=()):
    from ember.tasks import get_task
    task_name = raw.get("task")
    if task_name is None:
        raise ConfigError(f"{source}: missing key 'task' (e.g. task: image_classification)")
    if not isinstance(task_name, str):
        raise ConfigError(f"{source}: task: expected a task name, got {task_name!r}")
    try:
        task = get_task(task_name)
    except KeyError as e:
        raise ConfigError(f"{source}: task: {e.args[0]}") from None
    return validate(raw, task.config_class, source, overridden)


SECTION_ORDER = ("task", "data", "model", "train", "callbacks", "output")


def to_yaml(config) -> str:
    """The resolved config (defaults filled in) as YAML, sections in their usual order."""
    data = config.model_dump(mode="json")
    ordered = {k: data.pop(k) for k in SECTION_ORDER if k in data} | data
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)
