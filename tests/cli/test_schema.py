"""The Hydra schema: every group option composes, typos and wrong types are Hydra's errors at composition, and
the derived schemas (model, task, mask) match the code that reads them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from src.cli.schema import ModelConfig, model_config_for, safe_dirname, sweep_job_dirname, varied_keys
from src.data import all_tasks
from src.model import ModelAxes, TransformerConfig
from src.model.masks import MASK_SCHEMES

ROOT = Path(__file__).resolve().parents[2]


def test_layers_sets_both_stacks_unless_given(compose):
    cfg = compose("model.layers=3")
    assert (cfg.model.enc_layers, cfg.model.dec_layers) == (3, 3)
    cfg = compose("model.layers=3", "model.dec_layers=1")
    assert (cfg.model.enc_layers, cfg.model.dec_layers) == (3, 1)


def test_experiment_group_reaches_experiments_dir(compose):
    experiments = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    assert experiments, "experiments/ should hold the named ablation studies"
    for name in experiments:
        compose(f"experiment={name}")  # composes (validation may need data files)


# --- one source of truth: the derived schemas -----------------------------------------------------------------


def test_the_model_schema_is_the_models_own_axes_plus_layers():
    names = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    assert names(ModelConfig) == names(ModelAxes) | {"layers", "pretrained"}
    from_the_data = {"src_vocab_size", "tgt_vocab_size", "num_classes", "mask", "pad_id", "bos_id", "eos_id"}
    from_the_data |= {"bos_is_output", "stop_ids"}  # the tokenizer's, as the special ids
    assert names(TransformerConfig) == names(ModelAxes) | from_the_data


def _another_value(value, annotation: str = ""):
    """A value of the same type that differs from `value` (validity does not matter here, only the plumbing).
    `annotation`: the field's type, for an optional setting whose default is null (model.final_norm, ...)."""
    if value is None:
        return 0.25 if "float" in annotation else 1 if "int" in annotation else True
    if isinstance(value, dict):  # model.rope_scaling: a scaling with a setting (the command line's dict form)
        return {"type": "linear", "factor": 2.0}
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    return f"{value}_x"


def test_every_model_axis_reaches_the_model(compose):
    """Each ModelAxes field set on the command line arrives in TransformerConfig (no hand-copied field list): a
    new field is covered without editing this test."""
    defaults = TransformerConfig()
    changed = {f.name: _another_value(getattr(defaults, f.name), str(f.type)) for f in dataclasses.fields(ModelAxes)}
    written = lambda value: (
        "{" + ",".join(f"{k}:{v}" for k, v in value.items()) + "}" if isinstance(value, dict) else value
    )  # noqa: E731
    cfg = compose(*(f"model.{key}={written(value)}" for key, value in changed.items()))
    model_cfg = model_config_for(cfg, src_vocab_size=11, tgt_vocab_size=12, num_classes=2)
    assert {key: getattr(model_cfg, key) for key in changed} == changed
    assert model_cfg.mask == {"type": "standard"}


@pytest.mark.parametrize("mask", list(MASK_SCHEMES))
def test_every_mask_scheme_has_a_config_option_with_its_settings(compose, mask):
    cfg = compose(f"mask={mask}")
    settings = {f.name: f.default for f in dataclasses.fields(MASK_SCHEMES[mask])}
    assert dict(cfg.mask) == {"type": mask, **settings}
    assert model_config_for(cfg).mask == {"type": mask, **settings}


@pytest.mark.parametrize("task", sorted(all_tasks()))
def test_every_registered_task_has_a_config_option(compose, task):
    cfg = compose(f"task={task}")
    assert cfg.task.name == task
    assert set(cfg.task) == {f.name for f in dataclasses.fields(all_tasks()[task].schema)}


# --- shape and type errors: Hydra's own message, at composition ---------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        "model.heads=four",  # wrong type
        "model.head=4",  # unknown key (typo)
        "task.vocab_sze=5",  # typo inside a task schema
        "task=addition task.vocab_size=5",  # a field the addition task does not have
        "mask=standard mask.window=3",  # a setting the standard mask does not have
        "mask=window mask.window=wide",
        "trainer.max_steps=1.5",
        "model=huge",  # unknown group option
    ],
)
def test_hydra_rejects_typos_and_types(compose, override):
    with pytest.raises(ConfigCompositionException):
        compose(*override.split())


# --- sweep directory names -----------------------------------------------------------------------------------


