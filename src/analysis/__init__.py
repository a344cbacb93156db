"""Analyses of trained models: what their attention heads do and what breaks without them.

ablation.py     `ablate.*` applied to a loaded checkpoint (zero or mean ablation; the fills of mean ablation)
"""
