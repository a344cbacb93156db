"""Learning-rate schedules: the paper's formula, warm-up + cosine, and what the optimizer actually sees."""

from __future__ import annotations

import json
import math

import pytest
import torch

from src.training.optim import (
    build_optimizer,
    noam_multiplier,
    time_budget_fraction,
    update_kernel,
    warmup_cosine_multiplier,
)


def test_noam_matches_the_paper_formula():
    d_model, warmup = 512, 4000
    for step in (1, 10, 1000, 4000, 4001, 10000, 100000):
        expected = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert noam_multiplier(step, d_model, warmup) == pytest.approx(expected)


def test_noam_peaks_at_warmup():
    d_model, warmup = 64, 400
    values = [noam_multiplier(s, d_model, warmup) for s in range(1, 2000)]
    assert max(range(len(values)), key=values.__getitem__) + 1 == warmup
    assert values[warmup - 1] == pytest.approx((d_model * warmup) ** -0.5)


def test_warmup_cosine_shape():
    assert warmup_cosine_multiplier(50, 100, 1000) == pytest.approx(0.5)
    assert warmup_cosine_multiplier(100, 100, 1000) == pytest.approx(1.0)
    assert warmup_cosine_multiplier(550, 100, 1000) == pytest.approx(0.5)  # half way down
    assert warmup_cosine_multiplier(1000, 100, 1000, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine_multiplier(5000, 100, 1000, min_ratio=0.1) == pytest.approx(0.1)


def test_a_time_budget_ends_the_cosine_decay_when_it_runs_out():
    """Step 200 of 100,000 is barely started by steps, but half the budget is gone: the decay is half way."""
    assert warmup_cosine_multiplier(200, 100, 100_000, time_fraction=0.5) == pytest.approx(0.5)
    assert warmup_cosine_multiplier(200, 100, 100_000, min_ratio=0.1, time_fraction=1.0) == pytest.approx(0.1)
    assert warmup_cosine_multiplier(50, 100, 100_000, time_fraction=0.9) == pytest.approx(0.5)  # warm-up is in steps
    assert warmup_cosine_multiplier(550, 100, 1000, time_fraction=0.1) == pytest.approx(0.5)  # steps further along


def test_the_budget_is_read_from_lightnings_timer():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    assert time_budget_fraction(SimpleNamespace(callbacks=[]))() == 0.0
    timer = Timer(duration="00:00:10:00")
    timer.load_state_dict({"time_elapsed": {"train": 150.0}})  # 2.5 of 10 minutes spent, as a resumed run says
    assert time_budget_fraction(SimpleNamespace(callbacks=[timer]))() == pytest.approx(0.25)


def _optimizer_cfg(name, lr, warmup):
    return {
        "name": name,
        "lr": lr,
        "warmup_steps": warmup,
        "weight_decay": 0.0,
        "betas": [0.9, 0.98],
        "eps": 1e-9,
        "min_lr_ratio": 0.0,
    }


def test_scheduler_steps_give_noam_learning_rates():
    model = torch.nn.Linear(4, 4)
    built = build_optimizer(model, _optimizer_cfg("adam_noam", 2.0, 10), d_model=64, total_steps=100)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert built["lr_scheduler"]["interval"] == "step"
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.9, 0.98)
    assert optimizer.defaults["eps"] == 1e-9
    seen = []
    for _ in range(20):  # lr used by optimizer step s (1-based), as Lightning steps the scheduler after it
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2.0 * noam_multiplier(s, 64, 10) for s in range(1, 21)]
    assert seen == pytest.approx(expected)


def test_adamw_cosine_ends_at_min_ratio():
    model = torch.nn.Linear(4, 4)
    cfg = _optimizer_cfg("adamw_cosine", 1e-3, 5) | {"min_lr_ratio": 0.1, "weight_decay": 0.01}
    built = build_optimizer(model, cfg, d_model=64, total_steps=50)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW)
    for _ in range(49):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert not math.isnan(optimizer.param_groups[0]["lr"])


def test_the_update_is_fused_at_full_precision_and_multi_tensor_under_mixed_precision():
    params = list(torch.nn.Linear(4, 4).parameters())
    assert update_kernel(params, mixed_precision=False) == {"fused": True}
    assert update_kernel(params, mixed_precision=True) == {"foreach": True}  # Lightning clips no fused optimizer
    cfg = _optimizer_cfg("adamw_cosine", 1e-3, 10)
    built = build_optimizer(torch.nn.Linear(4, 4), cfg, d_model=4, total_steps=10, mixed_precision=True)
    assert built["optimizer"].defaults["foreach"] is True and not built["optimizer"].defaults["fused"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_run_with_gradient_clipping_trains_at_full_and_mixed_precision(capsys, tmp_path, precision):
    from tests.test_bad_inputs import TINY, run_command

    args = [*TINY, f"trainer.precision={precision}", "trainer.gradient_clip_val=1.0", f"hydra.run.dir={tmp_path}"]
    result = run_command("src.run", args, capsys)
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"


def test_a_run_bounded_by_its_time_budget_alone_has_a_schedule_that_follows_the_budget():
    """trainer.max_steps=-1 with trainer.max_time: Lightning estimates infinitely many steps; the schedule is then
    as long as never reached, and the cosine decay follows the share of the budget spent."""
    from types import SimpleNamespace

    from src.training.optim import schedule_length, warmup_cosine_multiplier

    assert schedule_length(SimpleNamespace(estimated_stepping_batches=600)) == 600
    total = schedule_length(SimpleNamespace(estimated_stepping_batches=float("inf")))
    assert total > 10**12
    assert warmup_cosine_multiplier(5000, 100, total, 0.1, time_fraction=1.0) == pytest.approx(0.1)
    assert warmup_cosine_multiplier(5000, 100, total, 0.1, time_fraction=0.0) == pytest.approx(1.0)
