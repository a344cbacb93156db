"""src/analysis/induction_report.py: the phase change step read from hand-made val/repeated_loss histories (the first
validation below the midpoint of the early plateau and the final value; none, with the reason, for a flat curve or
too few validations), and the report and summary.json that carry it."""

from __future__ import annotations

import csv
import json
import math

import pytest

from src.analysis.induction import InductionHeadRow
from src.analysis.induction_report import (
    CURVE,
    MIN_DROP,
    MIN_SHARE,
    InductionAnalysis,
    find_phase_change,
    read_phase_change,
    report_markdown,
    write_induction,
)


def history(values: list[float], every: int = 50, metric: str = CURVE) -> list[dict]:
    """A metrics.json history: one validation every `every` steps, from step `every` on."""
    return [{"step": every * (i + 1), "val/loss": 4.0, metric: value} for i, value in enumerate(values)]


# plateau 3.9 (median of 3.90, 3.91, 3.88), final 1.0 (of 1.02, 0.98, 1.00): midpoint 2.45
STEP_CURVE = [3.90, 3.91, 3.88, 3.85, 3.80, 3.60, 2.10, 1.30, 1.10, 1.02, 0.98, 1.00]


def test_the_step_is_the_first_validation_below_the_midpoint():
    phase = find_phase_change(history(STEP_CURVE))
    assert phase.reason is None
    assert phase.plateau == pytest.approx(3.90) and phase.final == pytest.approx(1.00)
    assert phase.midpoint == pytest.approx(2.45)
    assert phase.step == 350  # 2.10 is the first value below 2.45 (the 7th validation, step 7 x 50)
    assert (phase.before, phase.after) == (pytest.approx(3.60), pytest.approx(2.10))
    # half the drop (1.45 nats) within one validation interval: 3.60 -> 2.10, steps 300-350
    assert phase.window == (300, 350)
    assert phase.steepest == (300, 350, pytest.approx(1.50))
    assert "phase change at step 350" in phase.describe()


def test_the_window_is_the_shortest_stretch_that_holds_half_the_drop():
    # a slow fall from 3.9 to 3.4 (the in-context statistics), then 3.4 -> 1.0 within a few validations
    values = [3.9, 3.9, 3.9, 3.7, 3.5, 3.4, 3.4, 3.0, 2.2, 1.5, 1.1, 1.0, 1.0, 1.0]
    phase = find_phase_change(history(values, every=100))
    assert phase.drop == pytest.approx(2.9) and phase.step == 900  # midpoint 2.45: 2.2 is the first below
    # half the drop is 1.45 nats: no 100 steps hold it (0.8 at most), 3.0 -> 1.5 (steps 800-1000) does
    assert phase.window == (800, 1000)
    assert phase.steepest == (800, 900, pytest.approx(0.8))


def test_an_outlier_at_the_start_or_the_end_does_not_move_the_plateau_or_the_final_value():
    values = [5.0, *STEP_CURVE[1:-1], 3.0]  # one wild validation at each end: the medians ignore them
    phase = find_phase_change(history(values))
    assert phase.plateau == pytest.approx(3.91) and phase.final == pytest.approx(1.02)
    assert phase.step == 350


def test_a_flat_history_has_no_phase_change_and_says_why():
    phase = find_phase_change(history([3.90, 3.88, 3.91, 3.87, 3.89, 3.86, 3.85, 3.86, 3.84]))
    assert phase.step is None and phase.window is None
    assert f"at least {MIN_DROP:g} nats down" in phase.reason and "3.9" in phase.reason
    assert phase.describe().startswith("no phase change: ")


def test_a_slow_drift_smaller_than_the_minimum_drop_is_not_a_phase_change():
    values = [3.9 - 0.04 * i for i in range(10)]  # falls 0.36 nats over the run
    phase = find_phase_change(history(values))
    assert phase.step is None and phase.drop < MIN_DROP


def test_a_fall_to_more_than_half_the_plateau_is_not_a_phase_change():
    # the 1-layer control's curve: 3.92 -> 3.24 (0.68 nats, more than MIN_DROP): statistics of the context alone
    values = [3.92, 3.92, 3.91, 3.80, 3.62, 3.45, 3.33, 3.28, 3.25, 3.24, 3.24, 3.25]
    phase = find_phase_change(history(values))
    assert phase.drop > MIN_DROP and phase.final > MIN_SHARE * phase.plateau
    assert phase.step is None and "83% of the plateau" in phase.reason
    assert phase.steepest == (200, 250, pytest.approx(0.18))  # the steepest fall is given all the same


def test_a_rising_curve_is_not_a_phase_change():
    assert find_phase_change(history([1.0, 1.0, 1.1, 2.0, 3.0, 3.9, 3.9, 3.9])).step is None


def test_too_few_validations_or_no_curve_at_all_say_so():
    few = find_phase_change(history([3.9, 3.9, 1.0, 1.0, 1.0]))
    assert few.step is None and "5 validations" in few.reason and "val_check_interval" in few.reason
    other = find_phase_change(history(STEP_CURVE, metric="val/exact_match"))
    assert other.step is None and other.curve == [] and "has no val/repeated_loss" in other.reason


def test_the_curve_skips_entries_without_the_metric_and_keeps_the_last_of_a_repeated_step():
    entries = history(STEP_CURVE)
    entries.insert(3, {"step": 160, "val/loss": 3.0})  # another metric's entry: skipped
    entries.insert(4, {"step": 170, CURVE: float("nan")})  # not finite: skipped
    entries.append({"step": 600, CURVE: 0.9})  # a resumed run validated step 600 again: the later value counts
    phase = find_phase_change(entries)
    assert len(phase.curve) == len(STEP_CURVE) and phase.curve[-1] == (600, 0.9)
    assert phase.step == 350


