"""Sweeps beyond what Hydra does by itself: how they are launched and what they answer.

slurm.py        `hydra/launcher=slurm`: the sweep waits for every job, and a job the cluster ended says why
report.py       the report of a sweep or a folder of runs (`python -m src.report`, run at every sweep's end)
runs.py         what the report reads from each job directory (overrides, run.json, metrics.json, analysis/)
statistics.py   means over seeds, t intervals, Welch tests, and numbers rounded to their spread
figures.py      curves.png, bars.png, heatmap.png, pruning.png, with the numbers of the report's tables
trials.py       the trials of an Optuna study kept in a database, whichever sweep or machine ran them
"""
