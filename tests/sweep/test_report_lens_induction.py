"""The sweep report's logit lens and induction head sections (src/sweep/causal_sections.py: lens_section,
induction_section): each configuration's figures from <job>/lens/summary.json and <job>/induction/summary.json as
mean ± std (n) over seeds with a 95% t interval, analyses that read differently never pooled, a run without a figure
left out and named. Fake sweep directories on disk, the report made in-process: no training, no model."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from scipy import stats

from src.provenance import module_command
from src.sweep.report import analyse, markdown
from tests.sweep.test_report_patching import bounds, by_setting, fake_run, tables

LENS_TITLE = "## Logit lens and direct logit attribution (src.analyze analysis=lens)"
INDUCTION_TITLE = "## Induction heads (src.analyze analysis=induction)"
POST_LN = "post-LN: each sublayer's output is normalised again by the sublayers after it"


def report_of(sweep: Path) -> str:
    """report.md's text as src.report writes it (without drawing its figures)."""
    return markdown(analyse(sweep))


def section(sweep: Path, title: str) -> str:
    """The section `title` of the sweep's report, up to the next section."""
    report = report_of(sweep)
    assert report.count(title) == 1, report
    return report.split(title, 1)[1].split("\n## ", 1)[0]


def command(sweep: Path, *overrides: str) -> str:
    """The src.analyze command the report names for the jobs without the analysis, as this interpreter starts it."""
    return module_command("src.analyze", f"ckpt={sweep}", *overrides)


def fake_lens(
    job: Path,
    loss: float,
    rows: dict[str | int, tuple[float, float]],
    shares: dict[str, float] | None = None,
    undefined: str | None = None,
    stack: str | None = "decoder",
    split: str = "val",
    examples: int = 100,
    positions: int = 700,
    checkpoint: str = "best.ckpt",
    analysed_by: str | None = None,
    ablation: str = "nothing ablated",
) -> None:
    """lens/summary.json as src/analysis/lens_report.py writes it: `rows` label -> (loss, top-1 agreement), in
    order; `stack` None for an analysis written before it said which stack it read; `analysed_by` the src.analyze
    command (ablate.* on it: an ablation the analysis added), `ablation` the whole ablation in force."""
    out = job / "lens"
    out.mkdir()
    summary = {
        "split": split,
        "examples": examples,
        "positions": positions,
        "loss": loss,
        "target_logit": sum((shares or {}).values()),
        "lens": [{"layer": layer, "loss": x, "top1_agreement": a} for layer, (x, a) in rows.items()],
        "attribution": {} if undefined else dict(shares or {}),
        "attribution_undefined": undefined,
        "checkpoint": str(job / "checkpoints" / checkpoint),
        "step": 300,
        "ablation": ablation,
        "settings": {"split": split, "max_examples": examples},
        "command": analysed_by or command(job.parent, "analysis=lens"),
        "seconds": {"lens": 1.0},
    }
    if stack is not None:
        summary["stack"] = stack
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


# Per configuration (model.heads), per seed: the model's loss, layer 0's lens loss, layer 1's top-1 agreement.
MODEL_LOSS = {"1": [1.0, 1.2, 1.4], "2": [0.5, 0.5, 0.5]}
LAYER_0_LOSS = {"1": [3.0, 3.5, 4.0], "2": [2.0, 2.2, 2.4]}
LAYER_1_AGREEMENT = {"1": [0.9, 0.95, 1.0], "2": [0.6, 0.7, 0.8]}
EMBED = (5.0, 0.1)  # the embeddings' lens loss and agreement, every run alike


