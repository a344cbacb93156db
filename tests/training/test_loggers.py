"""Loggers by config: TensorBoard always (the dashboards), plus csv, wandb or mlflow; a missing tracker package is
refused in one line that says how to install it."""

from __future__ import annotations

import importlib.util

import pytest

from src.model import ConfigError
from src.training.loggers import LOGGERS, check_logger
from tests.conftest import compose_config
from tests.test_bad_inputs import TINY, run_command


def test_every_option_has_a_config_file_and_passes_its_check_when_installed(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # online wandb also needs a login (tested below)
    for name, option in LOGGERS.items():
        settings = compose_config(f"logger={name}").logger
        assert settings.name == name
        if option.module is None or importlib.util.find_spec(option.module) is not None:
            check_logger(settings)


@pytest.mark.parametrize("name", [name for name, option in LOGGERS.items() if option.module is not None])
def test_a_tracker_that_is_not_installed_is_refused_with_the_install_command(name, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == name else real_find_spec(module, *a)
    )
    with pytest.raises(ConfigError, match=rf"pip install -e '\.\[{LOGGERS[name].extra}\]'"):
        check_logger(compose_config(f"logger={name}").logger)


def tiny_run(tmp_path, capsys, *overrides: str):
    args = [o for o in TINY if not o.startswith("trainer.max_steps=")] + ["trainer.max_steps=6"]
    result = run_command("src.run", [*args, *overrides, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    assert result.code == 0, result.err
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))  # TensorBoard too, for the dashboards
    return tmp_path / "run"


def test_csv_writes_the_scalars_beside_tensorboard(tmp_path, capsys):
    run_dir = tiny_run(tmp_path, capsys, "logger=csv")
    header, *rows = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in header and "val/loss" in header and rows
    assert "heads: 2" in (run_dir / "csv" / "version_0" / "hparams.yaml").read_text()


def test_wandb_offline_logs_the_run(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tiny_run(tmp_path, capsys, "logger=wandb")
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline_run.glob("*.wandb"))


def test_mlflow_logs_metrics_and_params_to_its_store(tmp_path, capsys, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the logger allows a folder store itself
    store = tmp_path / "mlruns"
    tiny_run(tmp_path, capsys, "logger=mlflow", f"logger.tracking_uri=file:{store}")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{store}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "transformer-ablations"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run"
    assert "train/loss" in run.data.metrics and "val/loss" in run.data.metrics
    assert run.data.params["config/model/heads"] == "2"  # the run's composed config, flattened


def test_online_wandb_without_a_login_is_refused_before_any_work(tmp_path, monkeypatch):
    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "netrc").write_text("machine example.org login a password b\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    settings = compose_config("logger=wandb").logger
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed")
    with pytest.raises(ConfigError, match="wandb login.*WANDB_MODE=offline"):
        check_logger(settings)
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_logger(settings)  # offline needs no login
