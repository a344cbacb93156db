"""The GPU benchmark (`make bench-gpu`, src/bench/gpu.py) on a machine without a GPU: the command refuses in one
line, and its pieces that do not need one work: the step runner (a failing or overrunning step does not lose the
others), the FLOP count, the figures beside their goals, and the measuring functions on a tiny model on the CPU."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch

from src.bench import gpu
from src.model import TransformerConfig, build_model
from tests.conftest import wait_for_state


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the benchmark would run")
def test_without_a_gpu_the_benchmark_refuses_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        gpu.main(["--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: src.bench.gpu measures a CUDA GPU") and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def python(code: str) -> list[str]:
    """A fake step's command: Python running `code`, with the step's result file as sys.argv[1]."""
    return [sys.executable, "-c", code]


FAKE_STEPS = {
    "ok": python("import json, sys; json.dump({'rate': 1.5}, open(sys.argv[1], 'w'))"),
    "fails": python("import sys; print('working...'); sys.exit('error: the GPU is on fire')"),
    # records a first figure, starts a command of its own, and overruns its limit
    "overruns": python(
        "import json, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "json.dump({'first': 1, 'its_command': child.pid}, open(sys.argv[1], 'w'))\n"
        "time.sleep(60)"
    ),
    "ok_after": python("import json, sys; json.dump({'rate': 2.5}, open(sys.argv[1], 'w'))"),
    "too_late": python("pass"),
}


def test_a_failing_or_overrunning_step_does_not_lose_the_others(tmp_path, capsys):
    steps = [
        gpu.Step("ok", 10, gpu.peak),
        gpu.Step("fails", 10, gpu.peak),
        gpu.Step("overruns", 1, gpu.peak),
        gpu.Step("ok_after", 10, gpu.peak),
        gpu.Step("too_late", 60, gpu.peak),  # more than what is left of the whole budget, and over 20 s
    ]
    log = tmp_path / "steps.log"
    seen = []
    started = time.perf_counter()
    outcomes = gpu.run_steps(
        steps,
        lambda step, result_file: [*FAKE_STEPS[step.name], str(result_file)],
        budget_s=15,
        scratch=tmp_path,
        log=log,
        after_each=lambda outcomes: seen.append(list(outcomes)),
    )
    assert time.perf_counter() - started < 10
    assert {name: outcome["status"] for name, outcome in outcomes.items()} == {
        "ok": "ok",
        "fails": "failed",
        "overruns": "timed out",
        "ok_after": "ok",
        "too_late": "skipped",
    }
    assert outcomes["ok"]["result"] == {"rate": 1.5} and outcomes["ok_after"]["result"] == {"rate": 2.5}
    assert outcomes["fails"]["error"] == "exit 1: error: the GPU is on fire"
    # stopped at its limit, with what it had recorded kept, and the command it started stopped too
    overran = outcomes["overruns"]
    assert overran["error"].startswith("stopped at its 1 s limit") and overran["seconds"] < 5
    assert overran["result"]["first"] == 1
    wait_for_state(overran["result"]["its_command"], "Z", None, timeout=5)  # ended (a zombie waits for its parent)
    assert outcomes["too_late"]["error"] == "the whole budget (15 s) is spent"
    assert seen[-1] == ["ok", "fails", "overruns", "ok_after"]  # after each step that ran
    assert "working..." in log.read_text()  # each step's output in the log
    printed = capsys.readouterr().out
    assert "fails (at most 10 s)" in printed and "failed in" in printed and "too_late: skipped" in printed


def test_the_training_flops_are_the_projects_count_written_out():
    # d_model D = 4, d_ff F = 8, 1 + 1 layers, vocabulary V = 10, lengths S = T = 3, batch 2
    cfg = TransformerConfig(
        src_vocab_size=10, tgt_vocab_size=10, d_model=4, heads=1, enc_layers=1, dec_layers=1, d_ff=8, max_len=8
    )
    self_attention = 2 * 3 * 4 * 4**2 + 4 * 3**2 * 4  # Q, K, V, out projections; scores and weighted sum: 528
    ffn = 2 * 3 * (4 * 8 + 8 * 4)  # 384
    cross = 2 * 3 * 2 * 4**2 + 2 * 3 * 2 * 4**2 + 4 * 3 * 3 * 4  # Q and out; K and V of the memory; attention: 528
    output = 2 * 3 * 4 * 10  # 240
    forward = (self_attention + ffn) + (self_attention + cross + ffn) + output  # encoder, decoder, projection
    assert forward == 2592
    assert gpu.training_flops_per_step(cfg, batch=2, src_len=3, tgt_len=3) == 3 * forward * 2


def outcome(result: dict, status: str = "ok", **more) -> dict:
    return {"status": status, "seconds": 1.0, "result": result, **more}


def test_every_goal_is_printed_beside_its_figure_or_why_it_was_not_measured():
    outcomes = {
        "peak": outcome({"peak_flops_per_s": 800e12, "median_flops_per_s": 790e12}),
        "base_shape": outcome(
            {
                "model_flops_per_s": 400e12,
                "full": {"tokens_per_s": {"scratch": 1.2e6, "torch.nn.Transformer": 1.0e6}},
                "padded": {"tokens_per_s": {"scratch": 0.9e6, "torch.nn.Transformer": 1.0e6}},
            }
        ),
        "attention_kernels": outcome({"decoder-only, causal mask, no padding": {"back_ends": ["flash"]}}),
        "default": outcome(
            {"one_run": {"whole_command_s": 30.0, "speed": {"steps_per_s": 200.0, "launch_to_first_step_s": 7.0}}},
            status="failed",
            error="exit 1: error: stacked failed",
        ),
        "loop": outcome({}, status="timed out", error="stopped at its 75 s limit; last line: ..."),
    }
    rows = {row["figure"]: row for row in gpu.figure_rows(outcomes)}
    status = {figure: row["status"] for figure, row in rows.items()}
    assert status["bf16 matrix-multiply peak, 8192^3 products"] == "-"
    utilisation = next(row for figure, row in rows.items() if "utilisation" in figure)
    assert utilisation["measured"].startswith("50%") and utilisation["status"] == "met"
    assert status["base shape, ours vs torch.nn.Transformer, no padding"] == "met"
    assert status["base shape, ours vs torch.nn.Transformer, padded rows"] == "MISSED"
    assert rows["attention back end: decoder-only, causal mask, no padding"]["measured"] == "flash"
    assert rows["default experiment, its 600 steps' training time (trainer=gpu)"]["measured"].startswith("3.0 s")
    assert status["default experiment, its 600 steps' training time (trainer=gpu)"] == "met"
    assert status["launch to the first step (src.run trainer=gpu)"] == "MISSED"
    # what a failed step had measured before it failed is shown; what it had not, says why
    stacked = status["8 seeds stacked (hydra/launcher=stacked) vs one run"]
    assert stacked == "not measured: exit 1: error: stacked failed"
    assert status["tokens/s, src.run's loop vs a bare PyTorch loop (trainer=gpu)"].startswith(
        "not measured: stopped at its 75 s limit"
    )
    assert status["Multi30k de-en test sacreBLEU, 60 s training budget (trainer=gpu)"] == (
        "not measured: left out (--only)"
    )
    goals = {row["goal"] for row in rows.values()}
    assert {"<= 4 s", ">= 35", ">= 45% of the peak", "> 1 (ahead)", ">= 0.95", "<= 6 s", "<= 1.2x"} <= goals
    json.dumps(list(rows.values()))  # as gpu.json keeps them


def test_eight_seeds_stopped_at_the_limit_still_give_a_lower_bound():
    outcomes = {
        "default": outcome(
            {"one_run": {"whole_command_s": 40.0, "speed": {}}, "stacked": {"started_at": 1000.0}},
            status="timed out",
            error="stopped at its 170 s limit; last line: ...",
            ended_at=1100.0,
        )
    }
    row = next(row for row in gpu.figure_rows(outcomes) if row["figure"].startswith("8 seeds"))
    assert row["measured"].startswith("> 2.50x (stopped at the step's limit after 100 s") and row["status"] == "MISSED"


def test_the_measuring_functions_run_on_a_tiny_model_on_the_cpu():
    cpu = torch.device("cpu")
    assert gpu.matmul_peak_bf16(cpu, size=32, seconds=0.01)["peak_flops_per_s"] > 0
    from src.bench.step import TorchTransformerBaseline

    tiny = dict(src_vocab_size=50, tgt_vocab_size=50, d_model=16, heads=2, enc_layers=1, dec_layers=1, d_ff=32)
    cfg = gpu.base_config(8, **tiny)
    models = {"scratch": build_model(cfg), "torch.nn.Transformer": TorchTransformerBaseline(cfg)}
    for batches in (gpu.full_batches(cfg, 2, 2, 8, cpu), gpu.padded_batches(cfg, 2, 2, 8, cpu)):
        figures = gpu.side_by_side(models, batches, cpu, repeats=2, steps=1, warmup=1)
        assert all(rate > 0 for rate in figures["tokens_per_s"].values())
        assert all(len(runs) == 2 for runs in figures["runs_tokens_per_s"].values())
    cases = gpu.attention_cases(cpu, length=8, batch=2, **tiny)
    assert len(cases) == 4
    model, inputs = cases["encoder-decoder, padded rows"]
    seen = gpu.attention_ops(model.train(), inputs, cpu)
    # on the CPU: PyTorch's own CPU kernel or the math fallback, once per attention site and layer, forward
    assert seen["back_ends"] and set(seen["back_ends"]) <= {"flash (CPU)", "math"}
    assert seen["aten_ops"]["aten::scaled_dot_product_attention"] == 3
