"""What runs a sweep beyond Hydra's defaults: the SLURM launcher (`hydra/launcher=slurm`, slurm.py). The sweep
report (src/report.py) is to join it here."""
