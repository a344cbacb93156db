"""src/training/stacked.py, the group's own rules: a member whose loss is not finite stops (frozen at its weights,
recorded as diverged) while the others go on; its checkpoints are never written with non-finite weights."""

from __future__ import annotations

import math

import pytest
import torch

from src.training.stacked import MemberOutputs, StackedLitModule
from tests.model.test_stacked import member_module, optimizer_of, random_batch


class EventStandIn:
    """torch.cuda.Event's two calls, for a CPU: a copy there is done before copy_ returns."""

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


@pytest.mark.parametrize("read", ["at once", "a step late"])
def test_a_member_that_diverges_stops_and_the_others_go_on(tmp_path, capsys, read):
    """`a step late`: the GPU's path, on the CPU (the copy's event is a stand-in): the host learns of the divergence
    a step later, and the member is stopped at its step all the same (the device decided it). Either way one
    warning says so as soon as the host knows, not when the group ends."""
    members = [member_module("seq2seq", seed) for seed in (0, 1)]
    outputs = [MemberOutputs(tmp_path / str(i), m, loggers=[], objective=None) for i, m in enumerate(members)]
    group = StackedLitModule(members, outputs)
    optimizer, scheduler = optimizer_of(group.model, 10)
    broken = group.model.member_state_dict(1)
    broken["encoder.layers.0.ffn.linear1.weight"][0, 0] = math.nan  # member 1's loss becomes NaN
    group.model.set_member(1, broken)
    group.start_member_flags(torch.device("cpu"))  # as at the start of training: these weights are held
    if read == "a step late":
        group.flags._copied = EventStandIn()  # type: ignore[assignment]
    data = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in group.model.member_state_dict(0).items()}
    for step in (1, 2, 3):

        def closure() -> torch.Tensor:  # as Lightning's: the step, backward, the clipping
            loss = group.training_step([random_batch("seq2seq", data) for _ in members], 0)["loss"]
            assert torch.isfinite(loss)  # only the members still training count
            loss.backward()
            group.configure_gradient_clipping(optimizer, 1.0, "norm")
            return loss

        group.optimizer_step(0, 0, optimizer, closure)
        scheduler.step()
        optimizer.zero_grad()
        if step == 1:  # the host knows at once on the CPU, a step later on a GPU
            assert group.training_members == ([True, False] if read == "at once" else [True, True])
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
        told_at = 1 if read == "at once" else 2
        expected = ["warning: 1 diverged at step 1 (loss nan); the other members go on"] if step == told_at else []
        assert warnings == expected, step
    assert group.training_members == [True, False]
    assert outputs[1].diverged_at == 1 and math.isnan(outputs[1].diverged_loss)
    after = group.model.member_state_dict(1)
    assert all(torch.equal(after[k], broken[k]) for k in broken if "linear1.weight" not in k)  # frozen
    assert any(not torch.equal(group.model.member_state_dict(0)[k], before[k]) for k in before)  # member 0 trained
    group.model.load_member(1, members[1].model)
    assert outputs[1].save_checkpoint("last", 3, 0) is None  # non-finite weights are never saved
    assert not (tmp_path / "1" / "checkpoints" / "last.ckpt").exists()
    group.model.load_member(0, members[0].model)
    saved = outputs[0].save_checkpoint("last", 3, 0)
    assert saved is not None and torch.load(saved, weights_only=True)["global_step"] == 3
