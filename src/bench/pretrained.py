"""Our modules against Hugging Face's own on the real GPT-2 small and BERT-base shapes (random weights: the hub is
not needed), side by side in one process, alternating which runs first so drift in the machine's load hits both.

    python -m src.bench.pretrained [--quick]

Figures (each a ratio, > 1 = ours faster, memory < 1 = ours lighter):
- GPT-2 small forward, batch 4 x 256 tokens: Hugging Face's GPT2LMHeadModel time / ours;
- GPT-2 small, 64 new tokens sampled (one 32-token prompt) with a key/value cache: transformers' generate / ours;
- BERT-base fine-tuning step (batch 16 x 128, forward + backward + AdamW): BertForSequenceClassification / ours;
- peak memory of the GPT-2 forward above: ours / Hugging Face's (the rise of the process's peak resident memory,
  VmHWM, reset before each run through /proc/self/clear_refs; Linux only);
- a SmolLM-135M-shaped Llama forward (grouped-query attention, 9 query heads sharing 3 KV heads), batch 4 x 256:
  Hugging Face's LlamaForCausalLM time / ours, beside the ceiling of that ratio on this machine (Hugging Face's time
  over ours with everything but the matrix products and the fused attention kernel, which both run alike, taking no
  time: what any implementation on PyTorch's kernels could reach); and the KV cache our model holds after a
  256-token prompt, against the same model with as many KV heads as query heads (the goal: at most kv_heads / heads).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from src.bench.step import kernel_seconds
from src.model import build_model, generate


def _ours(hf_model, family, prefixes: tuple[str, ...], num_classes: int = 0):
    """Our model of a transformers model, by the family's conversion (as src.pretrained loads a directory)."""
    from src.pretrained import _load_converted
    from src.pretrained.convert import Weights

    cfg = family.model_config(hf_model.config, num_classes).validate()
    model = build_model(cfg)
    state = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    _load_converted(model, family.convert(Weights(state, "random weights", prefixes), cfg), "random weights")
    return model


