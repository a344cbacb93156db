"""src/analysis/causal_report.py: what patching/ holds, read back from the files written."""

from __future__ import annotations

import csv
import json

import torch

from src.analysis.causal import analyze_patching
from src.analysis.causal_report import NOT_DEFINED, write_patching
from src.data.pairs import PairBatch
from src.model import BOS_ID, TransformerConfig, build_model


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        arch="decoder_only", d_model=16, heads=4, dec_layers=2, d_ff=32, dropout=0.0, tgt_vocab_size=13
    )
    return build_model(cfg).double().eval()


def pairs_of(answer: int, wrong: int) -> PairBatch:
    """Three pairs of six tokens, the third changed, scored at the last position."""
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(4, 13, (3, 6), generator=generator)
    corrupted = tokens.clone()
    corrupted[:, 2] = 4 + (corrupted[:, 2] - 4 + 3) % 9
    make = lambda t: {"tgt_in": torch.cat([torch.full((3, 1), BOS_ID), t[:, :-1]], 1), "tgt_out": t}  # noqa: E731
    return PairBatch(
        make(tokens), make(corrupted), torch.full((3,), 5), torch.full((3,), answer), torch.full((3,), wrong)
    )


def test_fractions_not_defined_are_written_as_such_and_the_analysis_is_kept(tmp_path):
    """Answer and wrong answer the same token: the logit difference is 0 clean and corrupted, so no fraction is
    defined. Every file is still written (path patching's fraction once raised ZeroDivisionError, and the whole
    folder was lost); none holds an infinity."""
    analysis = analyze_patching(
        tiny_model(), "lm", pairs_of(7, 7), metric="logit_diff", paths=[("decoder_self:0:1", "decoder_self:1:2")]
    )
    assert analysis.clean == analysis.corrupted == 0
    out = tmp_path / "patching"
    written = write_patching(analysis, out, {"checkpoint": "x"})
    assert {"patching.csv", "paths.csv", "summary.json", "report.md"} <= set(written)
    report = (out / "report.md").read_text()
    assert NOT_DEFINED in report and "| not defined |" in report
    for name in ("patching.csv", "paths.csv"):
        with open(out / name, newline="") as f:
            assert {row["restored"] for row in csv.DictReader(f)} == {"nan"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["restored_undefined"] and summary["paths"][0]["restored"] is None
    assert set(summary["heads_restored"].values()) == {None}
    for name in written:
        if not name.endswith(".png"):
            assert "inf" not in (out / name).read_text().replace("inference", "")


def test_an_ablated_heads_patch_is_said_to_read_what_it_reads_in_each_direction(tmp_path):
    """A head switched off (zero or mean ablation) or in a removed sublayer writes the same in both runs: its patch
    reads 0 when denoising, but 1 (nothing lost) when noising."""
    from src.analysis.causal import CausalAnalysis
    from src.analysis.causal_report import report_markdown

    about = {"ablation": "heads decoder_self:1:2; mean ablation"}
    for direction, reads in (
        ("denoising", "it reads 0 (fraction restored)"),
        ("noising", "it reads 1 (fraction kept)"),
    ):
        analysis = CausalAnalysis("logit_diff", direction, 4, 2.0, -1.0, [], {}, {})
        text = report_markdown(analysis, about, [])
        assert reads in text and "removed sublayer" in text
    text = report_markdown(CausalAnalysis("logit_diff", "noising", 4, 2.0, -1.0, [], {}, {}), {}, [])
    assert "- ablation in force: nothing ablated\n" in text


def test_the_rows_of_a_position_grid_run_in_forward_order():
    """A decoder layer's self-attention, then its cross-attention (by name, cross would come first), and each row
    of the grid holds the row its label names."""
    from src.analysis.causal import CausalAnalysis, PatchRow
    from src.analysis.causal_report import position_grids, row_labels

    rows = [
        PatchRow("attn_out", f"out@{site}:{layer}", site, layer, None, 0, 0.0, value, 0.0)
        for site, layer, value in (("cross", 0, 0.1), ("decoder_self", 0, 0.2), ("cross", 1, 0.3),
                                   ("decoder_self", 1, 0.4))
    ]  # fmt: skip
    analysis = CausalAnalysis("logit_diff", "denoising", 2, 1.0, 0.0, rows, {}, {})
    assert row_labels(analysis, "attn_out", "decoder") == ["decoder_self:0", "cross:0", "decoder_self:1", "cross:1"]
    assert position_grids(analysis, "attn_out")["decoder"][:, 0].tolist() == [0.2, 0.1, 0.4, 0.3]


def test_every_patch_and_grid_names_its_place_as_ablate_takes_it(tmp_path):
    """patching.csv's first column is the head (`decoder_self:1:2`) or the layer (`decoder_self:1`) patched, and
    the report's grids name their site as ablate does."""
    from src.model.names import parse_name

    analysis = analyze_patching(tiny_model(), "lm", pairs_of(7, 8), metric="logit_diff")
    write_patching(analysis, tmp_path / "patching", {"checkpoint": "x"})
    with open(tmp_path / "patching" / "patching.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[0] == "name"
    for row in rows:
        site, layer, head = parse_name(row["name"])
        assert (site, str(layer), "" if head is None else str(head)) == (row["site"], row["layer"], row["head"])
    assert (
        "decoder_self (decoder self-attention): fraction restored, layer x head"
        in (tmp_path / "patching" / "report.md").read_text()
    )
