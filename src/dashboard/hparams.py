"""The run's hyperparameters in TensorBoard's HPARAMS tab: ``flatten_config``, ``write_hparams`` and
``HParamsLogger``, which writes them once at train start.

Tags written (the tests and the end-to-end checks rely on them):

    _hparams_/...                  hparams plugin data (HPARAMS tab)

Unless given its params, the logger reads them from the LightningModule: ``pl_module.config`` (the run's config
as a plain dict) and ``pl_module.model_cfg.arch`` (the architecture ``model.arch=auto`` resolved to). A sweep over
a group's options (``-m optimizer=adamw_cosine,adam_noam``) varies the group, not one field: its column is the
group's name and the option each run chose (``optimizer`` = ``adam_noam``), from Hydra's ``runtime.choices``.
"""

from __future__ import annotations

import dataclasses
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from src.dashboard.probe import tensorboard_logger


def flatten_config(config: Any, prefix: str = "", separator: str = ".") -> dict[str, str | int | float | bool]:
    """Nested mappings (dict, DictConfig, dataclass, Namespace) -> flat {"model.heads": 8, ...}.

    Values TensorBoard cannot show as hparams become strings: None -> "None", lists -> "[2, 4]".
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    elif isinstance(config, Namespace):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"flatten_config needs a mapping (dict, DictConfig, dataclass), got {type(config).__name__}")
    flat: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, Mapping | Namespace) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            flat.update(flatten_config(value, name, separator))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif isinstance(value, Sequence):
            flat[name] = str(list(value))
        else:
            flat[name] = str(value)
    return flat


# Shown for every run besides what a sweep varies: the axes a reader compares first. The rest of the config is in
# each run's .hydra/config.yaml; in the table it would crowd out what matters (TensorBoard shows 5 by default).
CURATED = (
    "task.name",
    "model.arch",
    "model.d_model",
    "model.heads",
    "model.enc_layers",
    "model.dec_layers",
    "model.pos_encoding",
    "model.norm_position",
    "mask.type",
    "optimizer.lr",
    "seed",
)


def run_hparams(
    pl_module: LightningModule, varied: Sequence[str] = (), choices: Mapping[str, Any] | None = None
) -> dict[str, str | int | float | bool]:
    """The run's varied settings (a sweep's), then the curated axes, flat ("model.heads"), with ``model.arch`` as
    resolved rather than "auto". A varied group (``optimizer``) is shown as the option this run chose, from
    ``choices`` (group -> option, Hydra's ``runtime.choices``): no single field of the config names it."""
    flat = flatten_config(pl_module.config)
    flat["model.arch"] = pl_module.model_cfg.arch
    flat.update({group: str(option) for group, option in (choices or {}).items() if group in varied})
    return {key: flat[key] for key in dict.fromkeys([*varied, *CURATED]) if key in flat}


def write_hparams(
    logger: TensorBoardLogger, flat_params: Mapping[str, Any], metric_tags: Sequence[str], varied: Sequence[str] = ()
) -> None:
    """Write the three hparams summaries that make the run appear in TensorBoard's HPARAMS tab.

    This is what ``TensorBoardLogger.log_hyperparams(params, metrics)`` does, minus its
    ``log_metrics(metrics)``: the NaN placeholders would otherwise become NaN points at step 0 in the
    ``val/loss`` etc. charts. The HPARAMS tab needs only the metric *names* here; the values it shows are the
    last values of those scalar tags, which the run logs later under exactly these names.
    """
    from torch.utils.tensorboard.summary import hparams

    placeholders = {tag: float("nan") for tag in metric_tags}
    experiment, session_start, session_end = hparams(dict(flat_params), placeholders)
    mark_as_differing(experiment, varied)
    file_writer = logger.experiment._get_file_writer()  # the same call Lightning's log_hyperparams makes
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
    logger.experiment.flush()


def mark_as_differing(experiment_summary, varied: Sequence[str]) -> None:
    """Mark a sweep's varied settings as "differs" in the experiment summary: TensorBoard's HPARAMS table shows
    those columns first (it orders by differs, then by name), instead of the alphabetically first ones."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    metadata = experiment_summary.value[0].metadata.plugin_data
    content = plugin_data_pb2.HParamsPluginData.FromString(metadata.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in varied
    metadata.content = content.SerializeToString()


class HParamsLogger(Callback):
    """Once, on rank 0, at train start: this run's hyperparameters and the metric columns of the HPARAMS tab.

    Args:
        metric_tags: scalar tags the run logs and the HPARAMS tab should show, e.g.
            ["val/loss", "val/exact_match", "val/bleu"]. They must be the exact tags ``self.log`` writes.
        params: nested or flat config; None = the run's (``run_hparams``).
        varied: the settings a sweep varies: shown first, and always. A group's name (``optimizer``) stands for
            the group: its column is the option the run chose, from ``choices``.
        choices: group -> chosen option (``HydraConfig.get().runtime.choices``).

    Create the logger with ``TensorBoardLogger(..., default_hp_metric=False)``: with the default (True) Lightning
    also writes an hparams session of its own (metric ``hp_metric`` = -1) into the same run, which the
    HPARAMS tab may show instead of ours.
    """

    def __init__(
        self,
        metric_tags: Sequence[str],
        params: Mapping[str, Any] | None = None,
        varied: Sequence[str] = (),
        choices: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(metric_tags, str):
            raise TypeError(
                f"metric_tags must be a list of tags, got the string {metric_tags!r}: write [{metric_tags!r}]"
            )
        self.metric_tags = list(metric_tags)
        self.params = params
        self.varied = list(varied)  # a sweep's varied settings: first in the table
        self.choices = dict(choices or {})  # group -> the option this run chose
        self.logged = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if logger is None or not trainer.is_global_zero or self.logged:
            return
        if self.params is None:
            flat_params = run_hparams(pl_module, self.varied, self.choices)
        else:
            flat_params = flatten_config(self.params)
        write_hparams(logger, flat_params, self.metric_tags, self.varied)
        self.logged = True