def shares_of(heads: str, seed: int) -> dict[str, float]:
    """Eleven components whose mean |contribution| over the group ranks them decoder_ffn:1 (3), decoder_self:1:0
    (-2.5, by its size), embed, decoder_ffn:0, then decoder_self:0:0 ... :0:3 (0.875 down to 0.5): the eight largest
    are shown, never decoder_self:1:1 or :1:2 (0.375, 0.125) nor a head that contributes nothing. Binary fractions,
    so that their sums are exact."""
    ffn = 3.0 + 0.25 * (seed - 1) if heads == "1" else 3.0  # heads=1: 2.75, 3, 3.25
    return {
        "embed": 2.0,
        "decoder_self:0:0": 0.875,
        "decoder_self:0:1": 0.75,
        "decoder_self:0:2": 0.625,
        "decoder_self:0:3": 0.5,
        "decoder_self:1:0": -2.5,
        "decoder_self:1:1": 0.375,
        "decoder_self:1:2": 0.125,
        "decoder_self:1:3": 0.0,  # ablated: contributes nothing
        "decoder_ffn:0": 1.5,
        "decoder_ffn:1": ffn,
    }


@pytest.fixture
def lens_sweep(tmp_path) -> Path:
    """model.heads 1 and 2 over three seeds, each read by the logit lens: embed, layer 0, layer 1."""
    number = 0
    for heads in ("1", "2"):
        for seed in range(3):
            job = fake_run(tmp_path, number, [f"model.heads={heads}", f"seed={seed}"])
            rows = {"embed": EMBED, 0: (LAYER_0_LOSS[heads][seed], 0.5), 1: (0.8, LAYER_1_AGREEMENT[heads][seed])}
            fake_lens(job, MODEL_LOSS[heads][seed], rows, shares_of(heads, seed))
            number += 1
    return tmp_path


def test_each_configuration_has_its_lens_by_layer_over_seeds(lens_sweep):
    text = section(lens_sweep, LENS_TITLE)
    assert (
        "Read: the decoder stack of each job's `best.ckpt` on the val split, 100 examples (700 scored positions), "
        "nothing ablated beyond what each job trained with." in text
    )
    loss, agreement, shares = (by_setting(table) for table in tables(text))

    # The embeddings' row first, then the layers in the file's order; the model's own loss beside them.
    assert loss["model.heads"] == ["the model", "embed", "layer 0", "layer 1"]
    low, high = bounds(MODEL_LOSS["1"], 2)
    assert loss["1"][0] == f"1.20 ± 0.20 (3) [{low}, {high}]" == "1.20 ± 0.20 (3) [0.70, 1.70]"
    assert loss["2"][0] == "0.5 ± 0 (3) n/a: no spread"
    assert loss["1"][1] == loss["2"][1] == "5 ± 0 (3) n/a: no spread"
    low, high = bounds(LAYER_0_LOSS["1"], 1)
    assert loss["1"][2] == f"3.50 ± 0.50 (3) [{low}, {high}]" == "3.50 ± 0.50 (3) [2.3, 4.7]"
    low, high = bounds(LAYER_0_LOSS["2"], 2)
    assert loss["2"][2] == f"2.20 ± 0.20 (3) [{low}, {high}]"

    assert agreement["model.heads"] == ["embed", "layer 0", "layer 1"]
    low, high = bounds(LAYER_1_AGREEMENT["1"], 2, clipped_to=(0, 1))  # passes 1: clipped to what it can take
    assert agreement["1"][2] == f"0.950 ± 0.050 (3) [{low}, {high}]†" == "0.950 ± 0.050 (3) [0.83, 1.00]†"
    low, high = bounds(LAYER_1_AGREEMENT["2"], 2)
    assert agreement["2"][2] == f"0.70 ± 0.10 (3) [{low}, {high}]" == "0.70 ± 0.10 (3) [0.45, 0.95]"
    assert text.count("† clipped to the values a top-1 agreement can take, [0, 1].") == 1

    # The eight components that write most of the target's logit, by mean |contribution|, after the logit itself.
    assert shares["model.heads"] == [
        "target logit",
        "decoder_ffn:1",
        "decoder_self:1:0",
        "embed",
        "decoder_ffn:0",
        "decoder_self:0:0",
        "decoder_self:0:1",
        "decoder_self:0:2",
        "decoder_self:0:3",
    ]
    low, high = bounds([2.75, 3.0, 3.25], 2)
    assert shares["1"][1] == f"3.00 ± 0.25 (3) [{low}, {high}]" == "3.00 ± 0.25 (3) [2.38, 3.62]"
    assert shares["2"][1] == "3 ± 0 (3) n/a: no spread"
    assert shares["1"][2] == "-2.5 ± 0 (3) n/a: no spread"  # its sign kept: it lowers the target's logit
    low, high = bounds([7.0, 7.25, 7.5], 2)  # the sum of every share: the ones other than decoder_ffn:1 add 4.25
    assert shares["1"][0] == f"7.25 ± 0.25 (3) [{low}, {high}]"
    assert "Not analysed by the logit lens" not in text and "not pooled" not in text


