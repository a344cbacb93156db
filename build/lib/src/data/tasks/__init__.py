"""One file per task family; each registers its tasks (see src/data/registry.py)."""
