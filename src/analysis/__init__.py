"""Analyses of trained models: what their attention heads do and what breaks without them (`python -m src.analyze`).

ablation.py     `ablate.*` applied to a loaded checkpoint (zero or mean ablation; the fills of mean ablation)
scoring.py      the loss and the task's main metric under many head masks at once (a mask per batch row)
heads.py        head importance (Michel et al. 2019), entropy, single-head effects, one head per layer, pruning
report.py       analysis/ (report.md, csv tables, summary.json, figures) and the run's TensorBoard
"""
