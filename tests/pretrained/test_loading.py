"""Finding and reading a pretrained model: local directories, the hub's cache, safe weights, one-line errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.model import ConfigError
from src.pretrained import check_weights, load_pretrained

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
    check_weights(str(tmp_path))  # the check a run makes before it writes anything: shapes only
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
    refused = (
        f"{tmp_path / 'pytorch_model.bin'} was refused: it holds a reference to 'posix.system', and loading it could "
        "run code; use the model's safetensors weights (model.safetensors)"
    )
    for read in (load_pretrained, check_weights):
        with pytest.raises(ConfigError, match="^" + re.escape(refused) + "$"):
            read(str(tmp_path))
    assert not (tmp_path / "pwned").exists()
    # a command says it in one line: neither torch's advice to load it unsafely nor its warnings
    done = subprocess.run([sys.executable, "-m", "src.predict", f"ckpt=hf:{tmp_path}", "text=hi"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: {refused}"]
    assert "weights_only" not in done.stderr and not (tmp_path / "pwned").exists()


def test_a_file_that_is_no_pickle_is_said_so(tmp_path):
    (tmp_path / "config.json").write_text(tiny_gpt2().config.to_json_string())
    (tmp_path / "pytorch_model.bin").write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    for read in (load_pretrained, check_weights):
        with pytest.raises(ConfigError, match="pytorch_model.bin cannot be read .*: download it again"):
            read(str(tmp_path))


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
@pytest.mark.parametrize("read", [load_pretrained, check_weights], ids=["load", "check"])
def test_bad_model_directories_get_one_line_errors(gpt2_dir, tmp_path, make, message, read):
    """The loader and the check a run makes before writing anything (headers only) refuse the same, alike."""
    directory = make(gpt2_dir, tmp_path)
    with pytest.raises(ConfigError, match=message) as error:
        read(str(directory))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("fixture", ["gpt2_dir", "bert_dir", "marian_dir", "llama_dir", "qwen2_dir", "mistral_dir",
                                     "t5_dir", "flan_t5_dir"])  # fmt: skip
def test_every_familys_weights_pass_the_shapes_only_check(fixture, request):
    """check_weights builds each family's model on the meta device and converts its weights without their data."""
    check_weights(str(request.getfixturevalue(fixture)))


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
