"""The timing shared by the benchmarks: warm up, interleaved rounds in one process, medians and ratios."""
import argparse
import statistics
import time
import warnings

import torch


def time_per_step(run, steps: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / steps * 1e3


def compare(runners: dict, *, steps: int, rounds: int, targets: dict) -> dict:
    """Time each runner (one call = `steps` training steps) in `rounds` rotated rounds after one warm-up call;
    print each round, the median ms/step and ember's ratio to each peer against its target. Returns the medians."""
    for run in runners.values():  # warm-up: allocator, kernels, Keras tracing
        run()
    times = {name: [] for name in runners}
    for r in range(rounds):
        names = list(runners)[r % len(runners):] + list(runners)[:r % len(runners)]  # rotate the order
        for name in names:
            times[name].append(time_per_step(runners[name], steps))
        print(f"round {r + 1}: " + "  ".join(f"{n} {times[n][-1]:.2f}" for n in runners) + "  (ms/step)")
    median = {name: statistics.median(t) for name, t in times.items()}
    print("\nmedian ms/step: " + "  ".join(f"{n} {m:.2f}" for n, m in median.items()))
    for peer, target in targets.items():
        if peer in median:
            ratio = median["ember"] / median[peer]
            verdict = "meets" if ratio <= target else "MISSES"
            print(f"ember / {peer}: {ratio:.3f}  ({verdict} the <= {target} target)")
    return median


def fit_runner(model, x, y, batch_size: int):
    """One epoch of `model.fit` (ember or Keras) as a runner."""
    return lambda: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)


def keras_runner(build, x, y, batch_size: int):
    """A runner fitting the model `build(keras.layers, keras.models)` makes with Keras 3; None without Keras."""
    try:
        import keras
    except ImportError:
        return None
    warnings.filterwarnings("ignore", module="keras")  # Keras 3 warns about input_shape in its own examples
    return fit_runner(build(keras.layers, keras.models), x, y, batch_size)


def step_arguments(doc: str, steps: int):
    """--rounds and --steps of a training-step benchmark (its docstring's first line as the description)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=steps, help="training steps per contender per round")
    return parser.parse_args()


def run_contenders(runners: dict, args, batch: int, targets: dict, data: str = "") -> dict:
    """Drop the contenders that are not installed (None), say what runs, and `compare` the rest."""
    runners = {name: run for name, run in runners.items() if run is not None}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, {data}"
          f"{args.steps} steps x {args.rounds} rounds; contenders: {', '.join(runners)}")
    return compare(runners, steps=args.steps, rounds=args.rounds, targets=targets)
