"""TensorBoard dashboards: attention maps and masks, attention statistics, text samples, hparams.

Plotting and statistics are pure functions (``attention_maps``, ``stats``); ``callbacks`` wires them into
Lightning; ``tensorboard_reader`` reads a run's event files back (tests, scripts).
"""

from src.dashboard.attention_maps import layer_title, mask_title, render_attention_heads, render_attention_mask
from src.dashboard.callbacks import (
    AttentionMapLogger,
    AttentionStatsLogger,
    HParamsLogger,
    TextSampleLogger,
    flatten_config,
    tensorboard_logger,
)
from src.dashboard.stats import head_statistics
from src.dashboard.tensorboard_reader import RunEvents, read_events

__all__ = [
    "AttentionMapLogger",
    "AttentionStatsLogger",
    "HParamsLogger",
    "RunEvents",
    "TextSampleLogger",
    "flatten_config",
    "head_statistics",
    "layer_title",
    "mask_title",
    "read_events",
    "render_attention_heads",
    "render_attention_mask",
    "tensorboard_logger",
]
