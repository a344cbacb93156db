"""src/bench/decoding.py: the decoding speed and KV-cache size of trained runs, grouped by configuration."""

from __future__ import annotations

import pytest

from src.bench import decoding
from tests.conftest import run_in_process

pytestmark = pytest.mark.slow  # trains three runs (a few seconds)

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
    """Three runs as a sweep lays them out: 4 KV heads (multi-head) with seeds 0 and 1, and 1 KV head with seed 0."""
    root = tmp_path_factory.mktemp("decoding")
    text = root / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 40)
    for number, (kv, seed) in enumerate([(4, 0), (4, 1), (1, 0)]):
        code, _, err = run_in_process(
            "src.run", *TINY_LM, f"task.path={text}", f"model.kv_heads={kv}", f"seed={seed}",
            f"hydra.run.dir={root / 'sweep' / str(number)}",
        )  # fmt: skip
        assert code == 0, err
    return root / "sweep"


def test_each_configuration_gets_its_cache_and_speed_over_its_seeds(sweep, capsys):
    decoding.main([str(sweep), "--batch", "4", "--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    header, *configurations = rows
    assert "KV cache at full context (MiB)" in header and "decoding tokens/s" in header
    by_kv = {row.split(" | ")[2]: row.split(" | ") for row in configurations}
    assert set(by_kv) == {"4 / 4", "1 / 4"}
    assert "(n=2)" in by_kv["4 / 4"][4] and "(n=1)" in by_kv["1 / 4"][4]  # the two seeds are one configuration
    # 1 layer x 2 (k, v) x 4 rows x 16 positions x 4 KV heads x 4 dims x 4 bytes; one KV head holds a quarter of it
    assert float(by_kv["4 / 4"][3]) == pytest.approx(2 * 4 * 16 * 4 * 4 * 4 / 2**20, rel=1e-3)
    assert float(by_kv["1 / 4"][3]) == pytest.approx(float(by_kv["4 / 4"][3]) / 4, rel=1e-3)


def test_a_folder_without_runs_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="holds no run with checkpoints/last.ckpt"):
        decoding.main([str(tmp_path)])
