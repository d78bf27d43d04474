"""Serving throughput and latency: `ember serve` with dynamic batching against the same server without it.

Starts `ember serve MODEL` on 127.0.0.1 twice per round (batching: `--max-batch-size 64 --max-delay-ms 5`;
none: `--max-batch-size 1`), sends `--requests` KServe v2 infer requests of one sample each from
`--concurrency` keep-alive connections, and reports requests/s, p50/p99 latency and errors. Rounds alternate
the two servers; medians over rounds are quoted. Each run stops at `--requests` or `--time-limit` seconds,
whichever comes first. The load generator speaks just enough HTTP/1.1 for this (keep-alive, Content-Length)
so that it takes little of the CPU the server needs on a small machine. Inputs: MNIST test images (image models, with $EMBER_DATA) or SST-2 dev sentences as
raw text (text models); otherwise random inputs of the model's shape.

    python benchmarks/serve.py --model runs/mnist/model.ember --requests 2000 --concurrency 32 --rounds 3
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

TARGET = 3.0  # batching must serve at least this many times the requests per second


def request_bodies(model_path: str, count: int) -> tuple[str, list[bytes]]:
    """(model name, `count` JSON infer bodies of one sample each)."""
    from ember.serve.predictor import NUMPY, load_predictor
    predictor = load_predictor(model_path)
    spec = predictor.input
    if predictor.kind == "text":
        texts = _sst2_sentences() or [f"a film number {i} that is good and bad" for i in range(count)]
        inputs = [{"name": spec["name"], "shape": [1], "datatype": "BYTES", "data": [texts[i % len(texts)]]}
                  for i in range(count)]
    else:
        shape = [d if d > 0 else 16 for d in spec["shape"][1:]]
        samples = _mnist_images(shape)
        if samples is None:
            samples = np.random.default_rng(0).random((count, *shape)).astype(NUMPY[spec["datatype"]])
        inputs = [{"name": spec["name"], "shape": [1, *shape], "datatype": spec["datatype"],
                   "data": samples[i % len(samples)].reshape(-1).tolist()} for i in range(count)]
    return predictor.name, [json.dumps({"inputs": [x]}).encode() for x in inputs]


def _mnist_images(shape):
    if shape != [28, 28, 1] or not os.environ.get("EMBER_DATA"):
        return None
    from ember import datasets
    _, (x_test, _) = datasets.mnist.load_data()
    return (x_test[:1000, :, :, None] / 255.0).astype(np.float32)


def _sst2_sentences():
    if not os.environ.get("EMBER_DATA"):
        return None
    from ember import datasets
    _, (texts, _) = datasets.sst2.load_data()
    return [str(t) for t in texts]


class Server:
    """`ember serve` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, model: str, *options: str):
        command = [sys.executable, "-m", "ember.cli", "serve", model, "--port", "0", *options]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"at http://([\d.]+):(\d+)", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"ember serve did not start: {line}{self.process.stderr.read()}")
        self.host, self.port = found.group(1), int(found.group(2))

    def stop(self) -> str:
        self.process.terminate()
        _, errors = self.process.communicate(timeout=30)
        return errors


async def _client(host, port, path, bodies, latencies, errors, stop_at):
    """One keep-alive connection sending requests one after another until `bodies` runs out."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while bodies and time.perf_counter() < stop_at:
            body = bodies.pop()
            head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def load(host, port, name, bodies, concurrency, time_limit) -> dict:
    """Send every body at `concurrency`; requests/s, latency percentiles and error count."""
    queue, latencies, errors = list(reversed(bodies)), [], []
    path = f"/v2/models/{name}/infer"
    start = time.perf_counter()
    await asyncio.gather(*(_client(host, port, path, queue, latencies, errors, start + time_limit)
                           for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "seconds": seconds,
            "per_s": len(latencies) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


MODES = {"batching": ["--max-batch-size", "64", "--max-delay-ms", "5"], "none": ["--max-batch-size", "1"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model.ember or model.onnx")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per run at most")
    parser.add_argument("--threads", type=int, default=None, help="server inference threads")
    args = parser.parse_args()
    name, bodies = request_bodies(args.model, args.requests)
    extra = ["--threads", str(args.threads)] if args.threads else []
    results = {mode: [] for mode in MODES}
    print(f"{args.model}: {args.requests} requests of one sample at concurrency {args.concurrency}, "
          f"{args.rounds} rounds")
    for round_ in range(args.rounds):
        for mode, options in MODES.items():
            server = Server(args.model, *options, *extra)
            try:
                asyncio.run(load(server.host, server.port, name, bodies[:64], min(8, args.concurrency), 30))  # warm
                result = asyncio.run(load(server.host, server.port, name, bodies, args.concurrency,
                                          args.time_limit))
            finally:
                log = server.stop()
            results[mode].append(result)
            print(f"round {round_ + 1} {mode:>8}: {result['per_s']:8.1f} requests/s  p50 {result['p50_ms']:7.2f} ms"
                  f"  p99 {result['p99_ms']:7.2f} ms  errors {result['errors']} of {result['requests']}", flush=True)
            if "Traceback" in log:
                print(log, file=sys.stderr)
    print("\nmedians        requests/s    p50 ms    p99 ms   errors")
    median = {}
    for mode, runs in results.items():
        median[mode] = {k: statistics.median(r[k] for r in runs) for k in ("per_s", "p50_ms", "p99_ms")}
        print(f"{mode:>10}  {median[mode]['per_s']:12.1f}  {median[mode]['p50_ms']:8.2f}  "
              f"{median[mode]['p99_ms']:8.2f}   {sum(r['errors'] for r in runs)}")
    ratio = median["batching"]["per_s"] / median["none"]["per_s"]
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"throughput batching / none: {ratio:.2f}x ({verdict} the {TARGET:g}x target)")


if __name__ == "__main__":
    main()
