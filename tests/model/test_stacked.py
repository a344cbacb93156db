"""src/model/stacked.py and the group's training step (src/training/stacked.py): a member of a stacked group is the
same seed trained alone. With dropout 0, in float64, a member's weights after 20 steps of its own batches (each
padded to the group's longest) equal the solo model's to 1e-9, for each kind of task, with gradient clipping by
each member's own norm. With dropout, what holds is tested: each member draws its own masks at the configured
rate, and the same group draws the same masks again."""

from __future__ import annotations

import pytest
import torch

from src.model import TransformerConfig, build_model
from src.model.dropout import Dropout
from src.model.stacked import StackedModel, clip_grad_norm_per_member
from src.training.inference import forward_batch, scored_target
from src.training.module import TransformerLitModule
from src.training.optim import build_optimizer
from src.training.stacked import StackedLitModule, stack_batches

VOCAB = 13
OPTIMIZER = {
    "name": "adamw_cosine",
    "lr": 3e-3,
    "betas": [0.9, 0.98],
    "eps": 1e-9,
    "weight_decay": 0.01,
    "warmup_steps": 5,
    "min_lr_ratio": 0.1,
}
KINDS = {  # kind -> model.arch
    "seq2seq": "encoder_decoder",
    "lm": "decoder_only",
    "classification": "encoder_only",
}


def model_config(kind: str, dropout: float = 0.0) -> dict:
    cfg = TransformerConfig(
        arch=KINDS[kind],
        d_model=16,
        heads=2,
        enc_layers=1,
        dec_layers=1,
        d_ff=32,
        dropout=dropout,
        max_len=32,
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        num_classes=3 if kind == "classification" else 0,
    )
    return {key: getattr(cfg, key) for key in cfg.__dataclass_fields__}


def member_module(kind: str, seed: int, dropout: float = 0.0) -> TransformerLitModule:
    """A member's module as src.run builds it: the seed first, then the model."""
    torch.manual_seed(seed)
    config = {"task": {"name": "reverse"}, "optimizer": OPTIMIZER, "label_smoothing": 0.0}
    return TransformerLitModule(config, model_config(kind, dropout), kind).double()