def test_lens_files_without_the_embeddings_row_or_a_stack_are_read_alike(tmp_path):
    """Analyses written before the embeddings were read (integer layers only, no `stack`) pool with newer decoder
    ones: the same layers, the same stack; `embed` is the newer ones' alone, and still comes first."""
    for seed in range(4):
        job = fake_run(tmp_path, seed, ["model.heads=2", f"seed={seed}"])
        rows: dict[str | int, tuple[float, float]] = {0: (2.0 + seed, 0.5), 1: (1.0, 0.9)}
        if seed < 2:  # the older files come first: their rows give the first order seen
            fake_lens(job, 1.0, rows, stack=None)
        else:
            fake_lens(job, 1.0, {"embed": (4.0 + seed, 0.2), **rows})
    text = section(tmp_path, LENS_TITLE)
    assert "not pooled" not in text
    loss, agreement = tables(text)[:2]
    assert loss[0] == ["the model", "embed", "layer 0", "layer 1"]
    low, high = bounds([6.0, 7.0], 1)
    assert loss[1][1] == f"6.50 ± 0.71 (2) [{low}, {high}]"  # the two newer files only
    low, high = bounds([2.0, 3.0, 4.0, 5.0], 1)
    assert loss[1][2] == f"3.5 ± 1.3 (4) [{low}, {high}]"  # every file
    assert agreement[1][:2] == ["0.2 ± 0 (2) n/a: no spread", "0.5 ± 0 (4) n/a: no spread"]


def test_lens_analyses_that_read_differently_are_never_pooled(tmp_path):
    """Another split, number of examples, stack, checkpoint or an ablation the analysis added: tables of their own.
    The ablation each job trained with is no difference (in a sweep over ablate.heads every row has its own)."""
    sweep = tmp_path
    differences = [
        {},
        {"ablation": "decoder_self:0:1; zero ablation"},  # trained so (ablate.heads=[decoder_self:0:1]): pooled
        {"split": "test"},
        {"examples": 50, "positions": 350},
        {"stack": "encoder"},
        {"checkpoint": "last.ckpt"},
        {"analysed_by": command(sweep, "analysis=lens", "ablate.heads=[decoder_self:1:0]")},
    ]
    for seed, difference in enumerate(differences):
        job = fake_run(sweep, seed, ["model.heads=2", f"seed={seed}"])
        fake_lens(job, 1.0 + seed, {0: (2.0, 0.5)}, {"embed": 1.0}, **difference)
    text = section(sweep, LENS_TITLE)
    assert "each measure has tables of its own; they are not pooled" in text
    reads = [line.removeprefix("Read: ") for line in text.splitlines() if line.startswith("Read: ")]
    alike = "nothing ablated beyond what each job trained with."
    assert reads == [
        f"the decoder stack of each job's `best.ckpt` on the val split, 100 examples (700 scored positions), {alike}",
        f"the decoder stack of each job's `best.ckpt` on the test split, 100 examples (700 scored positions), {alike}",
        f"the decoder stack of each job's `best.ckpt` on the val split, 50 examples (350 scored positions), {alike}",
        f"the encoder stack of each job's `best.ckpt` on the val split, 100 examples (700 scored positions), {alike}",
        f"the decoder stack of each job's `last.ckpt` on the val split, 100 examples (700 scored positions), {alike}",
        "the decoder stack of each job's `best.ckpt` on the val split, 100 examples (700 scored positions), with "
        "`ablate.heads=[decoder_self:1:0]` beyond what each job trained with.",
    ]
    model_loss = [table[1][0] for table in tables(text)[0::3]]  # each measure's loss table: its one row
    low, high = bounds([1.0, 2.0], 1, clipped_to=(0, float("inf")))  # a loss is never below 0
    assert model_loss == [f"1.50 ± 0.71 (2) [{low}, {high}]†", *(f"{v:g} (1) n/a: one run" for v in range(3, 8))]
    assert text.count("n/a: one run: a t interval") == 5  # under each measure's tables with a single run


