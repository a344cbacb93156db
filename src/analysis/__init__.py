"""Analyses of trained models: what their attention heads do and what breaks without them (`python -m src.analyze`).

ablation.py          `ablate.*` applied to a loaded checkpoint (zero or mean ablation; the fills of mean ablation)
scoring.py           the loss and the task's main metric under many head masks at once (a mask per batch row)
heads.py             head importance (Michel et al. 2019), entropy, single-head effects, one head per layer, pruning
report.py            analysis/ (report.md, csv tables, summary.json, figures) and the run's TensorBoard; the helpers
                     every analysis writes with (heat maps, written_whole)
patching.py          activation, attribution and path patching: one activation of a run put into another
causal.py            activation patching of a model on counterfactual pairs (analysis=patching), family by family
causal_report.py     patching/ (report.md, patching.csv, paths.csv, summary.json, figures)
lens.py              the logit lens and direct logit attribution (analysis=lens)
lens_report.py       lens/ (report.md, lens.csv, attribution.csv, summary.json, figures)
induction.py         induction and previous-token heads, the loss on repeated sequences (analysis=induction)
induction_report.py  induction/ (report.md, heads.csv, summary.json, figures) and the phase change in training
formatting.py        how every report writes numbers: table cells, JSON without NaN, labels readable on a heat map;
                     and the line that says a grouped-query model's heads are query heads
statistics.py        Spearman's rank correlation, as the head and the patching analyses compare rankings
"""