def random_batch(kind: str, generator: torch.Generator, size: int = 6) -> dict[str, torch.Tensor]:
    """A batch of the kind's keys, with its own length and some padding (id 0) at the end of some rows."""
    length = int(torch.randint(3, 9, (1,), generator=generator))
    tokens = torch.randint(4, VOCAB, (size, length + 1), generator=generator)
    lengths = torch.randint(2, length + 2, (size,), generator=generator)
    real = torch.arange(length + 1) < lengths[:, None]  # (B, L+1)
    tokens = tokens.masked_fill(~real, 0)
    if kind == "classification":
        return {"src": tokens, "label": torch.randint(0, 3, (size,), generator=generator)}
    if kind == "lm":
        return {"tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:], "tgt_real": real[:, 1:]}
    source = torch.randint(4, VOCAB, (size, length), generator=generator)
    return {"src": source, "tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:], "tgt_real": real[:, 1:]}


def optimizer_of(model: torch.nn.Module, steps: int):
    built = build_optimizer(model, OPTIMIZER, d_model=16, total_steps=steps)
    return built["optimizer"], built["lr_scheduler"]["scheduler"]


def solo_step(module: TransformerLitModule, batch, optimizer, scheduler, clip: float) -> None:
    logits = forward_batch(module.model, module.kind, batch).logits
    loss, _ = module.loss(logits, scored_target(module.model, module.kind, batch))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.model.parameters(), clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_member_trained_in_a_group_equals_its_seed_trained_alone(kind):
    steps, seeds, clip = 20, [0, 1, 2], 0.5  # a clip low enough to bite, member by member
    members = [member_module(kind, seed) for seed in seeds]
    solos = [member_module(kind, seed) for seed in seeds]
    group = StackedLitModule(members, outputs=[None] * len(seeds))  # type: ignore[list-item]
    optimizer, scheduler = optimizer_of(group.model, steps)
    solo_optimizers = [optimizer_of(solo.model, steps) for solo in solos]
    data = [torch.Generator().manual_seed(100 + seed) for seed in seeds]  # each member's own batches
    for _ in range(steps):
        batches = [random_batch(kind, generator) for generator in data]
        loss = group.training_step(batches, 0)["loss"]
        loss.backward()
        group.configure_gradient_clipping(optimizer, clip, "norm")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        for solo, batch, (solo_optimizer, solo_scheduler) in zip(solos, batches, solo_optimizers):
            solo_step(solo, batch, solo_optimizer, solo_scheduler, clip)
    for member, solo in enumerate(solos):
        stacked = group.model.member_state_dict(member)
        alone = solo.model.state_dict()
        assert stacked.keys() == alone.keys()
        moved = max(float((stacked[k] - members[member].model.state_dict()[k]).abs().max()) for k in alone)
        assert moved > 1e-3  # the weights did train (the members' own modules still hold the initial weights)
        for key, value in alone.items():
            torch.testing.assert_close(stacked[key], value, rtol=0, atol=1e-9, msg=f"member {member}: {key}")


def test_the_stack_keeps_each_members_initialisation_and_gives_it_back_under_its_own_names():
    models = [build_model(TransformerConfig(**model_config("seq2seq"))) for _ in range(3)]
    stacked = StackedModel(models)
    for member, model in enumerate(models):
        state = stacked.member_state_dict(member)
        assert state.keys() == model.state_dict().keys()  # tied weights under both their names
        for key, value in model.state_dict().items():
            assert torch.equal(state[key], value)
    fresh = build_model(TransformerConfig(**model_config("seq2seq")))
    stacked.load_member(2, fresh)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in models[2].state_dict().items())
    stacked.set_member(0, models[1].state_dict())
    assert all(torch.equal(stacked.member_state_dict(0)[k], v) for k, v in models[1].state_dict().items())


def test_gradients_are_clipped_by_each_members_own_norm():
    grads = [torch.tensor([[3.0, 4.0], [0.3, 0.4]]), torch.tensor([[0.0], [0.0]])]  # member norms 5 and 0.5
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norms = clip_grad_norm_per_member(params, max_norm=1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(params[0].grad[0], torch.tensor([0.6, 0.8]), atol=1e-6, rtol=0)  # scaled to norm 1
    torch.testing.assert_close(params[0].grad[1], torch.tensor([0.3, 0.4]))  # under the bound: left alone


def test_with_dropout_each_member_draws_its_own_masks_at_the_configured_rate_and_the_group_draws_them_again():
    p = 0.25
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(TransformerConfig(**model_config("lm", dropout=p))))
    stacked = StackedModel(models)
    stacked.template.train()
    x = torch.ones(3, 256, 64)  # (M, B, D): what a Dropout sees, per member (16,384 elements each)

    def dropped(model, inputs):
        dropout = next(m for m in model.modules() if isinstance(m, Dropout))  # the embeddings' dropout
        return dropout(inputs)

    torch.manual_seed(7)
    first = stacked.call(dropped, x)
    torch.manual_seed(7)
    again = stacked.call(dropped, x)
    assert torch.equal(first, again)  # the same group, seeded the same, draws the same masks
    kept = first != 0  # (M, B, D)
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[1], kept[2])  # each member its own
    for member in range(3):
        assert abs(float(kept[member].float().mean()) - (1 - p)) < 0.02  # 6 standard deviations
        torch.testing.assert_close(
            first[member][kept[member]], torch.full_like(first[member][kept[member]], 1 / (1 - p))
        )


def test_the_batches_are_padded_to_the_groups_longest_with_pad_and_false():
    short = {"src": torch.tensor([[5, 6]]), "tgt_real": torch.tensor([[True, True]]), "label": torch.tensor([1])}
    long = {"src": torch.tensor([[5, 6, 7]]), "tgt_real": torch.tensor([[True] * 3]), "label": torch.tensor([2])}
    batch = stack_batches([short, long], pad_id=0)
    assert batch["src"].tolist() == [[[5, 6, 0]], [[5, 6, 7]]]
    assert batch["tgt_real"].tolist() == [[[True, True, False]], [[True, True, True]]]
    assert batch["label"].tolist() == [[1], [2]]


def test_under_bf16_autocast_a_members_loss_is_computed_in_float32_as_a_solo_runs():
    """Autocast computes cross-entropy in float32 from bf16 logits; under vmap its rule does not apply, so the group
    casts the logits itself: its loss is the solo runs' (to bf16's rounding of the logits), not a bf16 loss."""
    config = {"task": {"name": "reverse"}, "optimizer": OPTIMIZER, "label_smoothing": 0.0}

    def member(seed: int) -> TransformerLitModule:  # float32, as trainer.precision=bf16-mixed trains it
        torch.manual_seed(seed)
        return TransformerLitModule(config, model_config("lm"), "lm")

    members, solos = [member(seed) for seed in (0, 1)], [member(seed) for seed in (0, 1)]
    group = StackedLitModule(members, outputs=[None, None])  # type: ignore[list-item]
    data = torch.Generator().manual_seed(0)
    batches = [random_batch("lm", data) for _ in members]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = group.training_step(batches, 0)["loss"]
        solo = sum(
            solo.loss(forward_batch(solo.model, "lm", batch).logits, scored_target(solo.model, "lm", batch))[0]
            for solo, batch in zip(solos, batches)
        )
    assert total.dtype == torch.float32
    torch.testing.assert_close(total, solo, rtol=1e-3, atol=0)
