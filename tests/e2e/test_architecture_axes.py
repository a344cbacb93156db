"""The architecture axes end to end (docs/configuration.md, src/model/config.py ModelAxes): grouped-query attention
(model.kv_heads), QK-norm, parallel layers, the projections' biases (model.attention_bias), RoPE with its base,
fraction and both scalings, and T5's relative buckets each train in a real sweep (`python -m src.run -m ...`), are
in the sweep's report, are analysed by src.analyze (a finite importance for every query head), show on the attention
page (src.predict attention=...) as the settings that made them, and are read back by src.eval with the run's own
test metrics.

Two sweeps of two jobs, each sweep varying one axis so that every job's page must name its own value:
  - a decoder-only model on task=induction (parallel layers need one): 4 query heads of 8 dimensions on 2 key/value
    heads, QK-norm, parallel pre-LN layers, biases on W^Q, W^K and W^V only, RoPE at base 500000 on half of each
    head's dimensions, swept over the scaling: model.rope_scaling={type:linear,...},{type:llama3,...} (the two
    scalings take different settings, so the sweep chooses the whole dict);
  - an encoder-decoder on task=reverse: multi-query attention (one key/value head), no biases on the projections,
    T5's relative positions, swept over model.relative_buckets=4,8.
"""

from __future__ import annotations

import csv
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import check, run_here, run_module

pytestmark = pytest.mark.slow

COMMON = [
    "model.d_model=16",
    "model.heads=4",
    "model.layers=1",
    "model.d_ff=32",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.enable_progress_bar=false",
    "optimizer.warmup_steps=1",
    "batch_size=16",
    "dashboard.attention_every_n_steps=4",
    "torch_threads=1",
    "test_after_fit=true",
    "task.train_size=64",
    "task.val_size=16",
    "task.test_size=16",
]

# The two RoPE scalings the decoder sweep chooses between, whole (they take different settings): each changes the
# lower of the two frequencies that turn (4 of each head's 8 dimensions), llama3 since original_max_len is short.
LINEAR, LLAMA3 = "{type:linear,factor:4}", "{type:llama3,factor:4,original_max_len:16}"
ROPE_AXES = ["model.pos_encoding=rope", "model.rope_theta=500000.0", "model.rope_fraction=0.5"]
GROUPED_AXES = ["model.attention_bias=qkv", "model.qk_norm=true", "model.parallel_layers=true"]
DECODER = "decoder-only, 1 layers, 4 heads a layer sharing 2 key/value heads (model.kv_heads=2)"
ENCODER_DECODER = "encoder-decoder, 1 + 1 layers, 4 heads a layer sharing 1 key/value heads (model.kv_heads=1)"

# sweep name -> (its settings, the swept setting's values as report.md's rows show them, {job directory: its
# attention page's model description: the settings the page names, in its order})
SWEEPS = {
    "decoder": (
        [
            "task=induction",
            "task.vocab_size=12",
            "task.seq_len=24",
            "task.min_segment_len=4",
            "task.max_segment_len=8",
            "model.head_dim=8",
            "model.kv_heads=2",
            "model.qk_norm=true",
            "model.norm_position=pre",
            "model.parallel_layers=true",
            "model.attention_bias=qkv",
            "model.pos_encoding=rope",
            "model.rope_theta=500000",
            "model.rope_fraction=0.5",
            f"model.rope_scaling={LINEAR},{LLAMA3}",
        ],
        [f"`{LINEAR}`", f"`{LLAMA3}`"],
        {
            "0_model.rope_scaling:-type:linear-factor:4-": [
                DECODER,
                *ROPE_AXES,
                "model.rope_scaling.type=linear",
                "model.rope_scaling.factor=4.0",
                *GROUPED_AXES,
            ],
            "1_model.rope_scaling:-type:llama3-factor:4-original_max_len:16-": [
                DECODER,
                *ROPE_AXES,
                "model.rope_scaling.type=llama3",
                "model.rope_scaling.factor=4.0",
                "model.rope_scaling.original_max_len=16",
                *GROUPED_AXES,
            ],
        },
    ),
    "encoder_decoder": (
        [
            "task=reverse",
            "model.kv_heads=1",
            "model.attention_bias=none",
            "model.pos_encoding=t5_relative",
            "model.relative_buckets=4,8",
            "model.relative_max_distance=16",
        ],
        ["4", "8"],
        {
            f"{i}_model.relative_buckets:{buckets}": [
                ENCODER_DECODER,
                "model.pos_encoding=t5_relative",
                f"model.relative_buckets={buckets}",
                "model.relative_max_distance=16",
                "model.attention_bias=none",
            ]
            for i, buckets in enumerate((4, 8))
        },
    ),
}
# what the attention sites of each sweep's model are (each of 1 layer of 4 query heads)
SITES = {"decoder": ["decoder_self"], "encoder_decoder": ["encoder_self", "decoder_self", "cross"]}
KV_HEADS = {"decoder": 2, "encoder_decoder": 1}
TEXT = {"decoder": "0123401234", "encoder_decoder": "31415"}
TASK = {"decoder": "induction", "encoder_decoder": "reverse"}
JOBS = [(sweep, job) for sweep, (_, _, jobs) in SWEEPS.items() for job in jobs]


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """Both sweeps through the real command, side by side (one thread each): sweep name -> its directory."""
    root = tmp_path_factory.mktemp("axes")
    dirs = {name: root / name for name in SWEEPS}

    def sweep(name: str):
        return run_module("src.run", "-m", *COMMON, *SWEEPS[name][0], f"hydra.sweep.dir={dirs[name]}")

    with ThreadPoolExecutor(len(SWEEPS)) as pool:
        results = dict(zip(SWEEPS, pool.map(sweep, SWEEPS)))
    for name, result in results.items():
        check(result)
        output = result.stdout + result.stderr
        assert f"report: {dirs[name] / 'report.md'} (2 of 2 runs completed)" in output
        assert "warning:" not in output, output  # no axis given that the job's model does not read
    return dirs


