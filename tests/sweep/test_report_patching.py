"""The sweep report's activation-patching section (src/sweep/report.py patching_section): each configuration's
patching figures (<job>/patching/summary.json, from src.analyze analysis=patching) as mean ± std (n) over seeds
with a 95% t interval, the heads and paths that matter most, analyses that measured differently never pooled, runs
whose fractions are undefined left out and named. Fake sweep directories on disk: no training, no model."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from src.sweep.report import write_report
from tests.conftest import PYTHON

MAIN = "val/exact_match"
TITLE = "## Activation patching (src.analyze analysis=patching)"
UNDEFINED = (
    "the clean and corrupted runs score the same logit_diff (3): the corruption changes nothing the metric sees, so "
    "no fraction of it can be restored (a model that has not learned the task, or pairs whose answers do not differ)"
)


def fake_run(sweep: Path, number: int, overrides: list[str], value: float = 0.9, status: str = "completed") -> Path:
    """A job directory as src.run leaves it: .hydra/overrides.yaml, run.json, metrics.json."""
    directory = sweep / f"{number}_{'+'.join(o.replace('=', ':') for o in overrides)}"
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (directory / "run.json").write_text(json.dumps({"status": status, "error": None}))
    if status == "completed":
        final = {MAIN: value, "val/loss": 1 - value}
        history = [{"step": 10, **final}]
        content = {"main_metric": MAIN, "mode": "max", "history": history, "final": final}
        (directory / "metrics.json").write_text(json.dumps(content))
    return directory


def fake_patching(
    job: Path,
    clean: float,
    corrupted: float,
    rho: float | None,
    heads: dict[str, float | None],
    paths: dict[tuple[str, str, str], float] | None = None,
    undefined: str | None = None,
    metric: str = "logit_diff",
    direction: str = "denoising",
    pairs_file: str | None = None,
    pairs: int = 64,
) -> None:
    """patching/summary.json as src/analysis/causal_report.py writes it (null for an undefined figure), by hand."""
    out = job / "patching"
    out.mkdir()
    summary = {
        "metric": metric,
        "direction": direction,
        "pairs": pairs,
        "clean": clean,
        "corrupted": corrupted,
        "restored_undefined": undefined,
        "rank_correlation": {"resid_pre": 0.99, "attn_out": 0.98, "ffn_out": 0.9, "head": rho, "head_position": 0.97},
        "heads_restored": heads,
        "resid_pre_restored": {"encoder_self:0@0": 0.0, "encoder_self:0@5": 1.0},
        "paths": [
            {
                "sender": s,
                "receiver": r,
                "channel": c,
                "value": 1.0,
                "clean": clean,
                "corrupted": corrupted,
                "restored": v,
            }
            for (s, r, c), v in (paths or {}).items()
        ],
        "checkpoint": str(job / "checkpoints" / "best.ckpt"),
        "step": 300,
        "clean_accuracy": 1.0,
        "settings": {
            "split": "val",
            "pairs": pairs_file,
            "max_pairs": 64,
            "metric": metric,
            "direction": direction,
            "senders": ["encoder_self:0:*"],
            "receivers": ["cross:1:*"],
        },
        "seconds": {"patching": 1.0},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


# Per configuration (model.heads), per seed: clean, corrupted, rho (head), the fraction restored by cross:1:2.
CLEAN = {"1": [8.0, 8.5, 9.0], "2": [6.0, 6.0, 6.0]}
CORRUPTED = {"1": [-8.0, -8.0, -8.0], "2": [-6.0, -5.0, -4.0]}
RHO = {"1": [0.9, 0.95, 1.0], "2": [0.5, None, 0.7]}
CROSS_1_2 = {"1": [0.2, 0.3, 0.4], "2": [0.5, 0.7, None]}  # heads=2 seed 2: fractions undefined
SENDER, RECEIVER = "encoder_self:0:1", "cross:1:2"
PATH_V = {"1": [0.4, 0.5, 0.6], "2": [0.8, 0.9, None]}


def heads_of(heads: str, seed: int) -> dict[str, float | None]:
    """Seven heads whose mean |fraction| over the group ranks them cross:1:2, cross:1:1, encoder_self:1:0,
    cross:1:0, cross:1:3, then encoder_self:0:0 and a head that never restores anything."""
    fraction = CROSS_1_2[heads][seed]
    if fraction is None:  # restored_undefined: every fraction null, as summary.json writes NaN
        return dict.fromkeys(
            ["encoder_self:0:0", "encoder_self:1:0", "cross:1:0", "cross:1:1", "cross:1:2", "cross:1:3", "dead"]
        )
    return {
        "encoder_self:0:0": 0.01,
        "encoder_self:1:0": -0.2,  # negative: it counts by its size
        "cross:1:0": 0.1 + 0.01 * seed,
        "cross:1:1": 0.25,
        "cross:1:2": fraction,
        "cross:1:3": 0.05,
        "dead": 0.0,
    }


@pytest.fixture
def patched_sweep(tmp_path) -> Path:
    """model.heads 1 and 2 over three seeds, each patched; heads=2 seed 2's fractions undefined."""
    number = 0
    for heads in ("1", "2"):
        for seed in range(3):
            job = fake_run(tmp_path, number, [f"model.heads={heads}", f"seed={seed}"])
            fraction = CROSS_1_2[heads][seed]
            paths = {(SENDER, RECEIVER, "q"): 1.0, (SENDER, RECEIVER, "v"): PATH_V[heads][seed]}
            fake_patching(
                job,
                CLEAN[heads][seed],
                CORRUPTED[heads][seed],
                RHO[heads][seed],
                heads_of(heads, seed),
                {k: v for k, v in paths.items() if v is not None},
                undefined=UNDEFINED if fraction is None else None,
            )
            number += 1
    return tmp_path


