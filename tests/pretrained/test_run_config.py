"""src/pretrained/run_config.py: what a composed config says about a pretrained model's settings."""

from __future__ import annotations

from omegaconf import OmegaConf


def test_whether_a_file_chose_the_default_mask_is_asked_of_the_files_as_they_are_now(tmp_path):
    """An experiment file's `override /mask: standard` chooses the mask as a typed one does; the answer comes from
    the defaults list of the files as they are (an edited file, or another config folder with the same names,
    answers anew)."""
    from hydra import initialize_config_dir

    from src.pretrained.run_config import default_mask_chosen_by_a_file

    def config_folder(folder, experiment: str):
        for name, text in {
            "config.yaml": "defaults:\n  - mask: standard\n  - _self_\n  - experiment: null\n",
            "mask/standard.yaml": "type: standard\n",
            "mask/window.yaml": "type: window\n",
            "experiment/mine.yaml": experiment,
        }.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        return folder

    chooses = "# @package _global_\ndefaults:\n  - override /mask: standard\n"
    leaves = "# @package _global_\nname: mine\n"
    job = OmegaConf.create({"job": {"config_name": "config"}, "overrides": {"hydra": [], "task": ["experiment=mine"]}})
    folder = config_folder(tmp_path / "conf", chooses)
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        assert default_mask_chosen_by_a_file(job)
        (folder / "experiment" / "mine.yaml").write_text(leaves)
        assert not default_mask_chosen_by_a_file(job)
    with initialize_config_dir(config_dir=str(config_folder(tmp_path / "other", chooses)), version_base="1.3"):
        assert default_mask_chosen_by_a_file(job)
