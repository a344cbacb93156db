"""Benchmarks: programs that print measured figures beside the project's goals (`make bench`, `make bench-quality`).

step.py     a training step of the scratch model against torch.nn.Transformer; FLOP/s against the matmul peak
loop.py     the whole src.run loop against a bare PyTorch loop; the dashboards' cost; launch to first step
quality.py  the two quality experiments (Tiny Shakespeare, Multi30k) trained and scored on real data
gpu.py      every GPU figure in one go (`make bench-gpu`), each step in its own process under a time limit
"""