def test_read_phase_change_from_a_run_directory(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"history": history(STEP_CURVE), "final": {}}))
    assert read_phase_change(tmp_path).step == 350
    missing = read_phase_change(tmp_path / "elsewhere")
    assert missing.step is None and "no metrics.json" in missing.reason
    (tmp_path / "metrics.json").write_text("not json")
    assert "not a metrics.json" in read_phase_change(tmp_path).reason


def analysis(phase) -> InductionAnalysis:
    heads = [
        InductionHeadRow("decoder_self:0:0", 0.05, 0.95, 1.2, 0.2),
        InductionHeadRow("decoder_self:1:0", 0.80, 0.02, 3.5, 2.5),
    ]
    return InductionAnalysis(16, 8, heads, 1.0, 3.8, phase)


def test_the_report_and_the_summary_give_the_step_or_the_reason(tmp_path):
    found = analysis(find_phase_change(history(STEP_CURVE)))
    text = report_markdown(found, {"checkpoint": "run"})
    assert "## The phase change during training" in text and "phase change at step 350" in text
    assert "repeated_loss.png" in text
    written = write_induction(found, tmp_path / "induction", {"checkpoint": "run"})
    assert "repeated_loss.png" in written
    summary = json.loads((tmp_path / "induction" / "summary.json").read_text())["phase_change"]
    assert summary["step"] == 350 and summary["reason"] is None and summary["window"] == [300, 350]
    assert summary["plateau"] == pytest.approx(3.9) and summary["final"] == pytest.approx(1.0)
    assert len(summary["curve"]) == len(STEP_CURVE)

    flat = analysis(find_phase_change(history([3.9] * 8)))
    assert "repeated_loss.png" in write_induction(flat, tmp_path / "flat", {})  # the flat curve is drawn too
    summary = json.loads((tmp_path / "flat" / "summary.json").read_text())["phase_change"]
    assert summary["step"] is None and "100% of the plateau" in summary["reason"] and summary["before"] is None
    assert "no phase change" in report_markdown(flat, {})


def test_without_a_run_directory_there_is_no_phase_change_section(tmp_path):
    plain = analysis(None)
    assert "phase change" not in report_markdown(plain, {})
    write_induction(plain, tmp_path / "induction", {})
    assert json.loads((tmp_path / "induction" / "summary.json").read_text())["phase_change"] is None
    assert math.isnan(find_phase_change([]).plateau)


def test_a_head_at_chance_is_no_previous_token_head():
    """Uniform attention over 32 tokens scores about 0.11 on the previous token: heads near that are not counted,
    however they compare with each other; one well above is."""
    heads = [
        InductionHeadRow(f"decoder_self:0:{h}", 0.01, score, 1.0, 0.0) for h, score in enumerate((0.099, 0.111, 0.104))
    ]
    chance = {"induction": 0.03, "previous_token": 0.108}
    assert InductionAnalysis(16, 16, heads, 1.0, math.nan, chance=chance).standing_out("previous_token") == []
    heads.append(InductionHeadRow("decoder_self:0:3", 0.01, 0.62, 1.0, 0.0))
    assert InductionAnalysis(16, 16, heads, 1.0, math.nan, chance=chance).standing_out("previous_token") == [
        "decoder_self:0:3"
    ]


def test_a_head_off_before_the_analysis_is_no_induction_head_and_is_marked_off(tmp_path):
    """An off head's pattern may score highest; it is neither counted nor sets the bar for the heads in use, and the
    table and heads.csv say it is off, outside its name."""
    heads = [
        InductionHeadRow("decoder_self:0:0", 0.05, 0.95, 1.2, 0.2),
        InductionHeadRow("decoder_self:1:0", 0.40, 0.02, 3.5, 2.5),
        InductionHeadRow("decoder_self:1:1", 0.90, 0.02, math.nan, math.nan, removed_before=True),
    ]
    found = InductionAnalysis(16, 8, heads, 1.0, 3.8, chance={"induction": 0.03, "previous_token": 0.1})
    assert found.standing_out("induction") == ["decoder_self:1:0"]
    text = report_markdown(found, {})
    assert "| decoder_self:1:1 | off |" in text and "Already off before the analysis" in text
    write_induction(found, tmp_path / "induction", {})
    with open(tmp_path / "induction" / "heads.csv", newline="") as f:
        by_head = {row["head"]: row for row in csv.DictReader(f)}
    assert by_head["decoder_self:1:1"]["removed_before"] == "True"
    assert by_head["decoder_self:1:0"]["removed_before"] == "False"
    summary = json.loads((tmp_path / "induction" / "summary.json").read_text())
    assert summary["induction_heads"] == ["decoder_self:1:0"]


def test_on_the_score_maps_only_a_head_that_was_off_reads_off():
    """A score without a query to average over is NaN, but the head is on: "-"; a head off before reads "off"."""
    import matplotlib.pyplot as plt

    from src.analysis.induction_report import figures

    heads = [
        InductionHeadRow("decoder_self:0:0", math.nan, 0.95, 1.2, 0.2),
        InductionHeadRow("decoder_self:0:1", 0.40, 0.02, math.nan, math.nan, removed_before=True),
    ]
    made = figures(InductionAnalysis(16, 8, heads, 1.0, 3.8))
    labels = {axis.get_title(): [t.get_text() for t in axis.texts] for axis in made["scores"].axes if axis.get_title()}
    assert labels["decoder_self (decoder self-attention): induction"] == ["-", "off"]
    assert labels["decoder_self (decoder self-attention): previous token"] == ["0.95", "off"]
    for figure in made.values():
        plt.close(figure)
