"""Where training runs, and with whom: the device, and torchrun's process group.

ember starts no cluster of its own. Under `torchrun` (or `ember train --nproc-per-node N`, which calls
`torch.distributed.run`) every process runs the same program; `fit` finds RANK and WORLD_SIZE in the
environment, joins the process group (gloo on CPU, nccl on CUDA), wraps the model in
DistributedDataParallel and trains on its share of every batch:

- `batch_size` is per process: 2 processes x 32 make one optimizer step over 64 samples;
- rank 0 draws each epoch's sample order and sends it to the others; rank r takes samples r, r + world, ...
  (the order padded to a multiple of the world size, as torch's DistributedSampler does), so the union of
  the ranks' batches k is batch k of a one-process run with batch_size x world;
- metrics are summed over the ranks before they are logged, so every rank logs (and early-stops on) the
  same numbers; only rank 0 prints, writes checkpoints and the run directory.

>>> # torchrun --nproc-per-node 2 train.py      (train.py calls model.fit as usual)
"""
import atexit
import contextlib
import dataclasses
import datetime
import logging
import os
import re
import time
import warnings

import torch
import torch.distributed as dist

from ember.errors import EmberError

# how long a collective waits for a rank that neither answers nor closes its connection (a dead process
# closes it, and the others fail at once); EMBER_DIST_TIMEOUT sets it in seconds
DEFAULT_TIMEOUT_S = 300
_DRAIN_S = 0.05  # teardown's pause for gloo's workers to free their last works (see teardown)


class DistributedError(EmberError, RuntimeError):
    """A process of a distributed run failed or lost contact with the others."""


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 outside torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not a whole number") from None


def info() -> DistInfo:
    """This process's place in the run, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto" -> CUDA when present, else CPU; "cpu", "cuda", "cuda:1" or a torch.device as given. Under
    torchrun, "auto" and "cuda" mean this process's GPU (cuda:LOCAL_RANK)."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None and info().is_distributed:
        device = torch.device("cuda", info().local_rank)
    return device


def setup(device: torch.device) -> DistInfo:
    """Join torchrun's process group if this process was started by it and has not joined yet; returns
    this process's DistInfo. Outside torchrun (WORLD_SIZE unset or 1) it does nothing."""
    here = info()
    if not here.is_distributed or dist.is_initialized():
        return here
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=_env_int("EMBER_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout,
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"rank {here.rank} could not join the process group at "
                               f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: "
                               f"{_first_line(e)}") from None
    atexit.register(teardown, wait=False)
    return info()


def teardown(wait: bool = True) -> None:
    """Leave the process group: at the end of a run that every rank finished (`wait`), or at exit.

    gloo's worker threads free each finished collective's work, and the all-reduce of a backward pass holds
    a Python object (torch keeps the autograd context in the work's thread-local state), so the free takes
    the GIL. A worker that asks for the GIL once the interpreter is shutting down is killed, and the process
    aborts ("terminate called without an active exception": about one exit in a hundred of a loop whose
    last collective is a backward pass). So this gives up the GIL for a moment first, in which the workers
    free what they hold. `wait` meets the other ranks in a barrier before that, so all their work is done
    (the barrier's own work holds the work before it until it is freed). At exit (registered by `setup`) it
    does not wait: a rank that exits on an error must not wait for ranks that will never get there."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        time.sleep(_DRAIN_S)
        dist.destroy_process_group()


def _first_line(error: BaseException) -> str:
    """The gist of a torch.distributed error: its first line, without gloo's source location and advice."""
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    line = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", line)
    return line.split(". This is typically caused", 1)[0]


class _Forward(torch.nn.Module):
    """What DDP wraps: the model's forward, or its forward up to the logits (see Model.forward_logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs, logits: bool = False):
        return self.model.forward_logits(*inputs) if logits else self.model(*inputs)


def wrap(model) -> torch.nn.Module:
    """`model`'s forward in DistributedDataParallel: rank 0's weights are sent to every rank here, and the
    gradients are averaged over the ranks in every backward pass."""
    device = model.device
    ids = [device] if device.type == "cuda" else None
    # channels_last convolutions with one input channel: their weight's gradient comes with strides that
    # differ from DDP's bucket only in the size-1 channel axis (the same memory layout), and torch warns
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)
    return torch.nn.parallel.DistributedDataParallel(_Forward(model), device_ids=ids)


# -- sharing the data ---------------------------------------------------------------------------------
def epoch_order(order: torch.Tensor | None, length: int, here: DistInfo) -> torch.Tensor:
    """Rank 0's sample order for the epoch (None: as stored), the same on every rank."""
    if order is None:
        return torch.arange(length)
    order = _on_backend(order.clone())
    dist.broadcast(order, src=0)
    return order.cpu()


