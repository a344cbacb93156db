"""The benchmark programs still run (their figures are printed by `make bench`, not asserted here): each measuring
function works on a tiny shape and returns sane numbers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from src.bench import loop, step
from src.cli.command_line import compose_run_config
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_loop_benchmark_times_the_framework_and_the_bare_loop_in_turns():
    cfg = compose_run_config(*loop.loop_overrides(steps=12, dashboard_every=0), "model.d_model=16", "model.d_ff=32")
    turns = loop.TakeTurns(loop.BareLoop(cfg), turn=3, skip_steps=2)
    loop.framework_speed(cfg, callbacks=[turns])
    # Steps 2..10 of the framework are timed whole (the last step's is cut by the final validation): 9 steps,
    # after each third of which the bare loop ran 3 of its own.
    assert turns.steps == {"framework": 9, "bare": 9}
    assert turns.tokens["framework"] > 0 and turns.tokens["bare"] > 0
    summary = turns.summary()
    assert summary["framework_tokens_per_s"] > 0 and summary["bare_tokens_per_s"] > 0
    assert summary["framework_vs_bare"] == pytest.approx(
        summary["framework_tokens_per_s"] / summary["bare_tokens_per_s"]
    )


def test_the_step_benchmark_compares_with_torch_and_counts_flops():
    result = step.compare_with_torch(repeats=1, steps=1, warmup=1, batch=2, length=8)
    assert set(result["tokens_per_s"]) == {"scratch", "torch.nn.Transformer"}
    assert result["flops_per_s"] > 0 and step.matmul_peak(size=64, seconds=0.05) > 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.hedas=3", "error: model.hedas is not a setting: did you mean model.heads"),
        ("model.heads=3", "error: model.heads=3 does not divide model.d_model=64"),
        # runs the bare loop does not copy: a ratio against them would compare different loops
        (
            "trainer=ddp",
            "error: trainer.accelerator=auto trainer.devices=auto: the bare loop runs in one process on one device",
        ),
        (
            "trainer.precision=bf16-true",
            "error: trainer.precision=bf16-true: the bare loop mirrors 32-true, bf16-mixed",
        ),
        ("trainer.accumulate_grad_batches=2", "error: trainer.accumulate_grad_batches=2: the bare loop steps the"),
        ("task=classification", "error: task=classification classifies: the loop benchmark compares token-level"),
    ],
)
def test_the_loop_benchmark_refuses_a_bad_override_in_one_line(override, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        loop.main(["--rounds", "1", "--steps", "31", override])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the loop benchmark would run there")
def test_the_loop_benchmark_refuses_a_gpu_run_without_a_gpu_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        loop.main(["--rounds", "1", "--steps", "31", "trainer=gpu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: trainer.accelerator=gpu: no CUDA GPU is visible here") and "\n" not in err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--steps", "20"], "--steps 20 leaves the bare loop no turn: give --steps 31 or more"),
        (["--turn", "0"], "--turn and --rounds must be at least 1"),
    ],
)
def test_the_loop_benchmark_refuses_too_few_steps_for_a_turn(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        loop.main(arguments)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_bare_loop_trains_in_the_precision_lightning_trains_in():
    # trainer.precision=auto is settled as src.run settles it (32-true on the CPU), so it is not refused
    loop.check_comparable(compose_run_config("trainer.precision=auto"))
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert loop.autocast_dtype("32-true", cpu) is None and loop.autocast_dtype("bf16-mixed", gpu) is torch.bfloat16
    # Lightning trains 16-mixed in bf16 on a CPU (it has no fp16 autocast there), in fp16 on a GPU
    assert loop.autocast_dtype("16-mixed", cpu) is torch.bfloat16
    assert loop.autocast_dtype("16-mixed", gpu) is torch.float16


def test_a_benchmark_says_the_models_warnings_as_the_commands_do(tmp_path):
    """A model a benchmark builds with mask=none warns (ModelWarning) in the commands' one-line form."""
    script = (
        "import src.bench.step\n"
        "from src.model import build_model\n"
        "from tests.model.test_transformer import small_config, small_mask\n"
        "build_model(small_config(mask=small_mask('none')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: mask=none: the decoder has no look-ahead mask"), lines


def test_the_stacked_floor_counts_a_steps_matrix_products_and_its_attention_kernel():
    from torch.utils.flop_counter import FlopCounterMode

    from src.bench import stacked

    floor = stacked.kernel_floor(seeds=5, steps=600, probe_steps=2)
    # Its matrix products: the backward does two for each of the forward's (the weight's gradient and the input's),
    # so a step does 3x the forward's: counted here apart on the default experiment's model and another batch of
    # its data (batches differ in length, hence the margin).
    bare = loop.BareLoop(compose_run_config("trainer.max_steps=600"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        bare.module(next(bare.batches))
    forward = counter.get_total_flops() / 1e9
    assert 2 * forward < floor["matmul_gflop_per_step"] < 4 * forward
    assert floor["matmul_ms_per_step"] > 0  # the profiler's names for the products were found
    assert floor["attention_ms_per_step"] > 0  # and for the fused attention kernel's forward and backward
    per_member_step = (
        floor["matmul_gflop_per_step"] / floor["matmul_peak_gflop_s"] + floor["attention_ms_per_step"] / 1e3
    )
    assert floor["floor_s"] == pytest.approx(5 * 600 * per_member_step)


def test_kernel_seconds_splits_a_workload_into_its_matrix_products_its_attention_and_the_rest():
    q = torch.randn(2, 2, 16, 8)
    weight = torch.randn(64, 64)
    x = torch.randn(32, 64)

    def workload():
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        y = x @ weight  # aten::mm
        return (y.relu() + 1).sum()  # neither

    kernels = step.kernel_seconds(workload, calls=3)
    assert kernels["matmul_s"] > 0 and kernels["attention_s"] > 0
    assert kernels["all_s"] > kernels["matmul_s"] + kernels["attention_s"]  # the relu, add and sum are the rest
