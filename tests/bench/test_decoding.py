"""src/bench/decoding.py: the decoding speed and KV-cache size of trained runs, grouped by configuration."""

from __future__ import annotations

import pytest

from src.bench import decoding
from tests.conftest import run_in_process

pytestmark = pytest.mark.slow  # trains four runs (a few seconds)

TINY_LM = [
    "task=char_lm",
    "task.block_size=16",
    "model.d_model=16",
    "model.heads=4",
    "model.layers=1",
    "model.d_ff=32",
    "model.max_len=16",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "batch_size=4",
    "logger=none",
    "torch_threads=1",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Four runs as a sweep lays them out: on one text, 4 KV heads (multi-head) with seeds 0 and 1 and 1 KV head with
    seed 0; on another text, 4 KV heads with seed 0. Returns the sweep directory and the two texts."""
    root = tmp_path_factory.mktemp("decoding")
    texts = {"hamlet": root / "hamlet.txt", "as_you_like_it": root / "as_you_like_it.txt"}
    texts["hamlet"].write_text("To be, or not to be, that is the question.\n" * 40)
    texts["as_you_like_it"].write_text("All the world's a stage, and all the men and women merely players.\n" * 30)
    runs = [("hamlet", 4, 0), ("hamlet", 4, 1), ("hamlet", 1, 0), ("as_you_like_it", 4, 0)]
    for number, (text, kv, seed) in enumerate(runs):
        code, _, err = run_in_process(
            "src.run", *TINY_LM, f"task.path={texts[text]}", f"model.kv_heads={kv}", f"seed={seed}",
            f"hydra.run.dir={root / 'sweep' / str(number)}",
        )  # fmt: skip
        assert code == 0, err
    return root / "sweep", texts


def table(out: str) -> tuple[list[str], dict[str, list[str]]]:
    """The printed table's header cells and its rows' cells by configuration."""
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    header, *configurations = rows
    return header, {cells[0]: cells for cells in configurations}


def test_each_configuration_gets_its_cache_and_speed_over_its_seeds(sweep, capsys):
    sweep_dir, texts = sweep
    decoding.main([str(sweep_dir), "--batch", "4", "--repeats", "1"])
    header, rows = table(capsys.readouterr().out)
    assert "KV cache at full context (MiB)" in header and "decoding tokens/s" in header
    multi_head, multi_query = (f"task.path={texts['hamlet']}, model.kv_heads={kv}" for kv in (4, 1))
    assert rows[multi_head][2] == "4 / 4" and rows[multi_query][2] == "1 / 4"
    assert "(n=2)" in rows[multi_head][4] and "(n=1)" in rows[multi_query][4]  # the two seeds are one configuration
    # 1 layer x 2 (k, v) x 4 rows x 16 positions x 4 KV heads x 4 dims x 4 bytes; one KV head holds a quarter of it
    assert float(rows[multi_head][3]) == pytest.approx(2 * 4 * 16 * 4 * 4 * 4 / 2**20, rel=1e-3)
    assert float(rows[multi_query][3]) == pytest.approx(float(rows[multi_head][3]) / 4, rel=1e-3)


def test_runs_on_different_data_are_never_one_configuration(sweep, capsys):
    """The same model and seed on another text file is a configuration of its own, named by its task.path as the
    sweep report names it; the settings every run shares are said once, above the table."""
    sweep_dir, texts = sweep
    decoding.main([str(sweep_dir), "--batch", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    _, rows = table(out)
    assert set(rows) == {
        f"task.path={texts['hamlet']}, model.kv_heads=4",
        f"task.path={texts['hamlet']}, model.kv_heads=1",
        f"task.path={texts['as_you_like_it']}, model.kv_heads=4",
    }
    assert "(n=1)" in rows[f"task.path={texts['as_you_like_it']}, model.kv_heads=4"][4]
    (shared,) = [line for line in out.splitlines() if line.startswith("every run: ")]
    assert "task=char_lm" in shared and "model.d_model=16" in shared and "task.path" not in shared


def test_a_folder_without_runs_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="holds no run with checkpoints/last.ckpt"):
        decoding.main([str(tmp_path)])
