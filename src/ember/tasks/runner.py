"""The task runner behind `ember train`, `ember evaluate` and `ember predict`.

`train` validates the config, loads the data and builds the model before it touches the disk, then
writes the run into a hidden staging folder beside `--out` and renames it into place when everything is
written: a failed or interrupted run leaves no run directory behind.

Run directory: config.yaml (resolved), metrics.jsonl (one line per epoch), metrics.json (test metrics),
checkpoints/, model.ember, plots/*.png, report.md.
"""
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ember import models
from ember.errors import DatasetError, EmberError
from ember.evaluation import plots
from ember.seeding import deterministic, set_random_seed
from ember.tasks import config as config_lib
from ember.tasks import get_task
from ember.train import callbacks as callbacks_lib
from ember.train import checkpoint as checkpoint_lib
from ember.train import distributed
from ember.train import optimizers as optimizers_lib
from ember.train.progress import EpochProgress


class RunDirError(EmberError, FileExistsError):
    """The run directory cannot be used (not empty, or not a folder)."""


# -- the run directory ---------------------------------------------------------------------------
def default_run_dir(config_path) -> Path:
    """runs/<config name>, or the first free runs/<config name>-N."""
    base = Path("runs") / Path(config_path).stem
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


RUN_MARKERS = ("config.yaml", "metrics.jsonl")


def check_run_dir(run_dir: Path, overwrite: bool, keep=()) -> None:
    """Refuse a --out that is a file, or a non-empty folder unless --overwrite and it is an ember run
    (so --overwrite never deletes the current folder, a data folder or anything else that is not a run)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a folder")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise RunDirError(f"{run_dir}: run directory is not empty; pass --overwrite to replace it or choose "
                          "another --out")
    here = run_dir.resolve()
    if not all((run_dir / marker).is_file() for marker in RUN_MARKERS):
        raise RunDirError(f"{run_dir}: not an ember run directory (no {' and '.join(RUN_MARKERS)}), so --overwrite "
                          "will not delete it; choose another --out")
    for path in (Path.cwd(), *keep):
        path = Path(path).resolve()
        if path == here or here in path.parents:
            raise RunDirError(f"{run_dir}: holds {path}, so --overwrite will not delete it; choose another --out")


def _remove_stale(run_dir: Path) -> None:
    """Staging folders of this run directory left by killed processes (their pid no longer runs)."""
    for folder in run_dir.parent.glob(f".{run_dir.name}.partial-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def staged(run_dir: Path, overwrite: bool, keep=()):
    """Yield a hidden sibling folder to write into; on success it becomes `run_dir`, on failure it is removed."""
    staging = run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}"
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(run_dir)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as e:
        blocking = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocking} is a file, not a folder" if blocking else e.strerror
        raise RunDirError(f"{run_dir}: cannot create the run directory ({reason})") from None
    try:
        yield staging
        check_run_dir(run_dir, overwrite, keep)  # nothing else took the folder meanwhile
        if run_dir.exists():
            shutil.rmtree(run_dir)
        staging.rename(run_dir)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.filename or isinstance(e, EmberError):
            raise
        raise RunDirError(f"{run_dir}: cannot write the run ({e.strerror})") from None  # a full disk, say
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# -- callbacks the runner adds -----------------------------------------------------------------------
class MetricsLogger(callbacks_lib.Callback):
    """Appends one JSON line per epoch: epoch, every log value, the learning rate and the epoch's seconds."""

    state_keys = ("rows",)  # a resumed run's metrics.jsonl holds the epochs before the interruption too
    main_process_only = True

    def set_state(self, state):
        super().set_state(state)
        self.path.write_text("".join(json.dumps(row) + "\n" for row in self.rows))

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.rows = Path(path), []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # the rate the epoch's last step used (per-epoch schedules set it at the epoch's start)
        lr = optimizers_lib.get_learning_rate(self.model.optimizer)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}, "lr": lr,
               "seconds": round(time.perf_counter() - self.started, 3)}
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _monitor(name: str | None, metrics, has_validation: bool, key: str, extra=()) -> str:
    """`name` checked against what the epochs log: the loss, the metrics, their val_ forms, and `extra`
    (what the task's own callbacks log, e.g. val_bleu)."""
    if name is None:
        return "val_loss" if has_validation else "loss"
    logged = ["loss", *metrics]
    logged += [f"val_{m}" for m in logged]
    if name in extra:
        return name
    logged += list(extra)
    if name not in logged:
        raise config_lib.ConfigError(f"{key}: {name!r} is not a logged metric{config_lib.did_you_mean(name, logged)}; "
                                     f"logged: {', '.join(logged)}")
    if name.startswith("val_") and not has_validation:
        raise config_lib.ConfigError(f"{key}: monitoring {name!r} needs validation data; set data.validation_split "
                                     f"above 0 or monitor {name.removeprefix('val_')!r}")
    return name