def section_of(sweep: Path) -> str:
    report = (sweep / "report.md").read_text()
    assert report.count(TITLE) == 1
    return report.split(TITLE, 1)[1]


def tables(section: str) -> list[list[list[str]]]:
    """Each markdown table of `section` as its rows of cells, the header first (the --- row left out)."""
    found: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if set(cells[0]) != {"-"}:
                rows.append(cells)
        elif rows:
            found.append(rows)
            rows = []
    return found


def by_setting(table: list[list[str]]) -> dict[str, list[str]]:
    """A table whose first column is a setting, as {its value (the setting's name for the header): other cells}."""
    return {row[0]: row[1:] for row in table}


def bounds(values: list[float], places: int, clipped_to: tuple[float, float] | None = None) -> tuple[str, str]:
    """The interval's bounds the report should write for `values`, to `places` decimals: computed here from SciPy's
    t quantile, not from the report's own helpers."""
    mean = statistics.mean(values)
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    low, high = mean - half, mean + half
    if clipped_to:
        low, high = max(low, clipped_to[0]), min(high, clipped_to[1])
    return f"{low:.{places}f}", f"{high:.{places}f}"


def test_each_configuration_has_its_patching_figures_over_seeds(patched_sweep):
    write_report(patched_sweep, tensorboard=False)
    section = section_of(patched_sweep)
    assert "on the task's own pairs from its val split, `logit_diff`, denoising, 64 pairs." in section
    headline, heads, by_seed, paths = (by_setting(table) for table in tables(section))
    # each seed's own heads, never averaged: a row per job, its strongest head first with its fraction
    rows = tables(section)[2]
    assert rows[0][:2] == ["model.heads", "seed"] and len(rows) == 1 + 5  # 3 + 3 seeds but heads=2 seed 2 (undefined)
    assert all(row[2].startswith("`") and "` (" in row[2] for row in rows[1:])

    assert headline["model.heads"] == ["clean logit_diff", "corrupted logit_diff", "rank correlation (head)"]
    one, two = headline["1"], headline["2"]
    low, high = bounds(CLEAN["1"], 1)  # mean 8.5, std 0.5: the interval to two significant digits of its half-width
    assert one[0] == f"8.50 ± 0.50 (3) [{low}, {high}]" == "8.50 ± 0.50 (3) [7.3, 9.7]"
    assert one[1] == "-8 ± 0 (3) n/a: no spread"  # every seed alike: no interval
    low, high = bounds(RHO["1"], 2, clipped_to=(-1, 1))  # 0.95 ± 0.12 passes 1: clipped to what rho can take
    assert one[2] == f"0.950 ± 0.050 (3) [{low}, {high}]†" == "0.950 ± 0.050 (3) [0.83, 1.00]†"
    assert two[0] == "6 ± 0 (3) n/a: no spread"
    low, high = bounds(CORRUPTED["2"], 1)
    assert two[1] == f"-5.0 ± 1.0 (3) [{low}, {high}]" == "-5.0 ± 1.0 (3) [-7.5, -2.5]"
    low, high = bounds([0.5, 0.7], 1, clipped_to=(-1, 1))  # the undefined rho (null) is left out, and named
    assert two[2] == f"0.60 ± 0.14 (2) [{low}, {high}]†" == "0.60 ± 0.14 (2) [-0.7, 1.0]†"
    assert "Rank correlation (head) undefined, and left out, for 4_model.heads:2+seed:1: Spearman's rho" in section

    # The five heads that matter most over the whole group, by mean |fraction|, named as ablate.heads takes them;
    # heads=2 seed 2 is left out of every fraction (restored_undefined), and named once with its reason.
    assert heads["model.heads"] == ["cross:1:2", "cross:1:1", "encoder_self:1:0", "cross:1:0", "cross:1:3"]
    low, high = bounds(CROSS_1_2["1"], 2)
    assert heads["1"][0] == f"0.30 ± 0.10 (3) [{low}, {high}]" == "0.30 ± 0.10 (3) [0.05, 0.55]"
    low, high = bounds([0.5, 0.7], 1)
    assert heads["2"][0] == f"0.60 ± 0.14 (2) [{low}, {high}]" == "0.60 ± 0.14 (2) [-0.7, 1.9]"  # never clipped
    assert heads["1"][1] == "0.25 ± 0 (3) n/a: no spread" and heads["2"][1] == "0.25 ± 0 (2) n/a: no spread"
    assert heads["1"][2] == "-0.2 ± 0 (3) n/a: no spread"
    low, high = bounds([0.1, 0.11, 0.12], 3)
    assert heads["1"][3] == f"0.110 ± 0.010 (3) [{low}, {high}]" == "0.110 ± 0.010 (3) [0.085, 0.135]"
    line = f"Fractions undefined, and left out of their means, for 5_model.heads:2+seed:2: {UNDEFINED}."
    assert section.count("Fractions undefined") == 1 and line in section

    # Path patching: every path, the farthest from 1 (no change) first, as sender -> receiver (channel).
    assert paths["model.heads"] == [f"{SENDER} -> {RECEIVER} (v)", f"{SENDER} -> {RECEIVER} (q)"]
    low, high = bounds(PATH_V["1"], 2)
    assert paths["1"] == [f"0.50 ± 0.10 (3) [{low}, {high}]", "1 ± 0 (3) n/a: no spread"]
    low, high = bounds([0.8, 0.9], 2)
    assert paths["2"][0] == f"0.850 ± 0.071 (2) [{low}, {high}]" == "0.850 ± 0.071 (2) [0.21, 1.49]"

    # What a cell without an interval means, and the clipping, said once under the tables.
    assert section.count("† clipped to the values rank correlation (head) can take, [-1, 1].") == 1
    assert section.count("n/a: no spread: every seed gave the same value") == 1
    assert "n/a: one run:" not in section
    assert "Not analysed by patching" not in section  # every finished job has its analysis


