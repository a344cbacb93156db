"""Finding and reading a pretrained model: local directories, the hub's cache, safe weights, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.model import ConfigError
from src.pretrained import load_pretrained

from .conftest import tiny_gpt2, transformers

ROOT = Path(__file__).resolve().parents[2]


def copy_of(directory: Path, target: Path) -> Path:
    target.mkdir()
    for file in directory.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def test_a_model_that_ships_only_a_pytorch_bin_is_read_with_weights_only(tmp_path):
    hf = tiny_gpt2()
    (tmp_path / "config.json").write_text(hf.config.to_json_string())
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")  # what older models on the hub ship
    model = load_pretrained(str(tmp_path)).model
    tokens = torch.randint(0, 90, (1, 6))
    with torch.no_grad():
        assert (model(tokens).logits - hf(tokens).logits).abs().max() < 1e-4


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "config.json").write_text(tiny_gpt2().config.to_json_string())
    torch.save({"wte.weight": Exploit()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="cannot be read safely .*use a model with safetensors"):
        load_pretrained(str(tmp_path))
    assert not (tmp_path / "pwned").exists()


def test_a_hub_name_is_read_from_the_cache_when_the_hub_cannot_be_reached(gpt2_dir, tmp_path):
    """The real hub code path: huggingface_hub finds `tiny/gpt2` in an HF_HOME cache laid out as it writes one."""
    repo = tmp_path / "hub" / "models--tiny--gpt2"
    revision = "0" * 40
    copy_of(gpt2_dir, _mkdirs(repo / "snapshots") / revision)
    _mkdirs(repo / "refs").joinpath("main").write_text(revision)
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = "from src.pretrained import load_pretrained; print(load_pretrained('tiny/gpt2').config.d_model)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "32"


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d, t: t / "missing", "is not a directory: give a model directory .* or a hub name"),
        (lambda d, t: _mkdirs(t / "empty"), "has no config.json: give the directory save_pretrained wrote"),
        (lambda d, t: _only(d, t, "config.json"), "has no weights \\(model.safetensors or pytorch_model.bin\\)"),
        (lambda d, t: _edited(d, t, n_embd=48), "weight 'wte.weight' has shape \\(97, 32\\), its config.json implies"),
        (lambda d, t: _edited(d, t, n_layer=3), "has no weight 'h.2.ln_1.weight': its weights do not fit"),
        (lambda d, t: _edited(d, t, n_layer=1), "has weights this conversion does not map: h.1.attn.c_attn.bias"),
        (lambda d, t: _edited(d, t, model_type="opt"), "is a 'opt' model, which cannot be loaded: supported are gpt2"),
        (lambda d, t: _broken_json(d, t), "config.json is not valid JSON"),
        (lambda d, t: _edited(d, t, activation_function="quick_gelu"), "GPT-2 activation 'quick_gelu' is not supp"),
    ],
    ids=["no-dir", "no-config", "no-weights", "shape", "missing", "unmapped", "arch", "json", "activation"],
)
def test_bad_model_directories_get_one_line_errors(gpt2_dir, tmp_path, make, message):
    directory = make(gpt2_dir, tmp_path)
    with pytest.raises(ConfigError, match=message) as error:
        load_pretrained(str(directory))
    assert "\n" not in str(error.value)


def test_an_unreachable_hub_name_says_how_to_use_a_directory_or_the_cache(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = "from src.pretrained import load_pretrained; load_pretrained('gpt2')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "cannot reach the model hub and 'gpt2' is not in its cache: give a local directory" in done.stderr


def test_a_stored_sinusoidal_table_is_checked_not_loaded(marian_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    directory = copy_of(marian_dir, tmp_path / "marian")
    state = load_file(directory / "model.safetensors")
    table = transformers.MarianMTModel.from_pretrained(directory).model.encoder.embed_positions.weight.detach()
    save_file({**state, "model.encoder.embed_positions.weight": table.contiguous()}, directory / "model.safetensors")
    load_pretrained(str(directory))  # the true table: accepted
    save_file(
        {**state, "model.encoder.embed_positions.weight": table.flip(1).contiguous()}, directory / "model.safetensors"
    )
    with pytest.raises(ConfigError, match="'encoder.embed_positions.weight' is not the sinusoidal table Marian uses"):
        load_pretrained(str(directory))


def _only(directory: Path, target: Path, name: str) -> Path:
    target = _mkdirs(target / "only")
    (target / name).write_bytes((directory / name).read_bytes())
    return target


def _edited(directory: Path, target: Path, **changes) -> Path:
    target = copy_of(directory, target / "edited")
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _broken_json(directory: Path, target: Path) -> Path:
    target = copy_of(directory, target / "broken")
    (target / "config.json").write_text("{not json")
    return target