def build_callbacks(config, metrics, run_dir: Path, has_validation: bool, quiet: bool, task_callbacks=(),
                    steps_per_epoch: int = 1, base_lr: float | None = None) -> list:
    section, plan = config.callbacks, config.train.schedule
    extra = [name for callback in task_callbacks for name in getattr(callback, "logged", ())]
    # the task's own (e.g. val_bleu) first: the logger and the progress line then see what they add to the logs
    found = [*task_callbacks, MetricsLogger(run_dir / "metrics.jsonl")]
    if not quiet:  # before the callbacks that print, so their lines follow the epoch's
        found.append(EpochProgress(config.train.epochs))
    def schedule(epoch, lr):  # from the configured rate, so a resumed run schedules as the first did
        return plan.factor(epoch, config.train.epochs, base_lr if base_lr is not None else lr)
    if plan.warmup_steps:
        found.insert(0, callbacks_lib.StepLearningRateScheduler(
            lambda step, lr: plan.at_step(step, steps_per_epoch, config.train.epochs, lr)))
    elif plan.name != "constant" or plan.warmup_epochs:
        found.insert(0, callbacks_lib.LearningRateScheduler(schedule))
    if section.terminate_on_nan:
        found.append(callbacks_lib.TerminateOnNaN())
    ckpt = section.checkpoints
    if ckpt.save_last:
        found.append(callbacks_lib.ModelCheckpoint(run_dir / "checkpoints" / "last.ember", monitor="loss"))
    if ckpt.save_best:
        monitor = _monitor(ckpt.monitor, metrics, has_validation, "callbacks.checkpoints.monitor", extra)
        found.append(callbacks_lib.ModelCheckpoint(run_dir / "checkpoints" / "best.ember", monitor=monitor,
                                                   save_best_only=True))
    if section.early_stopping is not None:
        es = section.early_stopping
        monitor = _monitor(es.monitor, metrics, has_validation, "callbacks.early_stopping.monitor", extra)
        found.append(callbacks_lib.EarlyStopping(monitor=monitor, patience=es.patience, min_delta=es.min_delta,
                                                 restore_best_weights=es.restore_best_weights,
                                                 verbose=0 if quiet else 1))
    if section.reduce_lr_on_plateau is not None:
        rl = section.reduce_lr_on_plateau
        monitor = _monitor(rl.monitor, metrics, has_validation, "callbacks.reduce_lr_on_plateau.monitor", extra)
        found.append(callbacks_lib.ReduceLROnPlateau(monitor=monitor, factor=rl.factor, patience=rl.patience,
                                                     min_lr=rl.min_lr, verbose=0 if quiet else 1))
    return found


def _optimizer(train):
    spec = optimizers_lib.OPTIMIZERS[train.optimizer]()
    if train.lr is not None:
        spec.learning_rate = train.lr
    if train.weight_decay:
        if not hasattr(spec, "weight_decay"):
            raise config_lib.ConfigError(f"train.weight_decay: optimizer {train.optimizer!r} has no weight decay")
        spec.weight_decay = train.weight_decay
        spec.decay_norms_and_biases = train.decay_norms_and_biases
    spec.global_clipnorm, spec.gradient_accumulation_steps = train.clip_norm, train.gradient_accumulation_steps
    spec.layer_lr_decay = train.layer_lr_decay
    return spec


