"""The attention page's model description (explorer.describe_model, the page's top line): every architecture axis
that changes how attention reads and is not at its default is named as `model.<axis>=<value>`, a setting the user
can paste back on the command line, and composing those settings gives the model's own values again."""

from __future__ import annotations

import re

import pytest

from src.dashboard.explorer import describe_model
from src.model.positional import POSITIONAL_SCHEMES
from tests.conftest import run_in_process
from tests.model.tiny import model_for

from .attention_pages import TINY, write_data
from .test_explorer import data_of

LLAMA3_SCALING = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_len": 8192}  # fmt: skip

# (arch, the model's settings, the top line after "<arch>, <layers>, 4 heads a layer"): one axis at a time, and the
# families that set several (each of which also sets an axis the page did not name before)
CASES = {
    "attention_bias-qkv": ("decoder_only", {"attention_bias": "qkv"}, ", model.attention_bias=qkv"),
    "attention_bias-none": ("encoder_only", {"attention_bias": "none"}, ", model.attention_bias=none"),
    "rope_theta": (
        "decoder_only",
        {"pos_encoding": "rope", "rope_theta": 500000.0},
        ", model.pos_encoding=rope, model.rope_theta=500000.0",
    ),
    "rope_fraction": (
        "decoder_only",
        {"pos_encoding": "rope", "rope_fraction": 0.5},
        ", model.pos_encoding=rope, model.rope_fraction=0.5",
    ),
    "rope_scaling-linear": (
        "decoder_only",
        {"pos_encoding": "rope", "rope_scaling": {"type": "linear", "factor": 2.0}},
        ", model.pos_encoding=rope, model.rope_scaling.type=linear, model.rope_scaling.factor=2.0",
    ),
    "rope_scaling-llama3": (  # Llama 3.1's: every setting the model's config holds
        "decoder_only",
        {"pos_encoding": "rope", "rope_theta": 500000.0, "rope_scaling": LLAMA3_SCALING},
        ", model.pos_encoding=rope, model.rope_theta=500000.0, model.rope_scaling.type=llama3, "
        "model.rope_scaling.factor=8.0, model.rope_scaling.low_freq_factor=1.0, "
        "model.rope_scaling.high_freq_factor=4.0, model.rope_scaling.original_max_len=8192",
    ),
    "relative_buckets": (
        "encoder_decoder",
        {"pos_encoding": "t5_relative", "relative_buckets": 16},
        ", model.pos_encoding=t5_relative, model.relative_buckets=16",
    ),
    "relative_max_distance": (  # T5's: no biases on the projections
        "encoder_decoder",
        {"pos_encoding": "t5_relative", "relative_max_distance": 64, "attention_bias": "none"},
        ", model.pos_encoding=t5_relative, model.relative_max_distance=64, model.attention_bias=none",
    ),
    "qk_norm": (  # Qwen3's: grouped-query, no biases, QK-norm, RoPE at base 1,000,000
        "decoder_only",
        {"kv_heads": 2, "attention_bias": "none", "qk_norm": True, "pos_encoding": "rope", "rope_theta": 1000000.0},
        " sharing 2 key/value heads (model.kv_heads=2), model.pos_encoding=rope, model.rope_theta=1000000.0, "
        "model.attention_bias=none, model.qk_norm=true",
    ),
    "parallel_layers": (  # GPT-J's: attention and FFN side by side, partial rotary
        "decoder_only",
        {"parallel_layers": True, "norm_position": "pre", "pos_encoding": "rope", "rope_fraction": 0.5},
        ", model.pos_encoding=rope, model.rope_fraction=0.5, model.parallel_layers=true",
    ),
}
LAYERS = {"decoder_only": "decoder-only, 2 layers", "encoder_only": "encoder-only classifier, 1 layers",
          "encoder_decoder": "encoder-decoder, 1 + 2 layers"}  # fmt: skip

# The axes that change how attention reads (docs/configuration.md), listed here apart from the code's own list so
# that an axis the page forgets is caught
ATTENTION_AXES = ("kv_heads", "attention_bias", "qk_norm", "parallel_layers", "pos_encoding")


@pytest.mark.parametrize("arch, settings, named", CASES.values(), ids=CASES.keys())
def test_the_top_line_names_each_axis_off_its_default_as_a_setting_to_paste(arch, settings, named):
    assert describe_model(model_for(arch, **settings)) == f"{LAYERS[arch]}, 4 heads a layer{named}"


@pytest.mark.parametrize("arch, settings, named", CASES.values(), ids=CASES.keys())
def test_the_named_settings_pasted_on_the_command_line_give_the_models_axes(arch, settings, named, compose):
    """Each `model.<axis>=<value>` on the line, composed as src.run composes its overrides, sets the model's own
    value: every axis of ATTENTION_AXES and each setting the positional scheme reads (an axis not named must be at
    the default, and one named must read back as it is)."""
    from src.cli.schema import model_config_for

    model = model_for(arch, **settings)
    line, model = describe_model(model), model.cfg
    pasted = re.findall(r"model\.[\w.]+=[^,\s)]+", line)
    composed = model_config_for(compose(*pasted, f"model.arch={arch}"), 13, 11, 3)
    for axis in (*ATTENTION_AXES, *POSITIONAL_SCHEMES[model.pos_encoding].settings):
        assert getattr(composed, axis) == getattr(model, axis), axis


def test_a_setting_of_another_positional_scheme_is_not_named():
    """model.rope_theta with t5_relative is unread (src.run warns so): the line names the settings the model's
    scheme reads, not one that changes nothing."""
    model = model_for("decoder_only", pos_encoding="t5_relative", relative_buckets=16, rope_theta=500000.0)
    assert describe_model(model) == "decoder-only, 2 layers, 4 heads a layer, model.pos_encoding=t5_relative, " + (
        "model.relative_buckets=16"
    )


def test_the_page_of_a_run_says_its_axes_as_typed(tmp_path):
    """Through src.run and src.predict: the settings a run was trained with are on its page's top line as typed."""
    data = write_data(tmp_path / "data")
    axes = ["model.pos_encoding=rope", "model.rope_theta=500000.0", "model.attention_bias=none", "model.qk_norm=true"]
    task = ["task=char_lm", f"task.path={data / 'text.txt'}", "task.block_size=16", "task.val_fraction=0.1",
            "task.test_fraction=0.1"]  # fmt: skip
    code, _, err = run_in_process("src.run", *task, *TINY, *axes, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    page = tmp_path / "attention.html"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    code, _, err = run_in_process("src.predict", f"ckpt={ckpt}", "text=To be", f"attention={page}")
    assert code == 0, err
    assert "2 heads a layer, " + ", ".join(axes) + " · checkpoint" in data_of(page)["about"]