def test_the_patching_section_follows_the_main_table_and_results_csv_has_the_headline(patched_sweep):
    write_report(patched_sweep, tensorboard=False)
    report = (patched_sweep / "report.md").read_text()
    assert report.index("| model.heads | val/exact_match") < report.index(TITLE)
    rows = list(csv.DictReader(open(patched_sweep / "results.csv")))
    assert [r["patching/clean"] for r in rows] == ["8.0", "8.5", "9.0", "6.0", "6.0", "6.0"]
    assert rows[0]["patching/metric"] == "logit_diff" and rows[0]["patching/direction"] == "denoising"
    assert rows[0]["patching/split"] == "val" and rows[0]["patching/pairs_file"] == ""
    assert rows[0]["patching/rank_correlation/head"] == "0.9" and rows[4]["patching/rank_correlation/head"] == "nan"
    assert rows[0]["patching/pairs"] == "64.0" and rows[0]["patching/rank_correlation/resid_pre"] == "0.99"


def test_the_patching_section_comes_after_the_pruning_one(patched_sweep):
    for job in sorted(patched_sweep.glob("*_model.heads:*")):
        (job / "analysis").mkdir()
        figures = {"baseline": 0.9, "prunable_fraction": 0.5, "heads": 4.0, "rank_correlation_metric": 0.5}
        summary = {"metric": "exact_match", "split": "val", "tolerance": 0.05, "figures": figures, "sites": []}
        (job / "analysis" / "summary.json").write_text(json.dumps(summary))
    write_report(patched_sweep, tensorboard=False)
    report = (patched_sweep / "report.md").read_text()
    assert report.index("## Head pruning (src.analyze)") < report.index(TITLE)


