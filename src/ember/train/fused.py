"""Adam and AdamW whose `step()` calls torch's fused kernel directly.

`torch.optim.Adam(fused=True)` updates every parameter in one kernel, but reaches it through Python that runs
on every step: a profiler range, the step-hook loops, a grad-mode switch, reading each parameter's state and
regrouping all tensors by device and dtype. On the classic MNIST CNN on CPU that is about 0.25 ms of a 7 ms
step. These subclasses keep the kernel's argument lists from one step to the next and call it straight away.

Anything else takes torch's own step, unchanged: a closure, step hooks, AMP's gradient scaling, amsgrad,
capturable, differentiable or unfused groups, a tensor learning rate, a parameter without a gradient this
step, or a group mixing devices or dtypes. Groups, parameters or state changed between steps are noticed.
The state (`step`, `exp_avg`, `exp_avg_sq`) is torch's, so checkpoints move freely between these classes and
torch's, and `isinstance(opt, torch.optim.Adam)` holds.

Two more savings on the direct path (the step inside `fit` of the classic CNN: 192 -> 147 us, on 2 AVX-512 cores):
- Channels-last weights, their gradients and moments go to the kernel as 1-D aliases of their memory (they
  share one layout, and Adam is elementwise). torch's CPU kernel is slower on the 4-D tensors (56 against
  43 us for the classic CNN's weights, timed alone), and it pairs a weight with a gradient of another layout
  (one set by hand) element by element as they lie in memory, which is wrong: here that gradient is first
  copied into its weight's layout.
- A group's step counters are views of one tensor, so that one add counts the step for every parameter
  instead of a `_foreach_add_` over one 0-d tensor each. They are still each parameter's own `state["step"]`.
"""
import contextlib

import torch
from torch.optim import optimizer as torch_optimizer


def _torch_step(cls):
    """torch's `cls.step` inside torch's hook runner. torch wraps a class's step in that runner when the first
    instance is made; the wrapper is unwrapped first so that the hooks never run twice."""
    step = cls.step
    if getattr(step, "hooked", False):
        step = step.__wrapped__
    return torch.optim.Optimizer.profile_hook_step(step)


class _DirectFused:
    """The fast path shared by Adam and AdamW (see the module docstring)."""
    _torch_class: type
    # per group: (group, params, their state dicts, the kernel's params, exp_avgs and exp_avg_sqs, steps, the
    # tensor the steps are views of, the indexes of the 1-D aliased params), checked against the optimizer's
    # groups and state before each step. A class default, as torch's pickling leaves it out.
    _lists = None
    _state_count = 0

    def __init__(self, params, **kwargs):
        super().__init__(params, **{"fused": True, **kwargs})

    # torch wraps `step` in its hook runner unless it is marked as already wrapped; `step` runs that runner
    # itself whenever hooks exist, so hooks and closures behave exactly as with torch's class.
    def step(self, closure=None):
        if closure is None and not self._hooked() and getattr(self, "grad_scale", None) is None \
                and getattr(self, "found_inf", None) is None:
            lists = self._current_lists()
            if lists and all(p.grad is not None for _, params, *_ in lists for p in params):
                with (torch.profiler.record_function(f"Optimizer.step#{self._torch_class.__name__}.step")
                      if torch.autograd._profiler_enabled() else contextlib.nullcontext()):  # torch's range
                    self._fused_step(lists)
                return None
        self._lists = None  # torch's step may create state
        return _torch_step(self._torch_class)(self, closure)

    step.hooked = True

    @staticmethod
    @torch.no_grad()
    def _fused_step(lists) -> None:
        for group, params, _, kernel_params, exp_avgs, exp_avg_sqs, steps, counts, flat in lists:
            if not params:
                continue
            counts.add_(1)
            grads = [p.grad for p in params]
            for i in flat:
                grads[i] = _flat_grad(grads[i], params[i])
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            beta1, beta2 = group["betas"]
            kernel(kernel_params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                   lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=group["maximize"], grad_scale=None, found_inf=None)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None

    def _hooked(self) -> bool:
        return bool(self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                    or torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks)

    def _current_lists(self):
        """The kept lists while the groups, their parameters and the state are the ones they were made from;
        else new ones."""
        lists = self._lists
        if lists is None or len(lists) != len(self.param_groups) or len(self.state) != self._state_count:
            return self._make_lists()
        state = self.state
        for (group, params, states, *_), now in zip(lists, self.param_groups):
            if group is not now or len(params) != len(now["params"]) or not all(
                    p is q and state.get(p) is s for p, q, s in zip(params, now["params"], states)):
                return self._make_lists()
        return lists

    def _make_lists(self):
        """The kernel's argument lists, creating the state torch would on its first step; None (nothing kept)
        while some parameter has no gradient or some group needs torch's step."""
        if any(p.grad is None for group in self.param_groups for p in group["params"]):
            return None
        lists = []
        for group in self.param_groups:
            params = list(group["params"])
            if (not group["fused"] or group["amsgrad"] or group["capturable"] or group["differentiable"]
                    or isinstance(group["lr"], torch.Tensor)
                    or len({(p.device, p.dtype) for p in params}) > 1 or any(p.is_complex() for p in params)):
                return None  # (a state dict loaded from an unfused Adam turns "fused" off, as in torch)
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            lists.append(_kernel_lists(group, params, states))
        self._lists, self._state_count = lists, len(self.state)
        return lists

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lists = None  # the loaded state tensors replace the kept ones


def _kernel_lists(group, params, states) -> tuple:
    """A group's entry in the kept lists (see `_DirectFused._lists`). Its step counters become views of one
    tensor, and its channels-last weights and their moments 1-D aliases."""
    counts = torch.zeros(0)
    if params:
        counts = torch.stack([torch.as_tensor(s["step"], dtype=torch.float32, device=params[0].device).reshape(())
                              for s in states])
    for i, state in enumerate(states):
        state["step"] = counts[i]
    flat = [i for i, (p, s) in enumerate(zip(params, states)) if _aliasable(p, s)]

    def for_kernel(tensors):
        return [_flat(t) if i in flat else t for i, t in enumerate(tensors)]

    return (group, params, states, for_kernel(params), for_kernel([s["exp_avg"] for s in states]),
            for_kernel([s["exp_avg_sq"] for s in states]), [s["step"] for s in states], counts, flat)


_DENSE_LAYOUTS = {4: torch.channels_last, 5: torch.channels_last_3d}


def _aliasable(param, state) -> bool:
    """True for a channels-last weight whose moments share its layout: the kernel can take them all 1-D."""
    layout = _DENSE_LAYOUTS.get(param.dim())
    return (layout is not None and not param.is_contiguous() and param.is_contiguous(memory_format=layout)
            and state["exp_avg"].stride() == state["exp_avg_sq"].stride() == param.stride())


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D alias of a dense tensor's memory, element by element in memory order."""
    return t.as_strided((t.numel(),), (1,))


def _flat_grad(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`grad` as a 1-D alias in `param`'s memory order (autograd gives it that layout; a gradient set by hand
    in another layout is copied into it first)."""
    if grad.stride() != param.stride():
        grad = torch.empty_like(param, dtype=grad.dtype).copy_(grad)
    return _flat(grad)


class Adam(_DirectFused, torch.optim.Adam):
    """`torch.optim.Adam(fused=True)` with a direct step: same arguments, same state."""
    _torch_class = torch.optim.Adam


class AdamW(_DirectFused, torch.optim.AdamW):
    """`torch.optim.AdamW(fused=True)` with a direct step: same arguments, same state."""
    _torch_class = torch.optim.AdamW