def test_lens_runs_without_attribution_are_left_out_of_it_and_named(lens_sweep):
    post_ln = lens_sweep / "1_model.heads:1+seed:1"
    shutil.rmtree(post_ln / "lens")
    fake_lens(post_ln, 1.2, {"embed": EMBED, 0: (3.5, 0.5), 1: (0.8, 0.95)}, undefined=POST_LN)
    text = section(lens_sweep, LENS_TITLE)
    shares = by_setting(tables(text)[2])
    low, high = bounds([2.75, 3.25], 1)
    assert shares["1"][1] == f"3.00 ± 0.35 (2) [{low}, {high}]"  # seed 1 left out
    assert shares["2"][1] == "3 ± 0 (3) n/a: no spread"
    assert by_setting(tables(text)[0])["1"][0].startswith("1.20 ± 0.20 (3) ")  # its lens still counts
    assert f"Direct logit attribution undefined, and left out, for 1_model.heads:1+seed:1: {POST_LN}." in text


def test_jobs_without_the_lens_are_not_counted_and_named_with_the_command(lens_sweep):
    for job in ("0_model.heads:1+seed:0", "5_model.heads:2+seed:2"):
        shutil.rmtree(lens_sweep / job / "lens")
    fake_run(lens_sweep, 6, ["model.heads=4", "seed=0"], status="failed")  # never analysed: not named
    text = section(lens_sweep, LENS_TITLE)
    loss = by_setting(tables(text)[0])
    low, high = bounds([1.2, 1.4], 1)
    assert loss["1"][0] == f"1.30 ± 0.14 (2) [{low}, {high}]"
    assert loss["2"][0] == "0.5 ± 0 (2) n/a: no spread"
    (line,) = [line for line in text.splitlines() if line.startswith("Not analysed by the logit lens")]
    assert line.startswith("Not analysed by the logit lens: 0_model.heads:1+seed:0, 5_model.heads:2+seed:2: ")
    assert line.split("`")[1] == command(lens_sweep, "analysis=lens", "split=val", "max_examples=100")
    assert INDUCTION_TITLE not in report_of(lens_sweep)  # no job read for induction heads: no section


