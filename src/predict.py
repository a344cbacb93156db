"""Use a checkpoint: `python -m src.predict ckpt=... text="..."`.

    seq2seq tasks (copy, reverse, ..., translation): translate `text`
    char_lm:        continue `text` (empty text: start from scratch)
    classification: print the predicted label and the class probabilities

Decoding is chosen by config: decode.strategy=greedy (default) | beam (decode.beam_size, decode.length_penalty)
| sample (decode.temperature, decode.top_k, decode.top_p; num_samples=N draws N continuations).
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli import CONF_DIR, run_hydra_command, user_errors_as_one_line
from src.model import BOS_ID, ConfigError, generate
from src.schema import register_configs
from src.training.report import print_warning, quiet_lightning
from src.validation import check_seed, check_threads, validate_decode

register_configs()
quiet_lightning()


def encode_text(datamodule, text: str, side: str) -> list[int]:
    """The ids the model reads for `text`: symbols it never saw are an error (they would silently become <unk>),
    and text longer than the model was trained on is cut, with a warning saying where."""
    vocab = datamodule.vocab(side)
    unknown = vocab.unknown_pieces(text)
    if unknown:
        shown = ", ".join(repr(piece) for piece in unknown[:10])
        raise ConfigError(
            f"text has {len(unknown)} symbol(s) the model never saw in training ({shown}), which it would read as "
            "<unk>: leave them out or replace them"
        )
    ids = datamodule.encode_src(text) if side == "src" else datamodule.encode_tgt(text)
    full = len(vocab.encode(text))
    if len(ids) < full:
        kept = "last" if datamodule.kind == "lm" else "first"
        print_warning(
            f"text is {full} tokens and the model reads at most {len(ids)}: only the {kept} {len(ids)} are used"
        )
    return ids


def predict(cfg: DictConfig) -> list[str]:
    """The outputs for cfg.text: one line per sample (classification: the label, then probabilities)."""
    from src.training.checkpoint import load_run

    for key in ("ckpt", "text"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(
                f'{key} is required: give it, e.g. python -m src.predict ckpt=<run>/checkpoints/best.ckpt text="..."'
            )
    validate_decode(cfg.decode)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples={cfg.num_samples} must be >= 1")
    check_seed(cfg.seed)
    check_threads(cfg.torch_threads)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    module, datamodule = load_run(cfg.ckpt)
    model, d = module.model, cfg.decode

    if datamodule.kind == "classification":
        ids = encode_text(datamodule, cfg.text, "src")
        if not ids:
            raise ConfigError("text is empty after tokenization: give a sentence to classify")
        probs = module.model(torch.tensor([ids])).logits.softmax(-1)[0]  # (C,)
        names = datamodule.label_names
        ranked = sorted(range(len(probs)), key=lambda c: -float(probs[c]))
        return [names[ranked[0]]] + [f"  {names[c]}: {float(probs[c]):.3f}" for c in ranked]

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = dict(
        max_new_tokens=d.max_new_tokens,
        strategy=d.strategy,
        beam_size=d.beam_size,
        length_penalty=d.length_penalty,
        temperature=d.temperature,
        top_k=d.top_k,
        top_p=d.top_p,
        generator=generator,
    )
    repeats = cfg.num_samples if d.strategy == "sample" else 1
    if datamodule.kind == "seq2seq":
        src = torch.tensor([encode_text(datamodule, cfg.text, "src")] * repeats)  # (N, S)
        if src.size(1) == 0:
            raise ConfigError("text is empty after tokenization: give something to translate")
        out = generate(model, src=src, **settings)
        return [datamodule.decode_tgt(row) for row in out]
    # lm: continue the text (the model was trained on raw text windows; an empty prompt starts from BOS)
    ids = encode_text(datamodule, cfg.text, "tgt") or [BOS_ID]
    out = generate(model, prompt=torch.tensor([ids] * repeats), **settings)
    return [cfg.text + datamodule.decode_tgt(row) for row in out]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors_as_one_line():
        lines = predict(cfg)
    if len(lines) > 1 and cfg.decode.strategy == "sample":
        lines = [f"--- sample {i + 1} ---\n{line}" for i, line in enumerate(lines)]
    print("\n".join(lines))


if __name__ == "__main__":
    run_hydra_command(main)
