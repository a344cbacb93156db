"""Real servers that the tests start and stop themselves (see slurm.py for a one-node SLURM cluster)."""
