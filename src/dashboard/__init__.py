"""TensorBoard dashboards, one file per feature, each with its pictures or numbers and the callback that logs them:

    probe.py               what the callbacks share: when they may write, the fixed probe batch
    attention_maps.py      val_attention/<site>/layer_<l> and val_mask/<site> images
    attention_stats.py     val_heads/<site>/layer_<l>/<statistic>/head_<h> scalars
    text_samples.py        samples/validation text tables
    hparams.py             the HPARAMS tab
    tensorboard_reader.py  reads a run's event files back (tests, scripts)

The callbacks look at the network through the read-only views of ``src.training.inference``.
"""

from src.dashboard.attention_maps import (
    AttentionMapLogger,
    layer_title,
    mask_title,
    render_attention_heads,
    render_attention_mask,
)
from src.dashboard.attention_stats import AttentionStatsLogger, head_statistics
from src.dashboard.hparams import HParamsLogger, flatten_config
from src.dashboard.probe import tensorboard_logger
from src.dashboard.tensorboard_reader import RunEvents, read_events
from src.dashboard.text_samples import TextSampleLogger

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
