"""A fine-tuned pretrained model's run config says what the model is (src/pretrained/run_config.py): Mistral's sliding
window as `mask: {type: window, window: 5}` and its own model axes, in .hydra/config.yaml (which Hydra saved as
composed, before the job ran), the checkpoints' config, TensorBoard's HPARAMS tab and what src.report reads; a resume
reads it back; a mask given beside the model that is not its own is one warning, and a resume that changes it one error
line."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from src.dashboard import read_events
from src.sweep.report import make_group
from src.sweep.runs import read_run
from tests.conftest import run_in_process

pytestmark = pytest.mark.slow

WINDOW = {"type": "window", "window": 5}  # the tiny Mistral's sliding_window (conftest.tiny_decoder)
STORY = "The cat sat on the mat and the dog ran to the park. " * 40


def fine_tune(directory, run_dir, text, *settings: str, steps: int = 2) -> tuple[int, str]:
    """src.run of `steps` steps from the pretrained model on a text file: (exit status, stderr)."""
    code, _, err = run_in_process(
        "src.run",
        f"model.pretrained={directory}",
        "task=char_lm",
        f"task.path={text}",
        "task.block_size=16",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "optimizer.warmup_steps=0",  # a few steps: no warm-up, and no warning that it would outlast them
        "batch_size=2",
        "torch_threads=1",
        f"hydra.run.dir={run_dir}",
        *settings,
    )
    return code, err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


@pytest.fixture
def story(tmp_path):
    text = tmp_path / "story.txt"
    text.write_text(STORY)
    return text


def saved_config(run_dir):
    return OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))


def test_a_fine_tuned_mistrals_config_holds_its_window_and_its_axes_and_resumes(mistral_dir, story, tmp_path):
    run_dir = tmp_path / "run"
    code, err = fine_tune(mistral_dir, run_dir, story)
    assert code == 0, err
    assert not warnings_of(err)
    config = saved_config(run_dir)
    assert config["mask"] == WINDOW
    # the model's own axes (config.json's), where Hydra saved the default model's (d_model 128, 4 heads, ...)
    model = config["model"]
    assert (model["arch"], model["d_model"], model["heads"], model["kv_heads"], model["d_ff"]) == (
        "decoder_only", 32, 4, 2, 48,
    )  # fmt: skip
    assert (model["layers"], model["enc_layers"], model["dec_layers"]) == (2, 0, 2)
    assert (model["pos_encoding"], model["norm_type"], model["activation"]) == ("rope", "rmsnorm", "swiglu")
    assert config["task"]["path"] == str(story)  # the rest as Hydra saved it
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["config"]["mask"] == WINDOW
    assert checkpoint["hyper_parameters"]["model_config"]["mask"] == WINDOW  # what the model attends with
    assert read_events(run_dir).hparams["mask.type"] == "window"
    run = read_run(run_dir)  # as src.report reads it: a group's option from hydra.yaml, a setting from the config
    assert (run.value("mask"), run.value("mask.window"), run.value("model.d_model")) == ("window", "5", "32")
    fixed = make_group("char_lm", None, [run], swept=set(), search=False).fixed
    assert "model" not in fixed  # the model group's option (tiny) says nothing of a pretrained model

    code, err = fine_tune(mistral_dir, run_dir, story, "ckpt_path=last", steps=4)  # the window it was trained with
    assert code == 0, err
    assert saved_config(run_dir)["mask"] == WINDOW


def test_a_resume_with_another_mask_is_refused_before_anything_is_written(mistral_dir, story, tmp_path):
    run_dir = tmp_path / "run"
    assert fine_tune(mistral_dir, run_dir, story)[0] == 0
    before = (run_dir / ".hydra" / "config.yaml").read_text()
    code, err = fine_tune(mistral_dir, run_dir, story, "ckpt_path=last", "mask=standard", steps=4)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == [
        "error: ckpt_path was trained with mask.type=window, this run has mask.type=standard: resume with the same "
        "settings (see the run's .hydra/config.yaml) or drop ckpt_path"
    ], err
    assert (run_dir / ".hydra" / "config.yaml").read_text() == before


@pytest.mark.parametrize(
    ("given", "saved", "warned"),
    [
        (["mask=standard"], {"type": "standard"}, "mask=standard"),
        (["mask=window"], {"type": "window", "window": 4}, "mask=window mask.window=4"),  # conf/mask/window.yaml's
        (["mask=window", "mask.window=5"], WINDOW, None),  # its own: nothing to say
    ],
    ids=["standard", "window-of-4", "its-own-window"],
)
def test_a_mask_given_beside_the_model_applies_and_is_warned_about_when_it_is_not_its_own(
    mistral_dir, story, tmp_path, given, saved, warned
):
    run_dir = tmp_path / "run"
    code, err = fine_tune(mistral_dir, run_dir, story, "logger=none", *given, steps=1)
    assert code == 0, err
    assert saved_config(run_dir)["mask"] == saved
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["model_config"]["mask"] == saved
    expected = [] if warned is None else [
        f"warning: {warned} is not the mask model.pretrained={mistral_dir} was trained with (mask=window "
        "mask.window=5): it is fine-tuned with yours; leave mask out to keep its own"
    ]  # fmt: skip
    assert warnings_of(err) == expected


def test_a_window_typed_alone_beside_mistral_is_refused_naming_the_models_own_mask(mistral_dir, story, tmp_path):
    """`mask.window=3` alone meets the composed mask (standard), not Mistral's window: the line says both."""
    code, err = fine_tune(mistral_dir, tmp_path / "run", story, "mask.window=3")
    assert code == 2 and not (tmp_path / "run").exists()
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: mask.window belongs to mask=window, not to mask=standard, the mask the command line composes "
        f"(model.pretrained={mistral_dir} attends with mask=window mask.window=5 where no mask is given): write "
        "mask=window mask.window=3, or drop mask.window=3"
    ], err


