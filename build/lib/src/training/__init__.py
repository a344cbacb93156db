"""Training: the Lightning module (loss, metrics, optimisation) and the pieces it is made of.

optim.py      optimizers and learning-rate schedules (the paper's warm-up, AdamW + cosine)
metrics.py    per-split metric sets (torchmetrics) and sequence helpers (exact match)
inference.py  read-only views of a network (attention maps, greedy decoding, samples, labels) in eval mode
module.py     TransformerLitModule: a thin LightningModule around a src.model network
callbacks.py  small Lightning callbacks the run wires up (validate at the last step, sweep-safe output)
"""

from .module import TransformerLitModule

__all__ = ["TransformerLitModule"]
