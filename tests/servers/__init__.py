"""Real servers that the tests start and stop themselves: a one-node SLURM cluster (slurm.py), a PostgreSQL server
(postgres.py)."""