def test_analyses_that_measured_differently_are_never_pooled(tmp_path):
    """Another metric, another direction, another pairs file: tables of their own, each with its own heads."""
    measures = [{}, {}, {"metric": "loss"}, {"direction": "noising"}, {"pairs_file": "pairs.jsonl"}, {}]
    for seed, measure in enumerate(measures):
        job = fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"])
        fake_patching(job, 1.0 + seed, 0.0, 0.5, {"cross:1:2": 0.4, "cross:1:1": 0.9}, **measure)
    write_report(tmp_path, tensorboard=False)
    section = section_of(tmp_path)
    assert "each measure has tables of its own; they are not pooled" in section
    captions = [line for line in section.splitlines() if line.startswith("Each analysed job's best checkpoint, on ")]
    assert [caption.split(", 64 pairs.")[0].split(", on ", 1)[1] for caption in captions] == [
        "the task's own pairs from its val split, `logit_diff`, denoising",
        "the task's own pairs from its val split, `loss`, denoising",
        "the task's own pairs from its val split, `logit_diff`, noising",
        "the pairs of `pairs.jsonl`, `logit_diff`, denoising",
    ]
    found = tables(section)  # one configuration, so no setting column: the header, then its one row
    headlines, heads = found[0::3], found[1::3]  # each analysis: its headline, its heads, each seed's heads
    assert [table[0][0] for table in headlines] == [
        "clean logit_diff",
        "clean loss",
        "clean logit_diff",
        "clean logit_diff",
    ]
    low, high = bounds([1.0, 2.0, 6.0], 1)  # seeds 0, 1 and 5: the only ones measured alike
    assert [table[1][0] for table in headlines] == [
        f"3.0 ± 2.6 (3) [{low}, {high}]",
        "3 (1) n/a: one run",  # loss is never pooled with logit_diff
        "4 (1) n/a: one run",
        "5 (1) n/a: one run",
    ]
    # Denoising ranks the heads by the fraction restored (cross:1:1 at 0.9 first); noising by how far the fraction
    # kept is from 1, nothing lost (cross:1:2 at 0.4 first).
    assert [table[0] for table in heads] == [
        ["cross:1:1", "cross:1:2"],
        ["cross:1:1", "cross:1:2"],
        ["cross:1:2", "cross:1:1"],
        ["cross:1:1", "cross:1:2"],
    ]
    assert "for the 2 heads that move `logit_diff` most (largest mean |1 - fraction|" in section


def test_unpatched_jobs_are_named_with_the_command_once_one_job_is_patched(patched_sweep, tmp_path_factory):
    import shutil

    for job in ("2_model.heads:1+seed:2", "3_model.heads:2+seed:0"):
        shutil.rmtree(patched_sweep / job / "patching")
    fake_run(patched_sweep, 6, ["model.heads=4", "seed=0"], status="failed")  # never analysed: not named
    write_report(patched_sweep, tensorboard=False)
    section = section_of(patched_sweep)
    (line,) = [line for line in section.splitlines() if line.startswith("Not analysed by patching")]
    assert line.startswith("Not analysed by patching: 2_model.heads:1+seed:2, 3_model.heads:2+seed:0: analyse them")
    assert line.split("`")[1] == (
        f"{PYTHON} -m src.analyze ckpt={patched_sweep} analysis=patching split=val max_pairs=64 "
        "metric=logit_diff direction=denoising 'senders=[encoder_self:0:*]' 'receivers=[cross:1:*]'"
    )
    headline = by_setting(tables(section)[0])
    assert headline["1"][0].startswith("8.25 ± 0.35 (2) [")  # the two seeds analysed
    assert headline["2"][0] == "6 ± 0 (2) n/a: no spread"

    # A sweep none of whose jobs is patched says nothing of patching.
    bare = tmp_path_factory.mktemp("bare")
    for seed in range(2):
        fake_run(bare, seed, ["model.heads=2", f"seed={seed}"])
    write_report(bare, tensorboard=False)
    assert "patching" not in (bare / "report.md").read_text().lower()
    assert not any(key.startswith("patching/") for key in next(csv.DictReader(open(bare / "results.csv"))))


def test_a_group_whose_every_fraction_is_undefined_keeps_its_headline_and_says_why(tmp_path):
    for seed in range(2):
        job = fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"], value=0.0)
        fake_patching(job, 3.0, 3.0, None, {"cross:1:2": None}, undefined=UNDEFINED)
    write_report(tmp_path, tensorboard=False)
    section = section_of(tmp_path)
    (headline,) = tables(section)  # no heads or paths table: nothing to average
    assert headline[1] == ["3 ± 0 (2) n/a: no spread", "3 ± 0 (2) n/a: no spread", "-"]
    names = "0_model.heads:2+seed:0, 1_model.heads:2+seed:1"
    assert f"Fractions undefined, and left out of their means, for {names}: {UNDEFINED}." in section
    assert f"Rank correlation (head) undefined, and left out, for {names}" in section
