"""Read a run's TensorBoard event files back into plain Python, for tests and for scripts.

    from src.dashboard.tensorboard_reader import read_events
    events = read_events("outputs/<run>")   # a Hydra run dir, the logger's save_dir or a version_N dir
    events.scalar_tags            # {"train/loss", "val/loss", "val_heads/entropy/cross:0:0", ...}
    events.image_tags             # {"val_attention/encoder_self:0", "val_mask/encoder_self", ...}
    events.text_tags              # {"samples/validation", ...}
    events.has_hparams            # True when the HPARAMS tab has a session for this run
    events.hparams                # {"model.heads": 4.0, "model.pos_encoding": "rope", ...}
    events.hparam_metrics         # ["val/loss", ...]: the metric columns of the HPARAMS tab
    events.hparams_first          # ["model.heads", ...]: the columns shown first (a sweep's varied settings)
    events.scalars["val/loss"]    # [(step, value), ...] in step order
    events.image_steps("val_attention/encoder_self:0")   # [100, 200, ...]
    events.texts["samples/validation"]                     # [(step, markdown), ...]

How the pieces are stored (TensorBoard 2.x, written by torch.utils.tensorboard.SummaryWriter):
- scalars (``add_scalar``) are ``simple_value`` summaries -> ``EventAccumulator.Scalars``;
- images (``add_image``) are encoded PNGs -> ``EventAccumulator.Images``;
- text (``add_text``) is a string tensor whose summary metadata names the plugin ``"text"`` ->
  ``EventAccumulator.Tensors`` (tags found with ``PluginTagToContent("text")``). torch stores
  ``add_text("samples/validation", ...)`` under ``samples/validation/text_summary`` (that is the name the
  TEXT tab shows); ``texts``/``text_tags`` here use the tag as passed to ``add_text``, without the suffix;
- hyperparameters are three summaries that carry no value, only plugin metadata of the plugin ``"hparams"``
  under the tags ``_hparams_/experiment`` (hparam and metric columns), ``_hparams_/session_start_info``
  (this run's hparam values) and ``_hparams_/session_end_info``. The HPARAMS tab shows a run when its
  session_start_info is present; the metric values it shows are the last values of the scalar tags named
  in the experiment summary, so those must be logged under exactly those names.

``EventAccumulator`` samples by default (e.g. 4 images, 10 text entries per tag); we pass ``size_guidance``
of 0 for every kind, which means keep everything.

Runs from before heads, layers and sites were named one way (``src.model.names``) numbered layers, heads and probe
examples from 1 in another spelling: ``val_attention/cross/layer_2[/example_1]``,
``val_heads/cross/layer_2/entropy/head_3`` and CUSTOM SCALARS charts of those. They are read back under today's
names, counted from 0 (``val_attention/cross:1[/example_0]``, ``val_heads/entropy/cross:1:2``: ``current_tag``),
so a script reads old and new runs alike; TensorBoard itself still shows such a run's tags as they were written.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from src.dashboard.attention_maps import attention_tag
from src.dashboard.attention_stats import heads_chart, layout_category, statistic_tag

EVENT_FILE_PATTERN = "events.out.tfevents.*"
TORCH_TEXT_SUFFIX = "/text_summary"  # appended by torch.utils.tensorboard's add_text
KEEP_EVERYTHING = dict.fromkeys(event_accumulator.DEFAULT_SIZE_GUIDANCE, 0)

# The tags of runs from before the names were unified: layers, heads and examples counted from 1.
OLD_ATTENTION_TAG = re.compile(r"val_attention/(?P<site>\w+)/layer_(?P<layer>\d+)(?:/example_(?P<example>\d+))?")
OLD_STATISTIC_TAG = re.compile(r"val_heads/(?P<site>\w+)/layer_(?P<layer>\d+)/(?P<statistic>\w+)/head_(?P<head>\d+)")
OLD_CHART_PATTERN = re.compile(r"\^val_heads/(?P<site>\w+)/layer_(?P<layer>\d+)/(?P<statistic>\w+)/head_\\d\+\$")


@dataclass(frozen=True)
class ImageRecord:
    step: int
    width: int
    height: int
    png: bytes  # the encoded image as stored


@dataclass
class RunEvents:
    """Everything the dashboards wrote into one run, merged over its event files."""

    event_dirs: list[Path]
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    images: dict[str, list[ImageRecord]] = field(default_factory=dict)
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    hparams: dict[str, float | str | bool] = field(default_factory=dict)
    hparam_metrics: list[str] = field(default_factory=list)
    hparams_first: list[str] = field(default_factory=list)  # marked as differing: the HPARAMS table's first columns
    has_hparams: bool = False
    # CUSTOM SCALARS: {category title: {chart title: [tag regexes drawn together]}}
    custom_scalars: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def scalar_tags(self) -> set[str]:
        return set(self.scalars)

    @property
    def image_tags(self) -> set[str]:
        return set(self.images)

    @property
    def text_tags(self) -> set[str]:
        return set(self.texts)

    def image_steps(self, tag: str) -> list[int]:
        """Steps at which an image was logged under ``tag`` (one entry per image, in step order)."""
        return [record.step for record in self.images.get(tag, [])]

    def tags_with_prefix(self, prefix: str) -> set[str]:
        """All scalar, image and text tags that start with ``prefix``, e.g. "val_heads/"."""
        return {tag for tag in self.scalar_tags | self.image_tags | self.text_tags if tag.startswith(prefix)}


def current_tag(tag: str) -> str:
    """The tag as today's dashboards write it: an old run's ``val_attention/cross/layer_2/example_1`` ->
    ``val_attention/cross:1/example_0``, ``val_heads/cross/layer_2/entropy/head_3`` -> ``val_heads/entropy/cross:1:2``
    (layers, heads and examples from 1 to from 0); any other tag as it is."""
    if match := OLD_ATTENTION_TAG.fullmatch(tag):
        example = match["example"]
        return attention_tag(match["site"], int(match["layer"]) - 1, None if example is None else int(example) - 1)
    if match := OLD_STATISTIC_TAG.fullmatch(tag):
        return statistic_tag(match["site"], int(match["layer"]) - 1, match["statistic"], int(match["head"]) - 1)
    return tag


def find_event_dirs(path: str | Path) -> list[Path]:
    """Directories at or below ``path`` that hold event files (each is one TensorBoard "run"), sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such directory: {path}: pass a run directory that contains TensorBoard logs")
    if path.is_file():
        return [path.parent]
    return sorted({event_file.parent for event_file in path.rglob(EVENT_FILE_PATTERN)})