def _timed(function: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def side_by_side(runs: dict[str, Callable[[], object]], repeats: int, inner: int = 1) -> dict[str, float]:
    """Median seconds of each run (after one warm-up), the two alternating in order every round."""
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            seconds[name] += _timed(runs[name], inner)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rise_mib(function: Callable[[], object]) -> float:
    """How far the process's peak resident memory rises above where it was while `function` runs (MiB)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = _resident_kib("VmRSS")
    function()
    return (_resident_kib("VmHWM") - before) / 1024


def measure(quick: bool = False) -> dict:
    import transformers

    repeats = 3 if quick else 7
    figures = {**_gpt2(repeats), **_bert(repeats), **_smollm(repeats)}
    figures["transformers"] = transformers.__version__
    return figures


def _gpt2(repeats: int) -> dict:
    """GPT-2 small: the forward pass, its peak memory, and sampling with a key/value cache."""
    import transformers

    from src.pretrained import gpt2

    torch.manual_seed(0)
    figures: dict = {}
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()  # 124M parameters, sdpa attention
    ours = _ours(hf, gpt2, ("transformer.",)).eval()
    tokens = torch.randint(0, hf.config.vocab_size - 1, (4, 256))
    with torch.no_grad():
        forward = side_by_side({"hf": lambda: hf(tokens).logits, "ours": lambda: ours(tokens).logits}, repeats)
        figures["gpt2_forward_s"] = forward
        figures["gpt2_forward_vs_hf"] = forward["hf"] / forward["ours"]
        memory = {"hf": [], "ours": []}
        for round_ in range(3):
            for name in ("hf", "ours") if round_ % 2 == 0 else ("ours", "hf"):
                run = (lambda: hf(tokens).logits) if name == "hf" else (lambda: ours(tokens).logits)
                memory[name].append(peak_rise_mib(run))
        figures["gpt2_forward_peak_mib"] = {name: statistics.median(v) for name, v in memory.items()}
        figures["gpt2_memory_vs_hf"] = figures["gpt2_forward_peak_mib"]["ours"] / figures["gpt2_forward_peak_mib"]["hf"]

        prompt = torch.randint(0, hf.config.vocab_size - 1, (1, 32))

        def hf_sample():
            torch.manual_seed(1)
            return hf.generate(prompt, do_sample=True, max_new_tokens=64, min_new_tokens=64, top_k=0, pad_token_id=0)

        def our_sample():
            return generate(ours, prompt=prompt, max_new_tokens=64, strategy="sample", generator=torch.Generator())

        sampling = side_by_side({"hf": hf_sample, "ours": our_sample}, repeats)
        figures["gpt2_sample_s"] = sampling
        figures["gpt2_sample_vs_hf"] = sampling["hf"] / sampling["ours"]
    return figures


def _bert(repeats: int) -> dict:
    """BERT-base: one fine-tuning step of a sequence classifier."""
    import transformers

    from src.pretrained import bert

    torch.manual_seed(0)
    hf_bert = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2)).train()
    ours_bert = _ours(hf_bert, bert, ("bert.",), num_classes=2).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, hf_bert.config.vocab_size, (16, 128), generator=g)
    mask = torch.ones_like(ids)
    for row in range(16):  # a batch of real lengths: 64..128 tokens, right-padded
        length = int(torch.randint(64, 129, (1,), generator=g))
        ids[row, length:], mask[row, length:] = 0, 0
    labels = torch.randint(0, 2, (16,), generator=g)
    optimisers = {
        "hf": torch.optim.AdamW(hf_bert.parameters(), lr=2e-5),
        "ours": torch.optim.AdamW(ours_bert.parameters(), lr=2e-5),
    }

    def step(name: str) -> None:
        optimiser = optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        if name == "hf":
            logits = hf_bert(input_ids=ids, attention_mask=mask).logits
        else:
            logits = ours_bert(ids).logits
        torch.nn.functional.cross_entropy(logits, labels).backward()
        optimiser.step()

    fine_tune = side_by_side({"hf": lambda: step("hf"), "ours": lambda: step("ours")}, repeats)
    return {"bert_step_s": fine_tune, "bert_step_vs_hf": fine_tune["hf"] / fine_tune["ours"]}


# SmolLM-135M's shape (HuggingFaceTB/SmolLM-135M config.json), random weights: the hub is not needed.
SMOLLM_135M = dict(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
    vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, bos_token_id=0, eos_token_id=0,
)  # fmt: skip


def cache_bytes(model, prompt: torch.Tensor) -> int:
    """The bytes of the key/value cache a decoder-only model of ours holds after reading `prompt`."""
    cache = model.decoder.new_cache()
    model.decode(prompt, cache=cache)
    return sum(t.numel() * t.element_size() for layer in cache for part in layer.values() for t in part.values())


def _smollm(repeats: int) -> dict:
    """A SmolLM-135M-shaped Llama: the forward pass against transformers', and the grouped KV cache's size."""
    import dataclasses

    import transformers

    from src.pretrained import llama

    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM_135M)).eval()  # sdpa attention
    ours = _ours(hf, llama, ("model.",)).eval()
    tokens = torch.randint(1, SMOLLM_135M["vocab_size"], (4, 256))
    with torch.no_grad():
        forward = side_by_side({"hf": lambda: hf(tokens).logits, "ours": lambda: ours(tokens).logits}, repeats)
        # Both run the same matrix products and attention kernel: the most ours could gain is the rest of its time
        kernels = kernel_seconds(lambda: ours(tokens).logits, calls=2)
        share = (kernels["matmul_s"] + kernels["attention_s"]) / kernels["all_s"]  # of ours, in the profiler
        multi_head = build_model(dataclasses.replace(ours.cfg, kv_heads=None)).eval()
        grouped, full = cache_bytes(ours, tokens[:1]), cache_bytes(multi_head, tokens[:1])
    return {
        "smollm_forward_s": forward,
        "smollm_forward_vs_hf": forward["hf"] / forward["ours"],
        # transformers' time over ours with nothing but its kernels: ours, scaled by the kernels' share of it
        "smollm_kernel_share": share,
        "smollm_ceiling_vs_hf": forward["hf"] / (forward["ours"] * share),
        "smollm_cache_mib": {"grouped": grouped / 2**20, "multi_head": full / 2**20},
        "smollm_cache_ratio": grouped / full,
        "smollm_kv_share": ours.cfg.kv_head_count / ours.cfg.heads,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs")
    figures = measure(parser.parse_args(argv).quick)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