# -- train ------------------------------------------------------------------------------------------
def _say(quiet: bool, *lines):
    if not quiet:
        for line in lines:
            print(line, flush=True)


def _data_and_model(task, config, config_path):
    try:
        data = task.load_data(config)
        model = task.build_model(config, data)
    except (config_lib.ConfigError, DatasetError) as e:
        raise type(e)(f"{config_path or 'config'}: {e}") from None
    return data, model


def _resolved(config, optimizer, has_validation: bool):
    """The config as run: defaults that depend on the optimizer or the data filled in."""
    config = config.model_copy(deep=True)
    config.train.lr = optimizer.learning_rate
    if config.callbacks.checkpoints.monitor is None:
        config.callbacks.checkpoints.monitor = "val_loss" if has_validation else "loss"
    return config


def _check_finite(history: list, callbacks: list, run_dir: Path) -> None:
    last = history[-1] if history else {}
    if math.isfinite(last.get("loss", 0.0)):
        return
    guard = next((c for c in callbacks if isinstance(c, callbacks_lib.TerminateOnNaN)), None)
    where = (f"at epoch {guard.stopped_at[0]}, batch {guard.stopped_at[1]}" if guard and guard.stopped_at
             else f"in epoch {last['epoch']}")
    kept = checkpoint_lib.checkpoints_in(backup_dir_of(run_dir))
    note = f"; the last good checkpoint is {kept[-1]} (--resume goes on from it)" if kept else ""
    raise EmberError(f"training diverged: the loss became {last['loss']} {where}; lower train.lr or check the "
                     f"data for NaN or huge values{note}")