@pytest.fixture(scope="module")
def analysed(sweeps) -> dict[str, Path]:
    """src.analyze on every job (its analysis/ folder, which the attention page reads too): job -> its directory."""
    jobs = {}
    for sweep, job in JOBS:
        directory = sweeps[sweep] / job
        result = check(run_here("src.analyze", f"ckpt={directory}", "torch_threads=1"))
        assert f"written: {directory / 'analysis'}" in result.stdout, result.stdout
        jobs[job] = directory
    return jobs


@pytest.mark.parametrize("sweep, job", JOBS)
def test_every_job_trains_to_a_finite_validation_loss(sweeps, sweep, job):
    directory = sweeps[sweep] / job
    assert json.loads((directory / "run.json").read_text())["status"] == "completed"
    metrics = json.loads((directory / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["history"]] == [4]
    assert finite(metrics["final"]["val/loss"]) and finite(metrics["history"][-1]["val/loss"]), metrics
    assert all(finite(metrics["final"][key]) for key in metrics["final"] if key.startswith("test/")), metrics
    assert sorted(p.name for p in (directory / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize("sweep", SWEEPS)
def test_the_sweep_report_names_each_job_with_its_metrics(sweeps, sweep):
    """report.md: one table row per value of the swept axis, its main metric a number."""
    report = (sweeps[sweep] / "report.md").read_text()
    assert "2 of 2 runs completed." in report
    key = next(setting for setting in SWEEPS[sweep][0] if "," in setting).split("=")[0]
    header = next(line for line in report.splitlines() if line.startswith(f"| {key} |"))
    column = [cell.strip() for cell in header.strip("|").split("|")].index("val/loss")
    for value in SWEEPS[sweep][1]:
        row = next((line for line in report.splitlines() if line.startswith(f"| {value} |")), None)
        assert row is not None, f"no row for {key}={value}:\n{report}"
        cell = [cell.strip() for cell in row.strip("|").split("|")][column]
        assert finite(float(cell.strip("*").split()[0])), row
    assert sorted(path.name for path in sweeps[sweep].iterdir() if path.is_dir() and path.name[0].isdigit()) == [
        job for name, job in JOBS if name == sweep
    ]


@pytest.mark.parametrize("sweep, job", JOBS)
def test_src_analyze_measures_every_query_head(analysed, sweep, job):
    """analysis/report.md, and heads.csv with a finite importance (and single-head ablation) for each of the 4 query
    heads of every attention site, whatever key/value heads they share; the report says how they share them."""
    analysis = analysed[job] / "analysis"
    report = (analysis / "report.md").read_text()
    assert f"(`model.kv_heads={KV_HEADS[sweep]}`)" in report, report[:2000]
    with (analysis / "heads.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted((row["site"], int(row["layer"]), int(row["head"])) for row in rows) == sorted(
        (site, 0, head) for site in SITES[sweep] for head in range(4)
    )
    for row in rows:
        for column in ("importance", "importance_normalised", "metric_without"):
            assert finite(float(row[column])), (column, row)
    summary = json.loads((analysis / "summary.json").read_text())
    assert summary["attention"] == {"heads": 4, "kv_heads": KV_HEADS[sweep]}


@pytest.mark.parametrize("sweep, job", JOBS)
def test_the_attention_page_names_the_jobs_axes_and_shows_its_heads(analysed, sweep, job, tmp_path):
    """src.predict text=... attention=<page>: the page's top line names the job's axes as the settings to paste back
    (its own value of the swept axis; none of the other positional scheme's), and every query head of every site has
    its attention and the importance src.analyze measured."""
    page = tmp_path / "attention.html"
    result = check(run_here("src.predict", f"ckpt={analysed[job]}", f"text={TEXT[sweep]}", f"attention={page}"))
    assert f"attention: {page}" in result.stderr
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    assert found is not None
    data = json.loads(found.group(1))
    task, description, checkpoint = data["about"].split(" · ")  # "reverse · <the model> · checkpoint <run>, step 4"
    assert task == TASK[sweep]
    assert description == ", ".join(SWEEPS[sweep][2][job]), data["about"]
    assert checkpoint == f"checkpoint {analysed[job]}, step 4"
    assert set(data["sites"]) == set(SITES[sweep])
    for site in data["sites"].values():
        assert len(site["weights"]) == 1 and len(site["weights"][0]) == 4  # (L, H, Tq, Tk)
        assert len(site["importance"]) == 1 and all(finite(value) for value in site["importance"][0]), site
        assert site["kv_groups"] is not None  # heads sharing keys and values are said to


@pytest.mark.parametrize("sweep, job", JOBS)
def test_src_eval_reads_the_checkpoint_back_with_the_runs_own_test_metrics(sweeps, sweep, job):
    """src.eval ckpt=<job>: the model rebuilt from the checkpoint, every axis as trained (a scaling or a relative
    distance read back otherwise changes the numbers), scores what the run scored after training (test_after_fit)."""
    directory = sweeps[sweep] / job
    final = json.loads((directory / "metrics.json").read_text())["final"]
    out = check(run_here("src.eval", f"ckpt={directory}", "torch_threads=1")).stdout
    shown = dict(re.findall(r"^\s*(test(?:_long)?/\w+): (\S+)", out, re.M))
    expected = {key for key in final if key.startswith(("test/", "test_long/"))}
    assert expected and set(shown) == expected, (shown, final)
    for key in expected:  # printed to 4 decimals
        assert abs(float(shown[key]) - final[key]) <= 5.1e-5, (key, shown[key], final[key])