def fake_induction(
    job: Path,
    loss: float,
    without: float | None,
    induction_heads: list[str],
    previous_heads: list[str],
    scores: dict[str, tuple[float, float]],
    phase: dict | None,
    sequences: int = 128,
    half: int = 32,
) -> None:
    """induction/summary.json as src/analysis/induction_report.py writes it: `scores` head -> (induction score,
    previous-token score); `phase` its phase_change (None: not looked for)."""
    out = job / "induction"
    out.mkdir()
    heads = [
        {"head": head, "induction": i, "previous_token": p, "repeated_loss": loss + 0.1, "loss_increase": 0.1}
        for head, (i, p) in scores.items()
    ]
    summary = {
        "sequences": sequences,
        "half": half,
        "loss": loss,
        "loss_without_induction_heads": without,
        "induction_heads": induction_heads,
        "previous_token_heads": previous_heads,
        "heads": heads,
        "phase_change": phase,
        "checkpoint": str(job / "checkpoints" / "best.ckpt"),
        "step": 2000,
        "ablation": "nothing ablated",
        "command": command(job.parent, "analysis=induction"),
        "seconds": {"induction": 1.0},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def phase_at(step: int | None, reason: str | None = None) -> dict:
    """A phase_change as phase_summary writes it (the figures the report does not read left out)."""
    return {"metric": "val/repeated_loss", "step": step, "reason": reason, "plateau": 4.0, "final": 0.5}


FLAT = "val/repeated_loss went from 4.1 (median of the first 3 validations) to 3.9 (of the last 3)"
# Per seed of model.layers=2 (the other configuration, model.layers=1, has none of its heads stand out).
LOSS = [0.5, 0.7, 0.9]
ABLATED = [3.0, 3.4, None]  # seed 2: no induction head, nothing ablated
PHASE = [phase_at(400), phase_at(600), phase_at(None, FLAT)]
INDUCTION_HEADS = [["decoder_self:1:2"], ["decoder_self:1:0", "decoder_self:1:3"], []]
PREVIOUS_HEADS = [["decoder_self:0:1"], ["decoder_self:0:3"], ["decoder_self:0:0"]]
STRONGEST = [0.9, 0.7, 0.05]  # the induction score of each seed's strongest head


@pytest.fixture
def induction_sweep(tmp_path) -> Path:
    """model.layers 2 (three seeds, whose induction heads differ) and 1 (two seeds, no phase change looked for)."""
    for seed in range(3):
        job = fake_run(tmp_path, seed, ["model.layers=2", f"seed={seed}"])
        scores = {"decoder_self:0:0": (0.01, 0.6), "decoder_self:1:2": (STRONGEST[seed], 0.02)}
        scores["decoder_self:1:0"] = (STRONGEST[seed] / 2, float("nan"))  # a score JSON gets as null, skipped
        fake_induction(job, LOSS[seed], ABLATED[seed], INDUCTION_HEADS[seed], PREVIOUS_HEADS[seed], scores, PHASE[seed])
    for seed in range(2):
        job = fake_run(tmp_path, 3 + seed, ["model.layers=1", f"seed={seed}"])
        fake_induction(job, 3.9, None, [], [], {"decoder_self:0:0": (0.04, 0.05)}, None)
    # The NaN score above as the analysis writes it (summary.json has null for it).
    for path in tmp_path.glob("*/induction/summary.json"):
        path.write_text(path.read_text().replace("NaN", "null"))
    return tmp_path


def test_each_configuration_has_its_induction_figures_over_seeds(induction_sweep):
    text = section(induction_sweep, INDUCTION_TITLE)
    assert (
        "Read: each job's `best.ckpt` on 128 sequences of 32 random tokens written twice, nothing ablated beyond "
        "what each job trained with." in text
    )
    losses, heads = (by_setting(table) for table in tables(text)[:2])

    assert losses["model.layers"] == ["loss on the repeats", "induction heads ablated", "phase change (step)"]
    low, high = bounds(LOSS, 2)
    assert losses["2"][0] == f"0.70 ± 0.20 (3) [{low}, {high}]" == "0.70 ± 0.20 (3) [0.20, 1.20]"
    low, high = bounds([3.0, 3.4], 1)  # seed 2 ablated nothing: left out
    assert losses["2"][1] == f"3.20 ± 0.28 (2) [{low}, {high}]" == "3.20 ± 0.28 (2) [0.7, 5.7]"
    half = stats.t.ppf(0.975, 1) * statistics.stdev([400, 600]) / 2**0.5  # 1271: two digits are hundreds
    assert losses["2"][2] == f"500 ± 140 (2) [0, {round(500 + half, -2):.0f}]†" == "500 ± 140 (2) [0, 1800]†"
    assert losses["1"] == ["3.9 ± 0 (2) n/a: no spread", "-", "-"]

    assert heads["model.layers"] == [
        "induction heads",
        "previous-token heads",
        "strongest induction score",
        "strongest previous-token score",
    ]
    low, high = bounds([1, 2, 0], 1, clipped_to=(0, float("inf")))
    assert heads["2"][0] == f"1.0 ± 1.0 (3) [{low}, {high}]†" == "1.0 ± 1.0 (3) [0.0, 3.5]†"
    assert heads["2"][1] == "1 ± 0 (3) n/a: no spread"
    low, high = bounds(STRONGEST, 1, clipped_to=(0, 1))
    assert heads["2"][2] == f"0.55 ± 0.44 (3) [{low}, {high}]†" == "0.55 ± 0.44 (3) [0.0, 1.0]†"
    assert heads["2"][3] == "0.6 ± 0 (3) n/a: no spread"  # the null score is skipped, not taken for 0 nor NaN
    assert heads["1"] == [
        *["0 ± 0 (2) n/a: no spread"] * 2,
        "0.04 ± 0 (2) n/a: no spread",
        "0.05 ± 0 (2) n/a: no spread",
    ]

    # The heads each seed named, as ablate.heads takes them, a row per seed: never averaged by name.
    assert tables(text)[2] == [
        ["model.layers", "seed", "induction heads", "previous-token heads"],
        ["2", "0", "`[decoder_self:1:2]`", "`[decoder_self:0:1]`"],
        ["2", "1", "`[decoder_self:1:0,decoder_self:1:3]`", "`[decoder_self:0:3]`"],
        ["2", "2", "none", "`[decoder_self:0:0]`"],
        ["1", "0", "none", "none"],
        ["1", "1", "none", "none"],
    ]

    # Why a figure is missing, once per cause, naming the runs.
    none_ablated = "no head stood out as an induction head, so none was ablated"
    assert (
        "The loss with the induction heads ablated undefined, and left out, for 2_model.layers:2+seed:2, "
        f"3_model.layers:1+seed:0, 4_model.layers:1+seed:1: {none_ablated}." in text
    )
    assert f"The phase change step undefined, and left out, for 2_model.layers:2+seed:2: {FLAT}." in text
    assert (
        "The phase change step undefined, and left out, for 3_model.layers:1+seed:0, 4_model.layers:1+seed:1: not "
        "looked for (the analysis read no training history)." in text
    )
    assert text.count("† clipped to the values a count of heads can take, [0, inf].") == 1
    assert "Not analysed for induction heads" not in text and "not pooled" not in text


def test_induction_analyses_of_other_sequences_are_never_pooled_and_jobs_without_one_are_named(tmp_path):
    for seed, (sequences, half) in enumerate([(128, 32), (128, 32), (128, 16), (64, 32)]):
        job = fake_run(tmp_path, seed, ["model.layers=2", f"seed={seed}"])
        scores = {"decoder_self:1:2": (0.8, 0.1)}
        fake_induction(job, 1.0 + seed, 4.0, ["decoder_self:1:2"], [], scores, phase_at(500), sequences, half)
    fake_run(tmp_path, 4, ["model.layers=2", "seed=4"])  # never analysed
    text = section(tmp_path, INDUCTION_TITLE)
    assert "each measure has tables of its own; they are not pooled" in text
    reads = [line.split(" random tokens")[0] for line in text.splitlines() if line.startswith("Read: ")]
    assert reads == [
        "Read: each job's `best.ckpt` on 128 sequences of 32",
        "Read: each job's `best.ckpt` on 128 sequences of 16",
        "Read: each job's `best.ckpt` on 64 sequences of 32",
    ]
    losses = [table[1][0] for table in tables(text)[0::3]]
    low, high = bounds([1.0, 2.0], 1, clipped_to=(0, float("inf")))
    assert losses == [f"1.50 ± 0.71 (2) [{low}, {high}]†", "3 (1) n/a: one run", "4 (1) n/a: one run"]
    (line,) = [line for line in text.splitlines() if line.startswith("Not analysed for induction heads")]
    assert line.startswith("Not analysed for induction heads: 4_model.layers:2+seed:4: analyse it with `")
    assert line.split("`")[1] == command(tmp_path, "analysis=induction", "max_examples=128")
    assert line.endswith(
        "(measured as each job's `best.ckpt` on 128 sequences of 32 random tokens written twice, nothing ablated "
        "beyond what each job trained with, as the first table)."
    )
    assert LENS_TITLE not in report_of(tmp_path)


def test_the_strongest_score_is_of_the_heads_in_use():
    """A head off before the analysis (removed_before) scores from a pattern it writes nothing with: the strongest
    score of a seed is never its."""
    from types import SimpleNamespace

    from src.sweep.causal_sections import strongest

    heads = [
        {"head": "decoder_self:1:0", "induction": 0.4, "previous_token": 0.02, "removed_before": False},
        {"head": "decoder_self:1:1", "induction": 0.9, "previous_token": 0.02, "removed_before": True},
    ]
    assert strongest("induction")(SimpleNamespace(induction={"heads": heads})) == 0.4
