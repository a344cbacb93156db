"""Reading event files back (the other tests read real runs through it), older runs' tags under today's names, and
TensorBoard's own reading of tags that carry head names."""

import json
import re

import numpy as np
import pytest
from tensorboard import default, program
from tensorboard.program import TensorBoardServer

from src.dashboard import AttentionMapLogger, AttentionStatsLogger, current_tag, read_events

from .conftest import HEADS, LAYERS


def test_reader_explains_a_directory_without_event_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="TensorBoardLogger"):
        read_events(tmp_path)


def write_old_run(log_dir) -> None:
    """An event file as the dashboards wrote them before heads were named as ablate.heads reads them: layers, heads
    and examples counted from 1, one tag part per layer and head, and the CUSTOM SCALARS layout of those tags."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir)
    writer.add_custom_scalars(
        {
            "attention heads: cross": {
                "layer 2 entropy": ["Multiline", [r"^val_heads/cross/layer_2/entropy/head_\d+$"]],
            }
        }
    )
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    for step in (10, 20):
        writer.add_scalar("val_heads/cross/layer_2/entropy/head_1", 0.5, step)
        writer.add_scalar("val_heads/cross/layer_2/entropy/head_3", 1.5, step)
        writer.add_scalar("val/loss", 2.0, step)
        writer.add_image("val_attention/cross/layer_2", image, step, dataformats="HWC")
        writer.add_image("val_attention/decoder_self/layer_1/example_2", image, step, dataformats="HWC")
    writer.add_image("val_mask/cross", image, 0, dataformats="HWC")
    writer.close()


def test_an_old_runs_tags_read_back_under_todays_names_counted_from_zero(tmp_path):
    write_old_run(tmp_path / "version_0")
    events = read_events(tmp_path)
    assert events.scalar_tags == {"val_heads/entropy/cross:1:0", "val_heads/entropy/cross:1:2", "val/loss"}
    assert events.scalars["val_heads/entropy/cross:1:2"] == [(10, 1.5), (20, 1.5)]
    assert events.image_tags == {"val_attention/cross:1", "val_attention/decoder_self:0/example_1", "val_mask/cross"}
    assert events.image_steps("val_attention/cross:1") == [10, 20]
    # the old layer-2 chart is today's chart of cross:1, and its pattern finds the heads under their new names
    chart = events.custom_scalars["attention heads: cross (cross-attention)"]
    (pattern,) = chart["cross:1 entropy"]
    assert {tag for tag in events.scalar_tags if re.search(pattern, tag)} == {
        "val_heads/entropy/cross:1:0",
        "val_heads/entropy/cross:1:2",
    }


def test_current_tag_leaves_todays_and_other_tags_alone():
    for tag in ["val_attention/cross:1", "val_heads/entropy/cross:1:2", "val/loss", "val_mask/cross", "layer_1"]:
        assert current_tag(tag) == tag


class _AppOnly(TensorBoardServer):
    """A TensorBoard "server" that serves nothing and hands the WSGI app to the test: TensorBoard's own plugins and
    data loading, without a port."""

    app = None

    def __init__(self, wsgi_app, flags):
        type(self).app = wsgi_app

    def serve_forever(self):
        pass

    def get_url(self):
        return "in-process"


def test_tensorboard_itself_lists_and_charts_tags_with_colons(tmp_path, fit):
    """The head names in tags (`cross:1:2`) go through TensorBoard's own loading and plugins: the scalars and images
    are listed under their names and the CUSTOM SCALARS pattern of a layer finds its heads."""
    from werkzeug.test import Client

    fit("seq2seq", [AttentionStatsLogger(every_n_steps=2), AttentionMapLogger(every_n_steps=2, log_masks=False)])
    board = program.TensorBoard(plugins=default.get_plugins(), server_class=_AppOnly)
    board.configure(
        argv=[
            None,
            "--logdir",
            str(tmp_path),
            "--load_fast",
            "false",
            "--reload_interval",
            "0",
            "--reload_task",
            "blocking",
        ]
    )
    board.launch()
    client = Client(_AppOnly.app)
    run = "run/version_0"
    scalars = json.loads(client.get("/data/plugin/scalars/tags").data)[run]
    images = json.loads(client.get("/data/plugin/images/tags").data)[run]
    assert {f"val_heads/entropy/cross:{layer}:{head}" for layer in range(LAYERS) for head in range(HEADS)} <= set(
        scalars
    )
    assert {f"val_attention/cross:{layer}" for layer in range(LAYERS)} <= set(images)
    layout = json.loads(client.get("/data/plugin/custom_scalars/layout").data)
    (category,) = [c for c in layout["category"] if c["title"] == "attention heads: cross (cross-attention)"]
    (chart,) = [c for c in category["chart"] if c["title"] == "cross:1 entropy"]
    (pattern,) = chart["multiline"]["tag"]
    answer = json.loads(
        client.get("/data/plugin/custom_scalars/scalars", query_string={"run": run, "tag": pattern}).data
    )
    assert answer["regex_valid"] and set(answer["tag_to_events"]) == {
        f"val_heads/entropy/cross:1:{h}" for h in range(HEADS)
    }
