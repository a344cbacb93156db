"""What runs a sweep beyond Hydra's defaults: the SLURM launcher (`hydra/launcher=slurm`, slurm.py). The sweep
report: report.py (and runs.py, statistics.py, figures.py, trials.py); `python -m src.report` is its command."""
