"""Speed of the head analysis (src/analysis/) on Multi30k's validation split (1,014 sentences), with the model of
experiment=multi30k_de_en: a trained checkpoint when one is given (or left by `make bench-quality`), else the same
shape with random weights (greedy decoding then runs to its length limit: slower than a trained model's).

    python -m src.bench.analysis [--ckpt <run or .ckpt>] [--data DIR]

Figures:
- the importance pass (one forward and one backward per batch, no weight gradients) against one teacher-forced
  evaluation pass of the same batches (goal: <= 2.5x);
- the whole single-head table (every head of every site removed alone: greedy sacreBLEU and the teacher-forced
  loss of the split each, plus the unablated model) (goal: <= 180 s), and beside it one ablation decoded on its
  own, to show what scoring several head masks per batch saves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
BENCH_RUN = ROOT / "outputs" / "bench" / "multi30k"


def _random_run(data_dir: Path):
    """(model, datamodule, decode) of experiment=multi30k_de_en with random weights."""
    from omegaconf import OmegaConf

    from src.cli.command_line import compose_run_config
    from src.cli.schema import model_config_for
    from src.data import build_datamodule
    from src.training.module import TransformerLitModule

    cfg = compose_run_config("experiment=multi30k_de_en", f"task.data_dir={data_dir / 'multi30k'}")
    scratch = ROOT / "outputs" / "bench" / "analysis_vocab"  # the BPE tokenizer, learned once
    scratch.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(cfg.task, batch_size=cfg.batch_size, seed=cfg.seed, run_dir=scratch)
    model_cfg = model_config_for(cfg, datamodule.src_vocab_size, datamodule.tgt_vocab_size, 0)
    config = OmegaConf.to_container(cfg, resolve=True)
    module = TransformerLitModule(config, vars(model_cfg), datamodule.kind)  # type: ignore[arg-type]
    return module.model.eval(), datamodule, config["decode"]  # type: ignore[index]


def _trained_run(ckpt: Path):
    from src.training.checkpoint import load_run

    module, datamodule = load_run(str(ckpt))
    return module.model.eval(), datamodule, module.config["decode"]


def find_checkpoint(given: str | None) -> Path | None:
    if given:
        path = Path(given)
        return path / "checkpoints" / "best.ckpt" if path.is_dir() else path
    default = BENCH_RUN / "checkpoints" / "best.ckpt"
    return default if default.is_file() else None


def measure(data_dir: Path = DEFAULT_DATA, ckpt: str | None = None, repeats: int = 3) -> dict | None:
    """The figures (see the module docstring), or None when Multi30k's files are not in data_dir."""
    from src.analysis.heads import head_importance
    from src.analysis.scoring import SplitScorer, current_head_mask

    checkpoint = find_checkpoint(ckpt)
    if checkpoint is None and not (data_dir / "multi30k" / "val.de.gz").is_file():
        print(f"head analysis: skipped (no Multi30k files in {data_dir / 'multi30k'}, no checkpoint given)")
        return None
    model, datamodule, decode = _trained_run(checkpoint) if checkpoint else _random_run(data_dir)
    scorer = SplitScorer(model, datamodule, decode, "val")
    alive = current_head_mask(model)
    eval_times, importance_times = [], []
    for _ in range(repeats):  # interleaved, so a slow moment of the machine hits both
        start = time.perf_counter()
        scorer.losses([alive])
        eval_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        head_importance(model, scorer.kind, scorer.batches)
        importance_times.append(time.perf_counter() - start)
    eval_s, importance_s = min(eval_times), min(importance_times)

    heads = [
        (site, layer, head)
        for site, gates in alive.items()
        for layer in range(gates.size(0))
        for head in range(gates.size(1))
    ]
    masks = [alive]
    for site, layer, head in heads:
        mask = {s: g.clone() for s, g in alive.items()}
        mask[site][layer, head] = 0.0
        masks.append(mask)
    start = time.perf_counter()
    scores = scorer.metrics(masks)
    bleu_s = time.perf_counter() - start
    scorer.losses(masks)  # the table's other column, as src.analyze makes it
    table_s = time.perf_counter() - start
    alone = SplitScorer(model, datamodule, decode, "val", rows_per_batch=1)  # one mask per pass
    start = time.perf_counter()
    alone.metrics([masks[1]])
    one_s = time.perf_counter() - start
    return {
        "model": f"trained ({checkpoint})" if checkpoint else "random weights (no checkpoint)",
        "sentences": len(scorer.examples),
        "eval_pass_s": eval_s,
        "importance_s": importance_s,
        "importance_vs_eval": importance_s / eval_s,
        "heads": len(heads),
        "single_head_table_s": table_s,
        "single_head_bleu_s": bleu_s,
        "one_ablation_alone_s": one_s,
        "baseline_bleu": scores[0],
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="a trained experiment=multi30k_de_en run or checkpoint")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the folder holding multi30k/*.gz")
    args = parser.parse_args(argv)
    figures = measure(Path(args.data), args.ckpt)
    if figures is not None:
        for key, value in figures.items():
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
