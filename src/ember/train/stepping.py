"""From a batch's loss to an optimizer step, when that is more than `backward(); step()`: gradient
accumulation over several batches, clipping to a global norm, and fp16's loss scaling.

The plain case (none of these) stays inline in `Model.train_step`, with nothing added to its hot path.
"""
import contextlib

import torch


class GradientSteps:
    """Accumulate `accumulate` batches' gradients per optimizer step, clip their global norm to `clip_norm`,
    scale the loss with `scaler` (fp16). `ddp`: the DistributedDataParallel forward, whose gradient
    all-reduce is skipped on the batches that do not end a step (they only accumulate)."""

    def __init__(self, optimizer, params, *, accumulate: int = 1, clip_norm: float | None = None, scaler=None,
                 ddp=None):
        self.optimizer, self.params = optimizer, [p for p in params if p.requires_grad]
        self.accumulate, self.clip_norm, self.scaler, self.ddp = accumulate, clip_norm, scaler, ddp

    def context(self, ends_step: bool):
        """Wrap the forward and backward of a batch: under DDP, a batch that does not end a step keeps its
        gradients local (no all-reduce) until the batch that does."""
        if self.ddp is not None and not ends_step:
            return self.ddp.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, ends_step: bool) -> None:
        """Add this batch's gradients; on the batch that ends a step, clip, step and clear them."""
        if self.accumulate > 1:
            loss = loss / self.accumulate  # the step follows the mean over its batches, as one big batch would
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if not ends_step:
            return
        if self.clip_norm is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, foreach=True)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