def read_events(path: str | Path) -> RunEvents:
    """Read every event file at or below ``path`` and merge them into one ``RunEvents``.

    Point it at one run: a Hydra run directory, the logger's save_dir, or a ``version_N`` directory. Several
    event directories below ``path`` (e.g. ``version_0`` and a resumed ``version_1``) are merged; hparams come
    from the first directory (in sorted order) that has them.
    """
    event_dirs = find_event_dirs(path)
    if not event_dirs:
        raise FileNotFoundError(
            f"no TensorBoard event files ({EVENT_FILE_PATTERN}) at or below {path}: "
            f"was the run started with a TensorBoardLogger?"
        )
    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    images: dict[str, list[ImageRecord]] = defaultdict(list)
    texts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    events = RunEvents(event_dirs=event_dirs)

    for event_dir in event_dirs:
        accumulator = event_accumulator.EventAccumulator(str(event_dir), size_guidance=KEEP_EVERYTHING)
        accumulator.Reload()
        tags = accumulator.Tags()
        for tag in tags.get(event_accumulator.SCALARS, []):
            scalars[current_tag(tag)].extend((event.step, event.value) for event in accumulator.Scalars(tag))
        for tag in tags.get(event_accumulator.IMAGES, []):
            images[current_tag(tag)].extend(
                ImageRecord(event.step, event.width, event.height, event.encoded_image_string)
                for event in accumulator.Images(tag)
            )
        for tag in _plugin_tags(accumulator, "text"):
            texts[_text_tag_as_logged(tag)].extend(
                (event.step, _tensor_to_text(event.tensor_proto)) for event in accumulator.Tensors(tag)
            )
        if not events.has_hparams:
            _read_hparams(accumulator, events)
        if not events.custom_scalars:
            _read_custom_scalars(accumulator, events)

    events.scalars = {tag: sorted(values, key=lambda item: item[0]) for tag, values in scalars.items()}
    events.images = {tag: sorted(values, key=lambda item: item.step) for tag, values in images.items()}
    events.texts = {tag: sorted(values, key=lambda item: item[0]) for tag, values in texts.items()}
    return events


