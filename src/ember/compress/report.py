"""`ember compress`: variants of a model side by side — size, parameters, FLOPs, latency, throughput, accuracy.

Every variant runs in the same runtime (ONNX Runtime, the same thread count), so the latencies compare what
compression changed and nothing else. `report.json` is for scripts:
`{"variants": [{"name", "path", "size_bytes", "params", "flops", "latency_ms_p50", "latency_ms_p95",
"throughput_per_s", "metrics": {"test_accuracy": ...}}]}`; `report.md` is the same as a table.
"""
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ember.compress.distill import distill
from ember.compress.prune import prune
from ember.compress.quantize import QuantizationError, quantize
from ember.errors import EmberError
from ember.export import onnx as export


def flops(model) -> int:
    """Floating-point operations of one forward pass on one sample (a multiply-add counts 2), by torch's
    FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode
    spec = export.input_spec(model, free_length=False)
    sample = torch.as_tensor(export.sample_inputs(spec, 1, vocabulary=export._vocabulary_size(model)))
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(sample)
    return int(counter.get_total_flops())


def timing(session, inputs: np.ndarray, *, runs: int = 300, throughput_batch: int = 256) -> dict:
    """Batch-1 latency p50/p95 in ms over `runs` calls (after a warm-up), and samples/s at `throughput_batch`."""
    name = session.get_inputs()[0].name
    one = inputs[:1]
    for _ in range(20):
        session.run(None, {name: one})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: one})
        times.append(time.perf_counter() - start)
    batch = np.resize(inputs, (throughput_batch, *inputs.shape[1:]))
    session.run(None, {name: batch})
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, {name: batch})
        rounds.append(throughput_batch / (time.perf_counter() - start))
    return {"latency_ms_p50": statistics.median(times) * 1e3,
            "latency_ms_p95": float(np.percentile(times, 95)) * 1e3,
            "throughput_per_s": statistics.median(rounds)}


def accuracy(session, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    name = session.get_inputs()[0].name
    predicted = np.concatenate([session.run(None, {name: x[i:i + batch]})[0].argmax(-1)
                                for i in range(0, len(x), batch)])
    return float((predicted == y).mean())


def measure(name: str, path: Path, params: int, n_flops: int, x_test, y_test, threads: int) -> dict:
    session = export.session(path, threads)
    return {"name": name, "path": path.name, "size_bytes": path.stat().st_size, "params": params, "flops": n_flops,
            **timing(session, x_test), "metrics": {"test_accuracy": accuracy(session, x_test, y_test)}}


def compress(model, data, out: Path, *, quantize_int8: bool = True, prune_amount: float | None = None,
             finetune_epochs: int = 1, student=None, distillation: dict | None = None,
             loss: str = "sparse_categorical_crossentropy", threads: int = 1, calibration_size: int = 512,
             source: str | None = None, verbose: int = 0) -> dict:
    """Write the variants asked for into the existing folder `out` — fp32 (the model as ONNX), pruned (structured,
    fine-tuned on `data.x_train`; also saved as pruned.ember), int8, pruned+int8, student (a built model trained
    by `distill` with the keyword arguments `distillation`; saved as student.ember) — measure each on
    `data.x_test` and write report.json and report.md. Returns the report."""
    calibration_part = "training" if len(data.x_train) else "test"  # a test-only --data calibrates on test inputs
    x_calibration = (data.x_train if len(data.x_train) else data.x_test)[:calibration_size]
    candidates = [("fp32", model)]
    if prune_amount:
        pruned = prune(model, prune_amount)
        if finetune_epochs:
            pruned.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
            pruned.fit(data.x_train, data.y_train, epochs=finetune_epochs, batch_size=32, verbose=verbose)
        pruned.save(out / "pruned.ember", include_optimizer=False)
        candidates.append(("pruned", pruned))
    if student is not None:
        distill(model, student, data.x_train, data.y_train, verbose=verbose, **(distillation or {}))
        student.metadata = dict(model.metadata)
        student.save(out / "student.ember", include_optimizer=False)
    rows, skipped = [], []
    for name, candidate in candidates:
        params, n_flops = candidate.count_params(), flops(candidate)
        export.export_onnx(candidate, out / f"{name}.onnx", source=source)
        rows.append(measure(name, out / f"{name}.onnx", params, n_flops, data.x_test, data.y_test, threads))
        if quantize_int8:
            int8 = "int8" if name == "fp32" else f"{name}+int8"
            try:
                quantize(candidate, out / f"{int8}.onnx", calibration=x_calibration, source=source)
            except QuantizationError as e:  # the other variants still count; the report says why this one is missing
                skipped.append({"name": int8, "reason": str(e)})
                continue
            rows.append(measure(int8, out / f"{int8}.onnx", params, n_flops, data.x_test, data.y_test, threads))
    if student is not None:
        export.export_onnx(student, out / "student.onnx", source=source)
        rows.append(measure("student", out / "student.onnx", student.count_params(), flops(student), data.x_test,
                            data.y_test, threads))
    report = {"source": source, "threads": threads, "test_samples": int(len(data.y_test)), "variants": rows,
              "skipped": skipped}
    if quantize_int8:
        report["calibration"] = {"part": calibration_part, "samples": int(len(x_calibration))}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    base = report["variants"][0]
    lines = [f"# Compression report: {report['source'] or 'model'}", "",
             f"All variants run in ONNX Runtime on {report['threads']} thread(s); accuracy on "
             f"{report['test_samples']:,} test samples; latency is batch 1, throughput batch 256.", "",
             "| variant | size | × smaller | params | MFLOPs | latency p50 / p95 (ms) | × faster | samples/s | "
             "test accuracy | Δ points |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["variants"]:
        acc = row["metrics"]["test_accuracy"]
        lines.append(f"| {row['name']} | {row['size_bytes']:,} B | {base['size_bytes'] / row['size_bytes']:.2f} | "
                     f"{row['params']:,} | {row['flops'] / 1e6:.2f} | {row['latency_ms_p50']:.3f} / "
                     f"{row['latency_ms_p95']:.3f} | {base['latency_ms_p50'] / row['latency_ms_p50']:.2f} | "
                     f"{row['throughput_per_s']:,.0f} | {acc:.4f} | "
                     f"{(acc - base['metrics']['test_accuracy']) * 100:+.2f} |")
    lines += ["", *(f"Not kept: **{entry['name']}**: {entry['reason']}." for entry in report.get("skipped", []))]
    if report.get("calibration", {}).get("part") == "test":
        lines.append(f"The int8 activation ranges were calibrated on {report['calibration']['samples']:,} of the test "
                     "inputs (the data has no training part), so the int8 accuracy is measured on inputs it saw.")
    return "\n".join(lines) + "\n"


def compress_file(model_path, data_arg: str, out, *, quantize_int8: bool = True, prune_amount: float | None = None,
                  finetune_epochs: int = 1, student_config=None, temperature: float = 4.0, alpha: float = 0.9,
                  threads: int = 1, overwrite: bool = False, seed: int = 0, verbose: int = 0) -> dict:
    """`ember compress MODEL --data D [--quantize int8] [--prune 0.5 --finetune-epochs 1] [--distill-student
    CONFIG] --out DIR`: training and test data from `D` (read as the model's task reads it), the variants and
    the report into `out`, a folder written whole or not at all. The student is the model of the run config
    `student_config` (same task), distilled for its train.epochs at its train.batch_size."""
    from ember import models
    from ember.tasks import get_task
    from ember.tasks.config import ConfigError, load_config
    from ember.tasks.runner import check_run_dir, staged
    if not quantize_int8 and not prune_amount and student_config is None:
        raise EmberError("nothing to do: ask for --quantize int8, --prune AMOUNT and/or --distill-student CONFIG")
    model = models.load_model(model_path, compile=False)
    task_name = model.metadata.get("task")
    task = get_task(task_name) if task_name else None
    if task is None or not hasattr(task, "evaluation_data") or not hasattr(task, "loss"):
        raise EmberError(f"{model_path}: not a classifier written by `ember train` (task {task_name!r})")
    data = task.evaluation_data(model, data_arg)
    if (prune_amount and finetune_epochs or student_config is not None) and not len(data.x_train):
        raise EmberError(f"--data {data_arg}: no training part to fine-tune or distill on (a dataset name or an "
                         ".npz with x_train has one)")
    student, distillation = None, None
    if student_config is not None:
        config = load_config(student_config)
        if config.task != task_name:
            raise ConfigError(f"{student_config}: a {config.task} config; the teacher is {task_name}")
        student = task.build_model(config, data)
        distillation = {"temperature": temperature, "alpha": alpha, "epochs": config.train.epochs,
                        "batch_size": config.train.batch_size}
    out = Path(out)
    check_run_dir(out, overwrite, [model_path])
    torch.manual_seed(seed)  # fine-tuning and distillation draw their batch orders from it
    with staged(out, overwrite, [model_path]) as staging:
        return compress(model, data, staging, quantize_int8=quantize_int8, prune_amount=prune_amount,
                        finetune_epochs=finetune_epochs, student=student, distillation=distillation, loss=task.loss,
                        threads=threads, source=str(model_path), verbose=verbose)