def test_a_mask_that_sees_the_same_keys_is_not_warned_about(llama_dir, story, tmp_path):
    """mask=causal makes the encoder causal: a decoder-only Llama has none, so it attends as with its own."""
    code, err = fine_tune(llama_dir, tmp_path / "run", story, "logger=none", "mask=causal", steps=1)
    assert code == 0, err
    assert not warnings_of(err)


def test_a_mask_an_experiment_file_chooses_beside_the_model_applies_and_is_warned_about(mistral_dir, story, tmp_path):
    """An experiment's `override /mask: ...` chooses the mask as the command line would: it applies, is recorded,
    and is warned about (it was dropped silently when only typed masks counted). One that chooses the default,
    mask=standard, composes what no choice does: Hydra's defaults list tells them apart."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    for mask in ("causal", "standard"):
        (experiments / f"{mask}.yaml").write_text(f"# @package _global_\ndefaults:\n  - override /mask: {mask}\n")
        run_dir = tmp_path / mask
        code, err = fine_tune(mistral_dir, run_dir, story, "logger=none", f"experiment={mask}", searchpath, steps=1)
        assert code == 0, err
        assert saved_config(run_dir)["mask"] == {"type": mask}
        assert [line for line in warnings_of(err) if f"mask={mask} is not the mask" in line], err
        # a resume reads the choice back: the same mask, so nothing to refuse
        code, err = fine_tune(
            mistral_dir, run_dir, story, "logger=none", f"experiment={mask}", searchpath, "ckpt_path=last", steps=2
        )
        assert code == 0, err
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["global_step"] == 2
        assert checkpoint["hyper_parameters"]["model_config"]["mask"] == {"type": mask}


def test_a_sweep_of_experiments_that_compose_alike_but_choose_otherwise_is_not_a_repeated_job(
    mistral_dir, story, tmp_path
):
    """`override /mask: standard` composes what no choice does, yet beside Mistral the two train other masks: the
    sweep's check for jobs repeated (seed=0,0) tells them apart by their group choices, and runs both."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "standard.yaml").write_text("# @package _global_\ndefaults:\n  - override /mask: standard\n")
    (experiments / "own.yaml").write_text("# @package _global_\n")
    sweep = tmp_path / "sweep"
    code, _, err = run_in_process(
        "src.run", "-m", "experiment=standard,own", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"model.pretrained={mistral_dir}", "task=char_lm", f"task.path={story}", "task.block_size=16",
        "trainer.max_steps=1", "trainer.val_check_interval=1", "batch_size=2", "torch_threads=1", "logger=none",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert code == 0, err
    masks = [saved_config(sweep / name)["mask"] for name in ("0_experiment:standard", "1_experiment:own")]
    assert masks == [{"type": "standard"}, WINDOW]


@pytest.mark.parametrize(
    ("setting", "refused"),
    [("model:\n  dropout: 0.25\n", None), ("model:\n  heads: 8\n", "model.heads is set by model.pretrained=")],
    ids=["dropout-applies", "heads-refused"],
)
def test_model_settings_an_experiment_file_gives_beside_the_model_apply_or_are_refused_as_typed_ones(
    llama_dir, story, tmp_path, setting, refused
):
    """A config file's model.* settings beside model.pretrained are what typed ones are: a dropout applies; any other
    is refused in one line, before anything is written (they were dropped silently)."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "mine.yaml").write_text(f"# @package _global_\n{setting}")
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    run_dir = tmp_path / "run"
    code, err = fine_tune(llama_dir, run_dir, story, "logger=none", "experiment=mine", searchpath, steps=1)
    if refused is None:
        assert code == 0, err
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["hyper_parameters"]["model_config"]["dropout"] == 0.25
    else:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and refused in errors[0], err
        assert not run_dir.exists()
