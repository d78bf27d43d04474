"""ember.train.fused: Adam and AdamW calling torch's fused kernel directly must step exactly as torch's own."""
import copy

import pytest
import torch

from ember.train import fused

TORCH = {fused.Adam: torch.optim.Adam, fused.AdamW: torch.optim.AdamW}


def twin_params(seed=0):
    """Two identical parameter sets: a channels-last conv kernel, a matrix, a bias."""
    torch.manual_seed(seed)
    shapes = [(8, 3, 3, 3), (5, 4), (5,)]
    base = [torch.randn(s) for s in shapes]
    base[0] = base[0].contiguous(memory_format=torch.channels_last)
    return ([torch.nn.Parameter(t.clone(memory_format=torch.preserve_format)) for t in base],
            [torch.nn.Parameter(t.clone(memory_format=torch.preserve_format)) for t in base])


def set_grads(params, step, skip=(), grad_layout=torch.channels_last):
    """Fresh gradients; the conv kernel's in `grad_layout` (autograd gives it the kernel's own layout)."""
    gen = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        p.grad = None if i in skip else torch.randn(p.shape, generator=gen).contiguous(
            memory_format=torch.preserve_format if p.dim() < 4 else grad_layout)


def step_each(pairs, step, skip=()):
    """One step of each (params, optimizer) pair on the same fresh gradients."""
    for params, optimizer in pairs:
        set_grads(params, step, skip)
        optimizer.step()


def groups(params, split):
    if not split:
        return params
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.05, "weight_decay": 0.0}]


@pytest.mark.parametrize("cls", [fused.Adam, fused.AdamW])
@pytest.mark.parametrize("split", [False, True])
def test_steps_match_torchs_fused_optimizer(cls, split):
    ours, theirs = twin_params()
    kwargs = {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 0.1}
    mine, ref = cls(groups(ours, split), **kwargs), TORCH[cls](groups(theirs, split), fused=True, **kwargs)
    for step in range(6):
        for params, optimizer in ((ours, mine), (theirs, ref)):
            set_grads(params, step, skip=(2,) if step == 3 else ())  # a step where the bias has no gradient
            optimizer.step()
            optimizer.zero_grad()
        if step == 1:
            mine.param_groups[0]["lr"] = ref.param_groups[0]["lr"] = 0.003  # a schedule changing the lr
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b) and a.grad is None
    assert mine._lists, "the direct path was not taken"
    for a, b in zip(mine.state_dict()["state"].values(), ref.state_dict()["state"].values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert mine.state[ours[0]]["exp_avg"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("cls", [fused.Adam, fused.AdamW])
def test_a_gradient_in_another_layout_than_its_weight_steps_as_torchs_unfused_optimizer(cls):
    """A gradient set by hand in the default layout on a channels-last weight. torch 2.13's fused CPU kernel
    pairs such a weight and gradient element by element as they lie in memory, which is wrong; the
    single-tensor optimizer is the reference."""
    ours, theirs = twin_params()
    mine, ref = cls(ours, lr=0.01), TORCH[cls](theirs, lr=0.01, foreach=False)
    for step in range(3):
        for params, optimizer in ((ours, mine), (theirs, ref)):
            set_grads(params, step, grad_layout=torch.contiguous_format)
            optimizer.step()
    assert mine._lists, "the direct path was not taken"
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert ours[0].is_contiguous(memory_format=torch.channels_last)


def test_step_counters_are_each_parameters_own_and_saved_apart(tmp_path):
    from safetensors.torch import load_file, save_file
    params, _ = twin_params()
    optimizer = fused.Adam(params, lr=0.01)
    for step in range(3):
        step_each(((params, optimizer),), step)
    steps = [optimizer.state[p]["step"] for p in params]
    assert [float(s) for s in steps] == [3.0, 3.0, 3.0]
    optimizer.state[params[1]]["step"].fill_(7.0)  # a counter set by hand moves alone
    step_each(((params, optimizer),), 3)
    assert [float(s) for s in steps] == [4.0, 8.0, 4.0]
    state = {f"{i}.step": s for i, s in enumerate(steps)}  # views of one tensor save as separate entries
    save_file(state, tmp_path / "steps.safetensors")
    assert {k: float(v) for k, v in load_file(tmp_path / "steps.safetensors").items()} == {
        "0.step": 4.0, "1.step": 8.0, "2.step": 4.0}


def test_state_dicts_move_between_ember_and_torch():
    ours, theirs = twin_params()
    mine, ref = fused.Adam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01, fused=True)
    for step in range(3):
        step_each(((ours, mine), (theirs, ref)), step)
    mine_again = fused.Adam(ours, lr=0.01)
    mine_again.load_state_dict(copy.deepcopy(ref.state_dict()))  # torch's checkpoint into ember's: same next step
    step_each(((ours, mine_again), (theirs, ref)), 3)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_hooks_closures_and_amsgrad_take_torchs_step():
    ours, theirs = twin_params()
    mine, ref = fused.Adam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01, fused=True)
    calls = []
    mine.register_step_pre_hook(lambda *a: calls.append("pre"))
    mine.register_step_post_hook(lambda *a: calls.append("post"))
    for params, optimizer in ((ours, mine), (theirs, ref)):
        set_grads(params, 0)
        assert optimizer.step(lambda: torch.tensor(1.5)) == 1.5
    assert calls == ["pre", "post"]  # once each, as torch runs them
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))

    ours, theirs = twin_params()
    mine, ref = fused.Adam(ours, lr=0.01, amsgrad=True), torch.optim.Adam(theirs, lr=0.01, amsgrad=True, fused=True)
    for step in range(3):
        step_each(((ours, mine), (theirs, ref)), step)
    assert not mine._lists and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_models_compiled_with_adam_get_the_direct_optimizer():
    from ember import layers, models
    model = models.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2, activation="softmax")])
    model.compile("adamw", "sparse_categorical_crossentropy")
    model.fit(torch.randn(16, 4).numpy(), torch.randint(0, 2, (16,)).numpy(), epochs=1, verbose=0)
    assert isinstance(model.optimizer, fused.AdamW) and model.optimizer._lists