def _plugin_tags(accumulator: event_accumulator.EventAccumulator, plugin_name: str) -> dict[str, bytes]:
    """{tag: plugin content} for one plugin; empty when the run has no summary of that plugin."""
    try:
        return accumulator.PluginTagToContent(plugin_name)
    except KeyError:  # raised when the plugin never appears in this run
        return {}


def _text_tag_as_logged(stored_tag: str) -> str:
    """torch's ``add_text(tag, ...)`` stores ``<tag>/text_summary``; give back the tag the code passed."""
    return stored_tag.removesuffix(TORCH_TEXT_SUFFIX)


def _tensor_to_text(tensor_proto) -> str:
    value = tensor_util.make_ndarray(tensor_proto)  # a numpy array of bytes (shape () or (1,))
    item = value.reshape(-1)[0] if value.size else b""
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


def _read_custom_scalars(accumulator: event_accumulator.EventAccumulator, events: RunEvents) -> None:
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    if metadata.CONFIG_SUMMARY_TAG not in accumulator.Tags().get(event_accumulator.TENSORS, []):
        return
    for event in accumulator.Tensors(metadata.CONFIG_SUMMARY_TAG)[-1:]:
        layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).reshape(-1)[0])
        for category in layout.category:
            for chart in category.chart:
                title, patterns = category.title, {chart.title: list(chart.multiline.tag)}
                if len(chart.multiline.tag) == 1 and (old := OLD_CHART_PATTERN.fullmatch(chart.multiline.tag[0])):
                    # an old run's chart of one layer's heads: today's chart of the same layer (counted from 0)
                    site, layer = old["site"], int(old["layer"]) - 1
                    name, (_, new_patterns) = heads_chart(site, layer, old["statistic"])
                    title, patterns = layout_category(site), {name: new_patterns}
                events.custom_scalars.setdefault(title, {}).update(patterns)


def _read_hparams(accumulator: event_accumulator.EventAccumulator, events: RunEvents) -> None:
    contents = _plugin_tags(accumulator, hparams_metadata.PLUGIN_NAME)
    if hparams_metadata.SESSION_START_INFO_TAG not in contents:
        return
    events.has_hparams = True
    start_info = hparams_metadata.parse_session_start_info_plugin_data(
        contents[hparams_metadata.SESSION_START_INFO_TAG]
    )
    for name, value in start_info.hparams.items():  # google.protobuf.Value: number, string or bool
        kind = value.WhichOneof("kind")
        events.hparams[name] = {
            "number_value": value.number_value,
            "string_value": value.string_value,
            "bool_value": value.bool_value,
        }.get(kind)
    if hparams_metadata.EXPERIMENT_TAG in contents:
        experiment = hparams_metadata.parse_experiment_plugin_data(contents[hparams_metadata.EXPERIMENT_TAG])
        events.hparam_metrics = [info.name.tag for info in experiment.metric_infos]
        events.hparams_first = [info.name for info in experiment.hparam_infos if info.differs]
