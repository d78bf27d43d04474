"""Where training runs. The one place that decides the device (and, later, reads torchrun's environment)."""
import dataclasses

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto" -> CUDA when present, else CPU; "cpu", "cuda", "cuda:1" or a torch.device as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
    return device


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Rank, world size and device of this process; a single process until distributed training lands."""
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0
