"""Data-parallel training time per step: ember `fit` under torchrun vs a hand-written DistributedDataParallel loop.

Run it under torchrun; every process trains both contenders in interleaved rounds and rank 0 prints:
  ember   `model.fit(x, y, batch_size=B, epochs=1, verbose=0)`: DDP, rank 0's order sharded, metrics summed
  eager   the loop a PyTorch user writes: DDP around an nn.Module, each rank its slice of a shared permutation,
          forward, cross-entropy, backward, Adam
Models: `cnn` (the classic Keras MNIST CNN, batch 32 per process) and `transformer` (token + position
embedding, one encoder block of width 128 with 4 heads, masked average pooling, batch 64 per process, on
random token ids of 8 to 56 tokens).

    torchrun --standalone --nproc-per-node 2 benchmarks/distributed.py --model cnn --rounds 3 --steps 100
    (on a GPU machine: each process takes its own GPU; --precision bf16 for autocast)
"""
import argparse
import contextlib
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from interleave import compare
from seed_cnn import classic_cnn, mnist_like
from torch import nn

from ember import layers, models
from ember.train import distributed

BATCH = {"cnn": 32, "transformer": 64}
VOCABULARY, LENGTH, WIDTH = 20000, 56, 128


def token_data(n: int):
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, LENGTH + 1, n)
    ids = rng.integers(1, VOCABULARY, (n, LENGTH))
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    return ids.astype("int64"), rng.integers(0, 2, n)


class EagerTransformer(nn.Module):
    """What ember's transformer_classifier computes, written with torch.nn (post-norm encoder block)."""

    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCABULARY, WIDTH), nn.Embedding(LENGTH, WIDTH)
        self.block = nn.TransformerEncoderLayer(WIDTH, 4, 256, dropout=0.1, batch_first=True)
        self.dropout, self.out = nn.Dropout(0.1), nn.Linear(WIDTH, 2)

    def forward(self, ids):
        padding = ids == 0
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        x = self.block(x, src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).float()
        return self.out(self.dropout((x * keep).sum(1) / keep.sum(1).clamp_min(1)))


def eager_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))


def eager_runner(model, x, y, batch, device, autocast):
    model = model.to(device)
    if x.dim() == 4:  # images: channels-last arrays -> NCHW
        x = x.permute(0, 3, 1, 2).contiguous()
    x, y = x.to(device), y.to(device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    rank, world = dist.get_rank(), dist.get_world_size()

    def epoch():
        ddp.train()
        order = torch.randperm(len(x), device=device)
        dist.broadcast(order, src=0)
        mine = order[rank::world]
        for start in range(0, len(mine), batch):
            index = mine[start:start + batch]
            with autocast():
                logits = ddp(x[index])
            loss = F.cross_entropy(logits.float(), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epoch


def ember_runner(kind, x, y, batch, device, precision):
    if kind == "cnn":
        model = classic_cnn(layers, models)
    else:
        model = models.create_model("transformer_classifier", vocabulary_size=VOCABULARY, embedding_dim=WIDTH,
                                    num_heads=4, intermediate_dim=256, num_layers=1, dropout=0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], device=device,
                  precision=precision)
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(BATCH), default="cnn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="training steps per process per contender per round")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    device = distributed.resolve_device(args.device)
    here = distributed.setup(device)
    if not here.is_distributed:
        sys.exit("run it under torchrun, e.g. torchrun --standalone --nproc-per-node 2 benchmarks/distributed.py")
    torch.manual_seed(0)
    batch = BATCH[args.model]
    n = args.steps * batch * here.world_size
    x, y = mnist_like(n) if args.model == "cnn" else token_data(n)
    def autocast():
        if args.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)
    eager_model = eager_cnn() if args.model == "cnn" else EagerTransformer()
    runners = {"ember": ember_runner(args.model, x, y, batch, device, args.precision),
               "eager": eager_runner(eager_model, torch.from_numpy(x), torch.from_numpy(y).long(), batch, device,
                                     autocast)}
    quiet = open(os.devnull, "w") if not here.is_main else None
    with contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
        print(f"torch {torch.__version__}, {here.world_size} processes on {device.type} x "
              f"{torch.get_num_threads()} threads, {args.model}, batch {batch} per process, {args.precision}, "
              f"{args.steps} steps x {args.rounds} rounds")
        compare(runners, steps=args.steps, rounds=args.rounds, targets={"eager": 1.0})
    distributed.teardown()


if __name__ == "__main__":
    main()
