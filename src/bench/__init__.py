"""Benchmarks: programs that print measured figures beside the project's goals (`make bench`, `make bench-quality`).

step.py        a training step of the scratch model against torch.nn.Transformer; FLOP/s against the matmul peak
loop.py        the whole src.run loop against a bare PyTorch loop; the dashboards' cost; launch to first step
stacked.py     seeds trained together (hydra/launcher=stacked) against one run
pretrained.py  our GPT-2, BERT and SmolLM-shaped Llama against transformers' own, side by side
decoding.py    decoding speed and KV-cache size of trained runs (the grouped-query attention study)
analysis.py    the head analysis's speed on Multi30k
patching.py    activation patching against TransformerLens's (transformer_lens_side.py: its side, run apart)
quality.py     the two quality experiments (Tiny Shakespeare, Multi30k) trained and scored on real data
gpu.py         every GPU figure in one go (`make bench-gpu`), each step in its own process under a time limit
"""

from src.training.report import show_model_warnings_as_lines

# A benchmark says the model's own warnings (ModelWarning) as the commands do: one `warning:` line
show_model_warnings_as_lines()
