"""`make bench`: every speed figure beside its goal, measured in this one process on this machine.

python -m src.bench [--quick] [--analysis-ckpt <experiment=multi30k_de_en run>] [--data DIR]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from src.bench import analysis, loop, patching, pretrained, stacked, step
from src.provenance import module_command


def row(figure: str, measured: str, goal: str, met: bool) -> str:
    return f"| {figure} | {measured} | {goal} | {'met' if met else 'MISSED'} |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=module_command("src.bench"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter timed runs (a rough look)")
    parser.add_argument("--analysis-ckpt", help="a trained experiment=multi30k_de_en run, for the head analysis")
    parser.add_argument("--data", default=str(analysis.DEFAULT_DATA), help="the folder holding multi30k/*.gz")
    parser.add_argument("--skip-analysis", action="store_true", help="leave out the head-analysis figures")
    parser.add_argument("--skip-stacked", action="store_true", help="leave out seeds trained together vs one run")
    parser.add_argument(
        "--skip-pretrained", action="store_true", help="leave out GPT-2 and BERT against transformers' own models"
    )
    parser.add_argument(
        "--skip-patching", action="store_true", help="leave out activation patching against TransformerLens"
    )
    args = parser.parse_args(argv)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")

    versus_torch = step.compare_with_torch(repeats=3 if args.quick else 7)
    tokens = versus_torch["tokens_per_s"]
    step_ratio = tokens["scratch"] / tokens["torch.nn.Transformer"]
    peak = step.matmul_peak()
    utilisation = versus_torch["flops_per_s"] / peak
    figures = loop.measure(steps=205 if args.quick else 605, rounds=1 if args.quick else 3)
    heads = None if args.skip_analysis else analysis.measure(Path(args.data), args.analysis_ckpt)
    versus_hf = None if args.skip_pretrained or not has_transformers() else pretrained.measure(args.quick)
    seeds = None if args.skip_stacked else stacked.measure(seeds=5, steps=200 if args.quick else 600)
    versus_tl = None
    if not args.skip_patching and has_transformers():
        try:  # TransformerLens's sweep timed on every 12th patch and scaled (within 1.5% of the whole: 8 minutes)
            versus_tl = patching.measure(quick=True)
        except patching.TransformerLensUnavailable as error:
            print(f"activation patching vs TransformerLens: not measured ({str(error).splitlines()[0]})")

    print()
    print("| figure | measured | goal | |")
    print("| --- | --- | --- | --- |")
    launch = figures["launch_to_first_step_s"]
    print(row("`src.run` launch to the first training step", f"{launch:.1f} s", "<= 5 s", launch <= 5))
    ratio = figures["framework_vs_bare"]
    detail = (
        f"median of {figures['framework_vs_bare_per_round']}; "
        f"{figures['framework_tokens_per_s']:,.0f} / {figures['bare_tokens_per_s']:,.0f} tokens/s; the framework "
        f"adds {figures['framework_ms_per_step']:.2f} ms to a {figures['bare_step_ms']:.1f} ms step"
    )
    print(
        row("tokens/s, full `src.run` loop vs a bare PyTorch loop", f"{ratio:.3f} ({detail})", ">= 0.97", ratio >= 0.97)
    )
    cost = figures["dashboard_cost"]
    every = figures["dashboard_every"]
    print(row(f"cost of the dashboards every {every} steps", f"{cost:.1%}", "<= 2%", cost <= 0.02))
    flops = f"{versus_torch['flops_per_s'] / 1e9:.1f} of {peak / 1e9:.1f} GFLOP/s"
    print(row("model FLOP/s vs fp32 matmul peak", f"{utilisation:.0%} ({flops})", ">= 60%", utilisation >= 0.60))
    detail = f"{tokens['scratch']:,.0f} / {tokens['torch.nn.Transformer']:,.0f} tokens/s"
    print(row("train step vs torch.nn.Transformer", f"{step_ratio:.2f} ({detail})", ">= 1.10", step_ratio >= 1.10))
    if heads is not None:
        model = f"Multi30k val, {heads['sentences']:,} sentences, {heads['model']}"
        ratio = heads["importance_vs_eval"]
        detail = f"{heads['importance_s']:.1f} s vs {heads['eval_pass_s']:.1f} s; {model}"
        figure = "head importance pass vs a teacher-forced eval pass"
        print(row(figure, f"{ratio:.2f}x ({detail})", "<= 2.5x", ratio <= 2.5))
        table = heads["single_head_table_s"]
        detail = (
            f"{heads['heads']} heads + the unablated model: greedy sacreBLEU {heads['single_head_bleu_s']:.0f} s, "
            f"then the loss; one ablation decoded alone: {heads['one_ablation_alone_s']:.1f} s"
        )
        print(row("single-head ablation table", f"{table:.0f} s ({detail})", "<= 180 s", table <= 180))
    if seeds is not None:
        ratio = seeds["stacked_vs_one"]
        detail = (
            f"{seeds['stacked_s']:.0f} s vs {seeds['one_run_s']:.0f} s, default experiment, {seeds['steps']} steps; "
            f"the members' matrix products and attention alone take {seeds['floor_at_measured_rates_vs_one']:.2f}x "
            f"at the rates one run's step gets ({seeds['matmul_ms_per_step']:.1f} + "
            f"{seeds['attention_ms_per_step']:.1f} ms a member's step), {seeds['floor_vs_one']:.2f}x with the products "
            f"at this machine's peak {seeds['matmul_peak_gflop_s']:.0f} GFLOP/s (src/bench/stacked.py)"
        )
        figure = f"{seeds['seeds']} seeds stacked (hydra/launcher=stacked) vs one run, wall time"
        print(row(figure, f"{ratio:.2f}x ({detail})", "<= 2x", ratio <= 2.0))
    if versus_hf is not None:
        print_versus_hf(versus_hf)
    elif not args.skip_pretrained:
        print(row("GPT-2 and BERT vs transformers", "not measured", "install '.[pretrained]'", False))
    if versus_tl is not None:
        print_versus_transformer_lens(versus_tl)


def print_versus_transformer_lens(t: dict) -> None:
    """The patching sweep of GPT-2 small (random weights, the real shape), ours against TransformerLens's
    get_act_patch_* functions side by side (src/bench/patching.py): the speed and the largest difference."""
    run = t["transformer_lens_patches_run"]
    scaled = "" if run == t["patches"] else f", TransformerLens timed on {run} of them and scaled"
    detail = (
        f"{t['ours_s']:.1f} s vs {t['transformer_lens_s']:.0f} s; {t['patches']:,} patches (resid_pre by layer x "
        f"position, z by layer x position x head){scaled}, {t['tokens']} tokens, patches_per_pass="
        f"{t['patches_per_pass']}, TransformerLens {t['transformer_lens']}"
    )
    ratio = t["ours_vs_transformer_lens"]
    figure = "activation patching sweep, GPT-2 small, ours vs TransformerLens"
    print(row(figure, f"{ratio:.1f}x ({detail})", ">= 3x", ratio >= 3))
    gap = t["max_abs_difference"]
    figure = "activation patching, largest difference from TransformerLens (float32)"
    print(row(figure, f"{gap:.1e}", "<= 1e-5", gap <= 1e-5))


def has_transformers() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def print_versus_hf(figures: dict) -> None:
    """The four figures of ours against transformers' own models (src/bench/pretrained.py)."""
    version = f"transformers {figures['transformers']}"
    seconds = figures["gpt2_forward_s"]
    detail = f"{seconds['ours']:.2f} s vs {seconds['hf']:.2f} s; {version}"
    ratio = figures["gpt2_forward_vs_hf"]
    print(
        row(
            "GPT-2 small forward, 4 x 256 tokens, ours vs GPT2LMHeadModel",
            f"{ratio:.2f} ({detail})",
            ">= 1.10",
            ratio >= 1.10,
        )
    )
    seconds = figures["gpt2_sample_s"]
    ratio = figures["gpt2_sample_vs_hf"]
    detail = f"{seconds['ours']:.2f} s vs {seconds['hf']:.2f} s"
    figure = "GPT-2 small, 64 new tokens sampled with a KV cache, ours vs generate()"
    print(row(figure, f"{ratio:.2f} ({detail})", ">= 1.20", ratio >= 1.20))
    seconds = figures["bert_step_s"]
    ratio = figures["bert_step_vs_hf"]
    detail = f"{seconds['ours']:.2f} s vs {seconds['hf']:.2f} s"
    figure = "BERT-base fine-tuning step, 16 x 128, ours vs BertForSequenceClassification"
    print(row(figure, f"{ratio:.2f} ({detail})", ">= 1.10", ratio >= 1.10))
    seconds, ratio = figures["smollm_forward_s"], figures["smollm_forward_vs_hf"]
    detail = (
        f"{seconds['ours']:.2f} s vs {seconds['hf']:.2f} s; matrix products and attention are "
        f"{figures['smollm_kernel_share']:.0%} of ours, so on PyTorch's kernels the ceiling here is "
        f"{figures['smollm_ceiling_vs_hf']:.3f}"
    )
    figure = "SmolLM-135M-shaped forward (9 heads, 3 KV heads), 4 x 256 tokens, ours vs LlamaForCausalLM"
    print(row(figure, f"{ratio:.2f} ({detail})", ">= 1.10", ratio >= 1.10))
    cache, ratio, share = figures["smollm_cache_mib"], figures["smollm_cache_ratio"], figures["smollm_kv_share"]
    detail = f"{cache['grouped']:.1f} MiB vs {cache['multi_head']:.1f} MiB after 256 tokens"
    figure = "its KV cache, 3 KV heads vs 9 (the same model multi-head)"
    print(row(figure, f"{ratio:.3f} ({detail})", f"<= {share:.3f}", ratio <= share + 1e-9))
    peak = figures["gpt2_forward_peak_mib"]
    ratio = figures["gpt2_memory_vs_hf"]
    detail = f"{peak['ours']:.0f} MiB vs {peak['hf']:.0f} MiB above the weights"
    print(
        row(
            "peak memory of that GPT-2 forward, ours vs transformers", f"{ratio:.2f} ({detail})", "<= 1.0", ratio <= 1.0
        )
    )


if __name__ == "__main__":
    main()
