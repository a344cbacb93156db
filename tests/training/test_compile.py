"""compile=true: TransformerLitModule compiles its network in place (torch.compile, the inductor backend), and a run
of src.run trains it. The compiled network must compute what the eager one computes: the same loss and the same
gradients, to float32 rounding.

One run serves both checks: compiling is the cost here (on a 2-core CPU, about 18 s for this tiny model,
most of it inductor generating and building C++ kernels), and the check of the gradients reuses what the run
compiled, on a batch of the shape it trained on.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict

import lightning as L
import pytest
import torch

from src.cli.command_line import compose_run_config
from src.training.module import TransformerLitModule

# A classifier: its validation is one forward pass in eval mode, where a sequence model's greedy decoding would
# compile the network again for every length it decodes (47 s against 18 s here with an empty compile cache, on a
# 2-core Intel Xeon). The encoder's attention, norms and FFN are the code every architecture shares.
RUN = [
    "task=classification",
    "task.max_len=8",
    "model.d_model=16",
    "model.heads=2",
    "model.layers=1",
    "model.d_ff=32",
    "model.dropout=0.0",  # no random masks: the two networks see the same computation
    "batch_size=8",
    "test_after_fit=false",
    "logger=none",  # no dashboards: their need_weights passes would each compile the network once more
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=2",
    "torch_threads=1",
    "compile=true",
]
WORDS = "the cat dog sees runs a park ball red blue".split()


def sentences(path) -> str:
    """task.train_path: 48 six-word sentences (one length: one shape to compile), two labels."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(48):
        picks = torch.randint(len(WORDS), (7,), generator=generator).tolist()
        rows.append(" ".join(WORDS[i] for i in picks[:6]) + "\t" + ("pos" if picks[6] % 2 else "neg"))
    path.write_text("\n".join(rows) + "\n")
    return f"task.train_path={path}"


def has_a_cpp_compiler() -> bool:
    """inductor builds its CPU kernels with the compiler $CXX names, else g++ (or clang++)."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "clang++") if name)


class KeepsTheModule(L.Callback):
    """The trained module, and the last batch it trained on."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.module, self.batch = pl_module, batch


def loss_and_gradients(module: TransformerLitModule, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.train()
    module.zero_grad()
    target = module._target(batch)
    loss, _ = module.loss(module(batch).logits, target)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def named(name: str):
    """assert_close's message, led by the parameter's name."""
    return lambda message: f"{name}: {message}"


@pytest.mark.slow
@pytest.mark.skipif(not has_a_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler: install g++")
def test_a_compiled_run_trains_and_its_network_equals_the_eager_one(tmp_path):
    from src.run import train

    kept = KeepsTheModule()
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        metrics = train(compose_run_config(*RUN, sentences(tmp_path / "train.tsv")), run_dir, callbacks=[kept])
        assert "val/loss" in metrics and (run_dir / "checkpoints" / "last.ckpt").is_file()

        compiled = kept.module
        assert compiled.model._compiled_call_impl is not None  # the run's network was compiled
        eager = TransformerLitModule(
            {**compiled.config, "compile": False}, dict(compiled.hparams["model_config"]), compiled.kind
        )
        eager.load_state_dict(compiled.state_dict())  # compiled in place: the same keys
        assert eager.model._compiled_call_impl is None

        compiled_loss, compiled_gradients = loss_and_gradients(compiled, kept.batch)
        eager_loss, eager_gradients = loss_and_gradients(eager, kept.batch)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
        assert compiled_gradients.keys() == eager_gradients.keys() and eager_gradients
        for name, gradient in eager_gradients.items():
            torch.testing.assert_close(compiled_gradients[name], gradient, rtol=1e-5, atol=1e-5, msg=named(name))
    finally:
        torch._dynamo.reset()  # the compiled code stays out of the tests that follow in this process


@pytest.mark.slow
@pytest.mark.skipif(not has_a_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler: install g++")
@pytest.mark.parametrize(
    "task",
    [
        ["task=reverse"],  # encoder-decoder: cross-attention, and a decoder's causal mask with padding
        ["task=induction", "task.train_size=64"],  # decoder-only: causal self-attention alone
    ],
)
def test_a_compiled_sequence_network_computes_the_eager_ones_loss_and_gradients(task, tmp_path):
    """The other architectures' networks, compiled as compile=true compiles them (in place, by the module), against
    the same weights run eagerly: loss and gradients of one training batch of their task, to float32 rounding. Not
    trained through a run: a sequence model's validation decodes greedily, compiling again for every length."""
    from src.cli.schema import model_config_for, to_plain
    from src.data import build_datamodule

    cfg = compose_run_config(
        *task, "model.d_model=16", "model.heads=2", "model.layers=1", "model.d_ff=32", "model.dropout=0.0",
        "batch_size=8", "compile=true",
    )  # fmt: skip
    data = build_datamodule(cfg.task, cfg.batch_size, cfg.seed)
    model_config = asdict(model_config_for(cfg, data.src_vocab_size, data.tgt_vocab_size, data.num_classes))
    torch.manual_seed(0)
    compiled = TransformerLitModule(to_plain(cfg), model_config, data.kind)
    eager = TransformerLitModule({**to_plain(cfg), "compile": False}, model_config, data.kind)
    eager.load_state_dict(compiled.state_dict())
    assert compiled.model._compiled_call_impl is not None and eager.model._compiled_call_impl is None
    batch = next(iter(data.train_dataloader()))
    try:
        compiled_loss, compiled_gradients = loss_and_gradients(compiled, batch)
        eager_loss, eager_gradients = loss_and_gradients(eager, batch)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
        assert compiled_gradients.keys() == eager_gradients.keys() and eager_gradients
        for name, gradient in eager_gradients.items():
            torch.testing.assert_close(compiled_gradients[name], gradient, rtol=1e-5, atol=1e-5, msg=named(name))
    finally:
        torch._dynamo.reset()
