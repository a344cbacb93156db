"""TransformerLens's side of the activation-patching comparison (src/bench/patching.py): a script run by the python
of a throw-away environment that has TransformerLens, never by the project's own (TransformerLens is not one of the
project's dependencies). It imports only the standard library, torch, transformers and transformer_lens.

    python transformer_lens_side.py --model DIR --inputs FILE --out DIR [--threads N] [--dtype float32|float64]
                                    [--repeats N] [--every N]

DIR: a GPT-2 as transformers' save_pretrained writes it. FILE (json): {"clean": [[ids]], "corrupted": [[ids]],
"answers": [[right, wrong], ...]}, one answer pair per row. The model is TransformerLens's HookedTransformer built
from that folder by TransformerLens's own GPT-2 weight conversion, with none of its weight processing (no folded
LayerNorm, no centring), so it computes what GPT2LMHeadModel computes. The metric is the logit difference of the
two answers at the last position, mean over the rows. Patched in the corrupted run (denoising) from the clean one:
- get_act_patch_resid_pre: the residual stream entering each layer, by layer x position;
- get_act_patch_attn_head_out_by_pos: each head's output z (hook_z, before W_O), by layer x position x head.

--every N patches every N-th place of each table (flattened, layer-major) through the same functions, given
those places (`index_df`): each patch is one forward pass of the same cost, so N times the time of that is the
time of the whole table, in a N-th of the wait.

Writes OUT/results.json: each table's metric values (flattened) and their places in the flattened table, the tables'
shapes, the clean and corrupted metric, per repeat the seconds of the clean run with its cache and the corrupted
run (runs_s) and of the patching (patch_s), the patches run and in the whole sweep, and the versions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from importlib import metadata
from pathlib import Path


def hooked_gpt2(model_dir: str, dtype):
    import transformers
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = transformers.GPT2LMHeadModel.from_pretrained(model_dir, dtype=dtype).eval()
    c = hf.config
    cfg = HookedTransformerConfig(  # the fields TransformerLens's own loader reads from a GPT2Config
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer,
        n_ctx=c.n_positions,
        eps=c.layer_norm_epsilon,
        d_vocab=c.vocab_size,
        act_fn=c.activation_function,
        use_attn_scale=getattr(c, "scale_attn_weights", True),
        scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx,
        normalization_type="LN",
        original_architecture="GPT2LMHeadModel",
        device="cpu",
        dtype=dtype,
        default_prepend_bos=False,
    )
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model.eval()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=1, help="timed sweeps (the tables are the last one's)")
    parser.add_argument("--every", type=int, default=1, help="patch every N-th place of each table (1: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # generic_activation_patch draws a progress bar per table

    import torch
    import transformers
    from transformer_lens import patching

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.set_default_dtype(dtype)  # generic_activation_patch stores the metric in a tensor of the default dtype
    model = hooked_gpt2(args.model, dtype)
    given = json.loads(Path(args.inputs).read_text())
    clean, corrupted = torch.tensor(given["clean"]), torch.tensor(given["corrupted"])
    answers = torch.tensor(given["answers"])  # (B, 2)
    rows = torch.arange(clean.size(0))

    def logit_difference(logits):
        last = logits[:, -1]
        return (last[rows, answers[:, 0]] - last[rows, answers[:, 1]]).mean()

    layers, heads, length = model.cfg.n_layers, model.cfg.n_heads, clean.size(1)
    tables = {  # name -> (the function, the shape of its whole table)
        "resid_pre": (patching.get_act_patch_resid_pre, (layers, length)),
        "head_out_by_pos": (patching.get_act_patch_attn_head_out_by_pos, (layers, length, heads)),
    }
    runs_s, patch_s, values, places = [], [], {}, {}
    with torch.no_grad():
        for _ in range(args.repeats):
            start = time.perf_counter()
            clean_logits, clean_cache = model.run_with_cache(clean)
            clean_value = logit_difference(clean_logits).item()
            corrupted_value = logit_difference(model(corrupted)).item()
            runs_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for name, (function, shape) in tables.items():
                if args.every == 1:  # the whole table, as the function is documented to be called
                    values[name] = function(model, corrupted, clean_cache, logit_difference).flatten()
                    places[name] = list(range(values[name].numel()))
                else:  # every `every`-th patch of the table flattened: the same function, given the rows to patch
                    axes = ["layer", "pos", "head"][: len(shape)]
                    rows_df = patching.make_df_from_ranges(list(shape), axes).iloc[:: args.every]
                    values[name] = function(
                        model, corrupted, clean_cache, logit_difference, index_axis_names=None, index_df=rows_df
                    )
                    places[name] = list(range(0, math.prod(shape), args.every))
            patch_s.append(time.perf_counter() - start)
    result = {
        **{name: values[name].tolist() for name in tables},  # the metric with each patch run, flattened
        **{f"{name}_places": places[name] for name in tables},  # where in the flattened table each one is
        "shapes": {name: list(shape) for name, (_, shape) in tables.items()},
        "clean": clean_value,
        "corrupted": corrupted_value,
        "runs_s": runs_s,  # the clean run with its cache and the corrupted run
        "patch_s": patch_s,  # both tables
        "patches_run": sum(len(p) for p in places.values()),
        "patches": sum(math.prod(shape) for _, shape in tables.values()),
        "threads": torch.get_num_threads(),
        "versions": {
            "transformer_lens": metadata.version("transformer_lens"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
