"""Reading checkpoints: nothing in a checkpoint file may run code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.model import ConfigError
from src.training.checkpoint import read_checkpoint


class _Payload:
    """What an attacker puts in a checkpoint: unpickling it calls exec, which writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",)


def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "shared.ckpt"
    # Shaped like one of ours, so only the payload can be the reason it is refused.
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"model_config": {}, "x": _Payload(marker)}}, path
    )
    return path, marker


def test_the_payload_is_real(tmp_path):
    """The control: an unsafe load does run it (so the next test could fail)."""
    path, marker = malicious_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "payload ran"


def test_a_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    with pytest.raises(ConfigError) as error:
        read_checkpoint(str(path))
    message = str(error.value)
    assert "\n" not in message
    assert "refused" in message and "'exec'" in message and "could run code" in message
    assert not marker.exists()


def test_a_missing_or_directory_checkpoint_is_one_line(tmp_path):
    from src.training.checkpoint import check_checkpoint_file

    with pytest.raises(ConfigError, match="ckpt_path=/nonexistent/last.ckpt does not exist"):
        check_checkpoint_file("/nonexistent/last.ckpt", "ckpt_path")
    with pytest.raises(ConfigError, match="is a directory: give a .ckpt file"):
        check_checkpoint_file(str(tmp_path), "ckpt")


def test_checkpoints_from_before_mask_schemes_read_their_mask_settings():
    from src.training.checkpoint import _with_mask_scheme

    old = {"d_model": 16, "mask_type": "window", "window": 3, "prefix_len": 0}
    assert _with_mask_scheme(old) == {"d_model": 16, "mask": {"type": "window", "window": 3}}
    assert _with_mask_scheme({"mask_type": "standard", "window": 4, "prefix_len": 0}) == {"mask": {"type": "standard"}}
    today = {"d_model": 16, "mask": {"type": "prefix", "prefix_len": 2}}
    assert _with_mask_scheme(today) is today


def test_resuming_with_other_heads_or_sublayers_ablated_is_refused():
    """The heads a run trains without are part of the model it trains: a resume must keep them (a checkpoint from
    before ablations trained with none off)."""
    from src.model import ConfigError
    from src.training.checkpoint import check_resumable_settings

    def checkpoint(ablate):
        config = {"task": {"name": "copy"}, "seed": 0}
        if ablate is not None:
            config["ablate"] = ablate
        return {"hyper_parameters": {"config": config}}

    same = {"task": {"name": "copy"}, "seed": 0, "ablate": {"heads": ["cross:0:1"], "sublayers": []}}
    check_resumable_settings(checkpoint({"heads": ["cross:0:1"], "sublayers": []}), "copy", config=same)
    check_resumable_settings(checkpoint(None), "copy", config={**same, "ablate": {"heads": [], "sublayers": []}})
    with pytest.raises(ConfigError, match=r"ablate.heads=\['cross:0:1'\], this run has ablate.heads=\[\]"):
        check_resumable_settings(checkpoint({"heads": ["cross:0:1"]}), "copy", config={**same, "ablate": {}})
    with pytest.raises(ConfigError, match="ablate.heads"):
        check_resumable_settings(checkpoint(None), "copy", config=same)
    with pytest.raises(ConfigError, match="ablate.sublayers"):
        other = {**same, "ablate": {"heads": ["cross:0:1"], "sublayers": ["decoder_ffn:0"]}}
        check_resumable_settings(checkpoint({"heads": ["cross:0:1"]}), "copy", config=other)