def shard(order: torch.Tensor, here: DistInfo) -> torch.Tensor:
    """This rank's samples of the epoch: every world_size-th of `order`, from position `rank`, the order
    padded with its own first samples to a multiple of the world size so every rank takes as many steps."""
    padding = -len(order) % here.world_size
    if padding:
        order = torch.cat([order, order[:padding].repeat(-(-padding // max(len(order), 1)))[:padding]])
    return order[here.rank::here.world_size]


def shard_count(length: int, here: DistInfo) -> int:
    """How many samples each rank gets from `length` (see `shard`)."""
    return -(-length // here.world_size)


def sum_metrics(metrics) -> None:
    """Replace every metric's running total and count by their sums over the ranks (one all-reduce)."""
    states = []
    for metric in metrics:
        total = metric.total if metric.total is not None else torch.zeros(())
        count = metric.count if metric.count is not None else 0
        states.append(torch.stack([torch.as_tensor(total, dtype=torch.float64).cpu(),
                                   torch.as_tensor(count, dtype=torch.float64).cpu()]))
    if not states:
        return
    summed = _on_backend(torch.stack(states))
    dist.all_reduce(summed)
    for metric, (total, count) in zip(metrics, summed.cpu()):
        like = metric.total if isinstance(metric.total, torch.Tensor) else torch.zeros(())
        metric.total, metric.count = total.to(like.device, torch.float32), count.to(like.device, torch.float32)


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. one rank's callback stops training)."""
    value = _on_backend(torch.tensor([1.0 if flag else 0.0]))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _on_backend(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` where the backend reduces: this process's GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor


@contextlib.contextmanager
def failures():
    """Turn the error a collective raises when another rank died or hung (gloo: "Connection closed by peer",
    a timeout; nccl: a DistBackendError) into one DistributedError line naming this rank."""
    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        if not info().is_distributed or not _lost_contact(e):
            raise
        raise DistributedError(f"rank {info().rank}: lost contact with the other processes of the run "
                               f"(one of them failed or was stopped): {_first_line(e)}") from None


def _lost_contact(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, dist.DistError) or any(
        clue in text for clue in ("gloo", "connection", "timed out", "timeout", "broken pipe", "nccl", "socket"))


# -- launching ----------------------------------------------------------------------------------------
# set for the processes `launch` starts: when torchrun stops one (SIGTERM, after another failed), the launcher
# alone says what happened
LAUNCHED_WORKER = "EMBER_LAUNCHED_WORKER"


def launch(worker_args: list[str], *, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
           master_addr: str = "127.0.0.1", master_port: int | None = None, debug: bool = False) -> None:
    """Run `python -m ember WORKER_ARGS` in `nproc_per_node` processes on this node through
    torch.distributed.run (torchrun). One node: a free local port. Several: every node runs this with the
    same `master_addr`/`master_port` (node 0's address) and its own `node_rank`.

    If a process fails, torchrun stops the others on this node (the other nodes' processes fail at their
    next collective) and this raises a DistributedError naming the rank and how it ended."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torchrun would set 1 thread per process, with a warning: share this machine's cores out instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    args = ["--nproc-per-node", str(nproc_per_node), "--monitor-interval", "0.2"]
    if nnodes == 1 and master_port is None:
        args += ["--standalone"]
    else:
        args += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", master_addr,
                 "--master-port", str(master_port or 29500)]
    if not debug:  # torchrun's agent logs each stop and failure at length; the error below says it in a line
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ[LAUNCHED_WORKER] = "1"  # the workers inherit it
    try:
        torchrun.run(torchrun.get_args_parser().parse_args([*args, "-m", "ember", *worker_args]))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else
               f"exited with code {failure.exitcode}")
        raise DistributedError(f"rank {rank} (pid {failure.pid}) {how}; the other processes of this node were "
                               "stopped") from None
    finally:
        os.environ.pop(LAUNCHED_WORKER, None)