def test_sweep_directory_names_are_safe_to_pass_back_as_overrides():
    assert safe_dirname("model.heads:8+task:sort") == "model.heads:8+task:sort"
    assert safe_dirname("model.betas:[0.9,0.98]") == "model.betas:-0.9-0.98-"
    long = "+".join(f"model.field_{i}:{i}" for i in range(60))
    short = safe_dirname(long)
    assert len(short) <= 200 and short != safe_dirname(long + "+x:1")  # shortened, still distinct


def test_sweep_directory_names_leave_out_every_tasks_paths():
    overrides = [
        "task=char_lm",
        "task.path=/data/input.txt",
        "model.heads=8",
        "ckpt_path=/x/last.ckpt",
        "task.train_src=a/b.txt",
        "task.data_dir=/cache",
        "hydra.run.dir=/tmp/x",
    ]
    assert sweep_job_dirname(overrides) == "model.heads:8+task:char_lm"
    assert sweep_job_dirname([]) == "defaults"


def test_sweep_directory_names_are_the_varied_settings_in_sweep_order(tmp_path):
    """From the multirun.yaml Hydra writes first: command-line sweeps, then the sweeper's params (experiments)."""
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['task=sort', 'model.heads=1,2,4', 'trainer.max_steps=10']\n"
        "  sweeper:\n    params:\n      seed: 0,1,2\n"
    )
    assert varied_keys(tmp_path) == ["model.heads", "seed"]
    job = ["task=sort", "model.heads=2", "trainer.max_steps=10", "seed=1"]
    assert sweep_job_dirname(job, str(tmp_path)) == "model.heads:2+seed:1"
    assert varied_keys(tmp_path / "missing") == []


def test_an_optuna_search_varies_its_search_space():
    """An optimising sweeper writes no multirun.yaml: its params (the job's HydraConfig has them) are what
    varies; a param with one value does not vary."""
    params = {"optimizer.lr": "tag(log, interval(1e-4, 3e-3))", "model.d_model": "choice(32, 64, 128)", "seed": "0"}
    assert varied_keys(None, params) == ["optimizer.lr", "model.d_model"]
    assert sweep_job_dirname(["optimizer.lr=0.001", "model.d_model=64", "seed=0"], None, params) == (
        "optimizer.lr:0.001+model.d_model:64"
    )


def test_the_cluster_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


def test_varied_keys_reads_a_rewritten_multirun_yaml_again(tmp_path):
    """A resumed sweep rewrites its multirun.yaml; the keys a sweep varies are read from the file as it is now."""
    import yaml

    saved = tmp_path / "multirun.yaml"
    saved.write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["model.heads=1,2", "seed=0"]}}}))
    assert varied_keys(tmp_path) == ["model.heads"]
    saved.write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["model.heads=1", "seed=0,1,2,3"]}}}))
    assert varied_keys(tmp_path) == ["seed"]
    saved.unlink()
    assert varied_keys(tmp_path, {"optimizer.lr": "interval(1e-4, 3e-3)"}) == ["optimizer.lr"]


def test_the_schemas_are_registered_once_and_again_when_a_registry_changes(monkeypatch):
    """register_configs runs for every command and every composition of the tests: the schemas are built only when a
    registry holds what they were not built from (a mask scheme or task registered later), or the store lost them."""
    from hydra.core.config_store import ConfigStore

    from src.cli.schema import register_configs

    register_configs()
    stored = []
    store = ConfigStore.store
    monkeypatch.setattr(ConfigStore, "store", lambda self, **kw: stored.append(kw.get("name")) or store(self, **kw))
    register_configs()
    assert stored == []
    monkeypatch.setitem(MASK_SCHEMES, "registered_later", MASK_SCHEMES["causal"])
    register_configs()
    assert "registered_later" in stored and "base_config" in stored
    for lost in ("base_config", "base_eval"):  # an entry another module replaced or took out is stored again
        stored.clear()
        ConfigStore.instance().repo.pop(f"{lost}.yaml")
        register_configs()
        assert lost in stored
    stored.clear()
    store(ConfigStore.instance(), group="schema/mask", name="window", node={"type": "window", "other": 1})
    register_configs()
    assert "window" in stored and "other" not in ConfigStore.instance().repo["schema"]["mask"]["window.yaml"].node
    monkeypatch.undo()
    ConfigStore.instance().repo["schema"]["mask"].pop("registered_later.yaml")  # not an option of other tests
    register_configs()  # built again without the test's scheme
    assert "registered_later.yaml" not in ConfigStore.instance().repo["schema"]["mask"]
