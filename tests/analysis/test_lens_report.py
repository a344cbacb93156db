"""src/analysis/lens_report.py: what report.md says."""

from __future__ import annotations

from src.analysis.lens import LensAnalysis, LensLayer
from src.analysis.lens_report import report_markdown


def lens_of() -> LensAnalysis:
    layers = [LensLayer(None, 2.5, 0.2), LensLayer(0, 1.5, 0.6), LensLayer(1, 1.0, 1.0)]
    attribution = {"embed": 0.5, "decoder_self:0:0": 1.0, "decoder_self:0:1": 0.25}
    return LensAnalysis("val", "decoder", 4, 20, layers, 1.0, 1.75, attribution)


def test_an_ablated_heads_share_is_said_to_be_0_only_where_it_writes_nothing():
    """Mean ablation makes a switched-off head write its mean output: its share is that output's, not 0."""
    ablated = report_markdown(lens_of(), {"ablation": "heads decoder_self:0:1; mean ablation"}, [])
    assert "an ablated head's share is 0" not in ablated
    assert "a head switched off by mean ablation writes its mean output, and its share is that output's" in ablated
    assert "removed sublayer" in ablated
    plain = report_markdown(lens_of(), {"ablation": "nothing ablated"}, [])
    assert "Ablation in force: nothing ablated." in plain
