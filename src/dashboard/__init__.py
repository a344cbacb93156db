"""TensorBoard dashboards, one file per feature, each with its pictures or numbers and the callback that logs them:

    probe.py               what the callbacks share: when they may write, the fixed probe batch
    attention_maps.py      val_attention/<site>:<layer> images (val_attention/cross:1) and val_mask/<site>
    attention_stats.py     val_heads/<statistic>/<site>:<layer>:<head> scalars (val_heads/entropy/cross:1:2)
    text_samples.py        samples/validation text tables
    hparams.py             the HPARAMS tab
    tensorboard_reader.py  reads a run's event files back (tests, scripts), older runs' tags under today's names

Heads, layers and sites are named as ``ablate.heads`` reads them, counted from 0 (``src.model.names``): a head a
tag or an image caption names is the head ``ablate.heads=[cross:1:2]`` switches off.

The callbacks look at the network through the read-only views of ``src.training.inference``.
"""

from src.dashboard.attention_maps import (
    AttentionMapLogger,
    attention_tag,
    layer_title,
    mask_tag,
    mask_title,
    render_attention_heads,
    render_attention_mask,
)
from src.dashboard.attention_stats import AttentionStatsLogger, head_statistics, statistic_tag
from src.dashboard.hparams import HParamsLogger, flatten_config
from src.dashboard.probe import tensorboard_logger
from src.dashboard.tensorboard_reader import RunEvents, current_tag, read_events
from src.dashboard.text_samples import TextSampleLogger

__all__ = [
    "AttentionMapLogger",
    "AttentionStatsLogger",
    "HParamsLogger",
    "RunEvents",
    "TextSampleLogger",
    "attention_tag",
    "current_tag",
    "flatten_config",
    "head_statistics",
    "layer_title",
    "mask_tag",
    "mask_title",
    "read_events",
    "render_attention_heads",
    "render_attention_mask",
    "statistic_tag",
    "tensorboard_logger",
]
