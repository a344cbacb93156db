"""Hydra plugins of transformer-ablations (Hydra finds them by scanning the hydra_plugins namespace)."""