@contextlib.contextmanager
def _resumable(run_dir: Path):
    """On failure, keep the run's backup folder only if it holds a checkpoint to resume from."""
    try:
        yield
    except BaseException:
        folder = backup_dir_of(run_dir)
        if folder.is_dir() and not checkpoint_lib.checkpoints_in(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def backup_dir_of(run_dir: Path) -> Path:
    """Where `ember train` keeps the resumable checkpoints of a run until it ends."""
    return run_dir.parent / f".{run_dir.name}.backup"


def _backup(config, run_dir: Path, resume: bool, quiet: bool):
    """The BackupAndRestore callback of the run; under torchrun rank 0 writes the checkpoints and every
    rank reads them back on --resume (other ranks get None without --resume)."""
    folder = backup_dir_of(run_dir)
    found = checkpoint_lib.checkpoints_in(folder) if folder.is_dir() else []
    if resume and not found:
        raise RunDirError(f"{run_dir}: nothing to resume (no checkpoints in {folder}); run without --resume")
    if not distributed.info().is_main and not resume:
        return None
    if found and not resume:
        _say(quiet, f"note: {run_dir} has checkpoints of an interrupted run; starting afresh (--resume continues it)")
        shutil.rmtree(folder, ignore_errors=True)
    if resume:
        _say(quiet, f"resuming from {found[-1]}")
    return checkpoint_lib.BackupAndRestore(folder, save_freq=config.train.checkpoint_every or "epoch",
                                           keep=config.train.keep_checkpoints)


def _save_and_report(task, config, model, data, callbacks, staging, run_dir, seconds, n_train) -> dict:
    """After training: check the history, save the model into `staging`, test it, and write its metrics,
    plots and report there. Returns the test metrics."""
    history = next(c for c in callbacks if isinstance(c, MetricsLogger)).rows
    _check_finite(history, callbacks, run_dir)
    model.save(staging / "model.ember")
    metrics, details = task.evaluate(model, data, config.train.batch_size)
    write_json(staging / "metrics.json", metrics)
    if config.output.plots and history:
        plots.learning_curves(history, staging / "plots" / "learning_curves.png")
    if config.output.report:
        sections = task.report_sections(staging, data, metrics, details, config)
        stopped = next((c for c in callbacks if isinstance(c, callbacks_lib.EarlyStopping)), None)
        write_report(staging, config, model, data, metrics, history, seconds, sections,
                     trained_on=n_train, early_stop=stopped)
    return metrics


def train(config_path=None, *, overrides=(), out=None, overwrite=False, quiet=False, config=None,
          resume=False) -> Path:
    """Run `ember train`: returns the run directory. `resume`: go on from the checkpoints of an interrupted
    run of the same run directory."""
    if config is None:
        config = config_lib.load_config(config_path, overrides)
    task = get_task(config.task)
    run_dir = Path(out or config.output.dir or default_run_dir(config_path or "run"))
    keep = protected_paths(config, config_path)
    here = distributed.info()
    quiet = quiet or not here.is_main  # under torchrun, rank 0 speaks for the run
    if here.is_main:
        check_run_dir(run_dir, overwrite, keep)
    if config.train.seed is not None:
        set_random_seed(config.train.seed)
    data, model = _data_and_model(task, config, config_path)
    optimizer = _optimizer(config.train)
    loss, metrics = task.loss_and_metrics(config)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, precision=config.train.precision,
                  device=config.train.device)
    model.metadata = task.metadata(data)
    if config.train.precision == "bf16" and model.device.type == "cpu" and not _native_bf16():
        _say(quiet, "note: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): bf16 runs on slow "
                    "reference kernels here, several times slower than fp32")
    x, y = task.fit_arrays(config, data)
    n_samples = len(x) if y is None else len(y)  # y is None when x is an ArrayData (e.g. sampled per epoch)
    # a task with its own validation set (e.g. Multi30k's) gives it; others hold out data.validation_split
    validation = task.validation_data(config, data) if hasattr(task, "validation_data") else None
    split = 0.0 if validation is not None else config.data.validation_split
    n_val = len(validation) if validation is not None else n_samples - int(n_samples * (1 - split))  # as split()
    n_train = n_samples if validation is not None else n_samples - n_val
    config = _resolved(config, optimizer, n_val > 0)
    _say(quiet, f"ember train: {config.task} on {data.source} ({n_train:,} training / {n_val:,} validation / "
                f"{task.test_size(data):,} test samples), model {_model_name(config)} "
                f"({model.count_params():,} weights), {config.train.epochs} epochs{_processes(config, here)} "
                f"-> {run_dir}")
    with _resumable(run_dir), deterministic(config.train.deterministic), \
            (staged(run_dir, overwrite, keep) if here.is_main else _scratch()) as staging:
        (staging / "config.yaml").write_text(config_lib.to_yaml(config))
        extra = task.callbacks(config, data) if hasattr(task, "callbacks") else []
        steps = x.num_batches(config.train.batch_size) if y is None else -(-(n_train) // config.train.batch_size)
        steps = -(-steps // here.world_size)  # batches per process: what step schedules count
        callbacks = [_backup(config, run_dir, resume, quiet),
                     *build_callbacks(config, metrics, staging, n_val > 0, quiet, extra, steps,
                                      getattr(optimizer, "learning_rate", None))]
        started = time.perf_counter()
        with distributed.failures():
            model.fit(x, y, batch_size=config.train.batch_size, epochs=config.train.epochs, verbose=0,
                      validation_split=split if n_val else 0.0, validation_data=validation if n_val else None,
                      callbacks=[c for c in callbacks if c is not None])
        seconds = time.perf_counter() - started
        if not here.is_main:  # rank 0 saves, tests and reports the model
            return run_dir
        metrics = _save_and_report(task, config, model, data, callbacks, staging, run_dir, seconds, n_train)
    shutil.rmtree(backup_dir_of(run_dir), ignore_errors=True)  # the run ended: nothing left to resume
    _say(quiet, task.summary_line(metrics), f"run saved to {run_dir}")
    return run_dir


def train_distributed(config_path, *, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                      master_addr: str = "127.0.0.1", master_port: int | None = None, overrides=(), out=None,
                      overwrite=False, quiet=False, resume=False, debug=False) -> Path:
    """`ember train --nproc-per-node N [--nnodes M ...]`: `train` in N processes on this node (torchrun),
    data-parallel with the other nodes' processes. The config and the run directory are checked here,
    once, before any process starts."""
    if node_rank >= nnodes:
        raise ValueError(f"--node-rank {node_rank} is not below --nnodes {nnodes}")
    config = config_lib.load_config(config_path, overrides)
    run_dir = Path(out or config.output.dir or default_run_dir(config_path))
    if node_rank == 0:  # rank 0 runs here and writes the run
        check_run_dir(run_dir, overwrite, protected_paths(config, config_path))
    worker = ["train", str(config_path), "--out", str(run_dir)]
    worker += [arg for override in overrides for arg in ("--set", override)]
    worker += [flag for flag, on in (("--overwrite", overwrite), ("--quiet", quiet), ("--resume", resume),
                                     ("--debug", debug)) if on]
    distributed.launch(worker, nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
                       master_addr=master_addr, master_port=master_port, debug=debug)
    if node_rank:
        _say(quiet, f"node {node_rank}: done ({nproc_per_node} of the run's processes); rank 0, on node 0, wrote the run")
    return run_dir


def _model_name(config) -> str:
    pretrained = getattr(config.model, "pretrained", None)
    return config.model.name or (f"pretrained {pretrained}" if pretrained else "from model.layers")


def _native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (torch 2.x asks it through private helpers; when they
    are gone, assume it does and say nothing)."""
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return avx512_bf16() or amx()


def protected_paths(config, config_path) -> list:
    """The config and the data: never inside what --overwrite replaces."""
    return [p for p in (config_path, *config.data.model_dump().values()) if isinstance(p, (str, Path)) and
            Path(p).exists()]


def _processes(config, here) -> str:
    if not here.is_distributed:
        return ""
    return (f" on {here.world_size} processes ({here.world_size} x {config.train.batch_size} samples per "
            f"batch)")


@contextlib.contextmanager
def _scratch():
    """Where ranks other than 0 put what the run writes: a folder that is removed when the run ends."""
    with tempfile.TemporaryDirectory(prefix="ember-rank-") as folder:
        yield Path(folder)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")  # strict JSON: NaN is an error


def _early_stop_note(early_stop, epochs: int) -> str:
    if early_stop is None or not early_stop.stopped_epoch:
        return ""
    restored = (f" The saved model holds the weights of the epoch with the best {early_stop.monitor} "
                f"({early_stop.best:.4g})." if early_stop.restore_best_weights else "")
    return f" Early stopping ended training after epoch {early_stop.stopped_epoch + 1} of {epochs}.{restored}"


def write_report(run_dir: Path, config, model, data, metrics: dict, history: list, seconds: float,
                 sections: list[str], trained_on: int, early_stop=None) -> None:
    final = history[-1] if history else {}
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    table = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v:,} |" for k, v in headline.items())
    train_rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in final.items() if k not in ("epoch", "seconds"))
    curves = ("## Learning curves\n\n![learning curves](plots/learning_curves.png)\n" if config.output.plots
              and history else "")
    text = "\n".join([
        f"# Run report: {config.task}",
        "",
        f"Model **{_model_name(config)}** ({model.count_params():,} weights) trained on "
        f"{data.source} ({trained_on:,} training samples) for {len(history)} epoch"
        f"{'s' if len(history) != 1 else ''} in {seconds:.1f} s.{_early_stop_note(early_stop, config.train.epochs)} "
        "The resolved configuration is in [config.yaml](config.yaml); per-epoch figures in "
        "[metrics.jsonl](metrics.jsonl).",
        "",
        "## Test set",
        "",
        "| metric | value |",
        "|---|---|",
        table,
        "",
        f"## Last epoch ({final.get('epoch', 0)})",
        "",
        "| metric | value |",
        "|---|---|",
        train_rows,
        "",
        curves,
        *sections,
    ])
    (run_dir / "report.md").write_text(text.rstrip() + "\n")


# -- evaluate and predict ------------------------------------------------------------------------------
def evaluate(target, *, data=None, batch_size=None) -> dict:
    """Test metrics of a run directory (its config's test data) or a model file (with `data`)."""
    target = Path(target)
    if target.is_dir():
        config = config_lib.load_config(target / "config.yaml")
        model = models.load_model(target / "model.ember")
        task = get_task(config.task)
        images = task.load_data(config) if data is None else task.evaluation_data(model, data)
        batch_size = batch_size or config.train.batch_size
    else:
        model = load_for_inference(target)
        task_name = model.metadata.get("task")
        if task_name is None:
            raise EmberError(f"{target}: the model file names no task; train it with `ember train`")
        if data is None:
            raise EmberError(f"{target}: a model file needs --data (a dataset name, an image folder or an .npz)")
        task = get_task(task_name)
        images = task.evaluation_data(model, data)
        batch_size = batch_size or 32
    metrics, _ = task.evaluate(model, images, batch_size)
    return metrics


def compare(metrics: dict, path: Path) -> float:
    """Largest absolute difference between the numbers in `metrics` and those saved in `path`."""
    saved = json.loads(path.read_text())
    flat_a, flat_b = _numbers(metrics), _numbers(saved)
    if set(flat_a) != set(flat_b):
        return math.inf
    return max((abs(flat_a[k] - flat_b[k]) for k in flat_a), default=0.0)


def _numbers(tree, prefix="") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _numbers(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): float(tree)}


def load_for_inference(path):
    """A `.ember` model, or an `.onnx` graph (exported, or int8 from `ember compress`) run by ONNX Runtime."""
    if Path(path).suffix == ".onnx":
        from ember.export.onnx import OnnxModel
        return OnnxModel(path)
    return models.load_model(path)


def predict(model_path, inputs, *, top_k=3) -> list[dict]:
    model = load_for_inference(model_path)
    task_name = model.metadata.get("task")
    if task_name is None:
        raise EmberError(f"{model_path}: the model file names no task; train it with `ember train`")
    return get_task(task_name).predict(model, list(inputs), top_k=top_k)


def _load_for(model_path, task_name: str, what: str, example: str):
    """The model in `model_path`, refused unless a `task_name` run wrote it."""
    model = models.load_model(model_path)
    if model.metadata.get("task") != task_name:
        raise EmberError(f"{model_path}: not {what} (task {model.metadata.get('task')!r}); train one with "
                         f"{example}")
    return model


def transcribe(model_path, files, *, top_k: int = 1) -> list[dict]:
    """`ember transcribe`: the most probable classes of each audio file."""
    model = _load_for(model_path, "audio_classification", "an audio model",
                      "an audio config, e.g. configs/fsdd_cnn.yaml")
    return get_task("audio_classification").predict(model, list(files), top_k=top_k)


def translate(model_path, texts, *, beam_size: int | None = None, max_length: int | None = None) -> list[dict]:
    """`ember translate`: each text's translation, by beam search (the model's beam size unless given)."""
    model = _load_for(model_path, "translation", "a translation model",
                      "a translation config, e.g. configs/multi30k_transformer.yaml")
    return get_task("translation").predict(model, list(texts), beam_size=beam_size, max_length=max_length)


def recommend(model_path, user: int, *, k: int = 10) -> dict:
    """`ember recommend`: the k best items for `user` that they have not rated (popular items if unknown)."""
    model = _load_for(model_path, "recommendation", "a recommender",
                      "a recommendation config, e.g. configs/ml100k_mf.yaml")
    from ember.tasks import recommendation
    return recommendation.recommend(model, user, k, path=str(model_path))


def generate(model_path, label: str, n: int, *, seed: int | None = None, temperature: float = 1.0):
    """`ember generate`: `n` new images (n, H, W, C) in [0, 1] of the class `label`."""
    model = _load_for(model_path, "image_generation", "an image-generation model",
                      "an image_generation config, e.g. configs/mnist_cvae.yaml")
    from ember.tasks import image_generation
    return image_generation.generate(model, label, n, seed=seed, temperature=temperature, path=str(model_path))


def print_metrics(metrics: dict, stream=None) -> None:
    stream = stream or sys.stdout
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"{key:>16}  {value:.6f}", file=stream)
        elif isinstance(value, int):
            print(f"{key:>16}  {value:,}", file=stream)