def test_changed_state_groups_and_copies_are_noticed():
    ours, theirs = twin_params()
    mine, ref = fused.Adam(ours[:2], lr=0.01), torch.optim.Adam(theirs[:2], lr=0.01, fused=True)

    def step_both(step):
        step_each(((ours, mine), (theirs, ref)), step)

    step_both(0)
    mine.state.clear(), ref.state.clear()  # a reset of the moments
    step_both(1)
    mine.param_groups[0]["params"].append(ours[2]), ref.param_groups[0]["params"].append(theirs[2])
    step_both(2)
    mine = copy.deepcopy(mine)  # a copy keeps no argument lists (torch's pickling leaves them out)
    ours = mine.param_groups[0]["params"]
    step_both(3)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert len(mine.state_dict()["state"]) == 3


def test_amp_gradient_scaling_takes_torchs_step():
    ours, theirs = twin_params()
    pairs = ((ours, fused.Adam(ours, lr=0.01)), (theirs, torch.optim.Adam(theirs, lr=0.01, fused=True)))
    for params, optimizer in pairs:
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for step in range(3):
            optimizer.zero_grad()
            loss = sum((p * torch.randn(p.shape, generator=torch.Generator().manual_seed(step))).sum()
                       for p in params)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("cls", [fused.Adam, fused.AdamW])
def test_profiler_sees_the_step_under_torchs_name(cls):
    params, _ = twin_params()
    optimizer = cls(params, lr=0.01)
    step_each(((params, optimizer),), 0)  # the first step builds the argument lists
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        step_each(((params, optimizer),), 1)
    assert optimizer._lists, "the direct path was not taken"
    names = {event.name for event in profiler.events()}
    kernel = "aten::_fused_adamw_" if cls is fused.AdamW else "aten::_fused_adam_"
    assert f"Optimizer.step#{TORCH[cls].__name__}.step" in names and kernel in names


def test_an_empty_parameter_group_is_passed_over():
    ours, theirs = twin_params()
    mine = fused.Adam([{"params": ours}, {"params": []}], lr=0.01)
    ref = torch.optim.Adam([{"params": theirs}, {"params": []}], lr=0.01, fused=True)
    for step in range(2):
        step_each(((ours, mine), (theirs, ref)), step)
    assert mine._lists and all(torch.equal(a, b) for a, b in zip(ours, theirs))
