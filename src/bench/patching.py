"""Activation patching (src/analysis/patching.py) against TransformerLens's, on GPT-2 small (the real shape, random
weights: the hub is not needed): the same sweep by both, their results compared and their times side by side.

    python -m src.bench.patching [--quick] [--threads N] [--patches-per-pass N ...]

The sweep is the two tables of TransformerLens's `get_act_patch_*` functions that most patching studies start with:
the residual stream entering each layer (resid_pre, layer x position) and each head's output (z, before W^O:
TransformerLens's hook_z; layer x position x head), patched from the clean run into the corrupted one, scored by the
logit difference of two answers at the last position. The prompt pair is IOI-like (Wang et al. 2022): 15 tokens, the
names changed in the corrupted one. Both sides run on this machine with the same torch thread count, one after the
other; TransformerLens in its own process (below), its time being that of its sweep alone (not its import).

TransformerLens is never a dependency of the project: it is installed into a throw-away environment under the
repository's git-ignored .cache/ folder, once per TransformerLens, Python, torch and transformers version
(`transformer_lens_python`). That environment reads torch, transformers and everything else the project already has
from the project's own environment (a .pth file naming its site-packages), and pip adds only what TransformerLens
needs beyond them (einops, jaxtyping, datasets, ...), pinned to the versions the project has: no second torch.
src/bench/transformer_lens_side.py is the script its python runs.

Figures: seconds of each sweep, TransformerLens's / ours (goal >= 3), the largest absolute difference of the values
both computed (goal <= 1e-5), our time at each patches_per_pass tried, and the machine's load average at the end (a
load above the thread count says something else ran meanwhile). TransformerLens runs one forward pass per patch
(2,340 here: about 8 minutes on 2 cores), so --quick times every 12th patch of each table and scales that to the
whole (each pass costs the same); without --quick it runs the whole sweep once, between two of ours.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[2]
TL_VERSION = "3.9.0"  # the last release with HookedTransformer (4.0 replaced it by TransformerBridge)
CACHE = ROOT / ".cache" / "transformer_lens"
SIDE_SCRIPT = Path(__file__).with_name("transformer_lens_side.py")
# What pip says when it cannot reach the package index (as opposed to a dependency conflict, which is a bug here).
UNREACHABLE = (
    "(from versions: none)",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
)
# GPT-2 small: what transformers' GPT2Config() is, spelled out
GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
PATCHES_PER_PASS = (32, 64)  # the settings of activation_patching timed (its default is 32)
LENGTH = 15  # an IOI prompt: "When Mary and John went to the store, John gave a drink to" is 15 GPT-2 tokens


class TransformerLensUnavailable(RuntimeError):
    """The throw-away environment could not be built. `offline`: because the package index is out of reach."""

    def __init__(self, message: str, offline: bool):
        super().__init__(message)
        self.offline = offline


# ---------------------------------------------------------------------------------------------------------------------
# the throw-away environment


def environment_key() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"tl{TL_VERSION}-py{version}-torch{metadata.version('torch')}-transformers{metadata.version('transformers')}"


def transformer_lens_python(cache: Path = CACHE) -> Path:
    """The python of an environment with TransformerLens TL_VERSION, built on first use (10-20 s: the wheels it
    needs beyond the project's, about 60 MB, from the package index) and reused after. Several processes asking at
    once build it once (a file lock). TransformerLensUnavailable when it cannot be built."""
    cache.mkdir(parents=True, exist_ok=True)
    home = cache / environment_key()
    python = home / "bin" / "python"
    ready = home / "ready.json"
    with open(cache / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.is_file():
            seconds = _build(home)
            ready.write_text(json.dumps({"transformer_lens": TL_VERSION, "install_s": seconds}))
    return python


def install_seconds(cache: Path = CACHE) -> float | None:
    """How long building the environment took, when it has been built."""
    ready = cache / environment_key() / "ready.json"
    return json.loads(ready.read_text())["install_s"] if ready.is_file() else None


def _build(home: Path) -> float:
    import shutil

    start = time.perf_counter()
    shutil.rmtree(home, ignore_errors=True)  # a build that stopped half-way
    # An environment of the interpreter the project's was made from, without pip of its own: the project's pip
    # installs into it (`pip --python`).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, capture_output=True)
    python = home / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "_project_packages.pth").write_text("".join(f"{path}\n" for path in ours))
    constraints = home / "constraints.txt"  # every package the project has stays at its version
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in _installed().items()))
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check"]
    command += ["--quiet", "-c", str(constraints), f"transformer_lens=={TL_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        said = (result.stdout + result.stderr).strip()
        offline = any(sign in said for sign in UNREACHABLE)
        raise TransformerLensUnavailable(
            f"pip could not install transformer_lens=={TL_VERSION} into a throw-away environment:\n{said[-2000:]}",
            offline,
        )
    return time.perf_counter() - start


def _installed() -> dict[str, str]:
    """name -> version of every distribution this process sees but the project itself (an editable install)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower().replace("_", "-") != "transformer-ablations":
            found.setdefault(name.lower(), dist.version)
    return found


# ---------------------------------------------------------------------------------------------------------------------
# the model and the prompt pair


def random_gpt2(seed: int = 0, **shape):
    """A GPT2LMHeadModel with random weights (transformers' own initialisation, then every bias and norm moved
    off its zero or one, so that one mapped to the wrong place shows). `shape`: GPT2Config fields (GPT-2 small's
    unless given)."""
    import transformers

    shape = {**GPT2_SMALL, **shape}
    last = shape["vocab_size"] - 1  # <|endoftext|>: bos, eos and our pad
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(bos_token_id=last, eos_token_id=last, **shape))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * (0.1 if "ln" in name else 0.02))
    return model.eval()


@dataclass
class PromptPair:
    clean: Tensor  # (B, T) token ids
    corrupted: Tensor  # (B, T): the clean tokens with the "names" changed
    answers: Tensor  # (B, 2): the right and the wrong answer's id, per row

    def batches(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The two batches of our task kind lm (the answers ride along: repeated with the rows)."""
        return (
            {"tgt_in": self.clean, "answers": self.answers},
            {"tgt_in": self.corrupted, "answers": self.answers},
        )

    def as_json(self) -> str:
        return json.dumps(
            {"clean": self.clean.tolist(), "corrupted": self.corrupted.tolist(), "answers": self.answers.tolist()}
        )


def ioi_like_pair(vocab: int, length: int = LENGTH, batch: int = 1, seed: int = 0) -> PromptPair:
    """Random tokens with an IOI prompt's layout: the two names (positions 2 and 4) and the repeated one (length
    - 5) are different tokens in the corrupted prompt (the ABC corruption). Never the last id: GPT-2's
    <|endoftext|>, which pads a trailing run."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab - 1, (batch, length), generator=g)
    corrupted = clean.clone()
    for position in (2, 4, length - 5):
        corrupted[:, position] = (clean[:, position] + torch.randint(1, vocab - 1, (batch,), generator=g)) % (vocab - 1)
    answers = torch.randint(0, vocab - 1, (batch, 2), generator=g)
    answers[:, 1] = torch.where(answers[:, 1] == answers[:, 0], (answers[:, 0] + 1) % (vocab - 1), answers[:, 1])
    return PromptPair(clean, corrupted, answers)


def logit_difference(logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """(B,): the right answer's logit minus the wrong one's, at the last position."""
    last, answers = logits[:, -1], batch["answers"]
    rows = torch.arange(last.size(0), device=last.device)
    return last[rows, answers[:, 0]] - last[rows, answers[:, 1]]


def the_sweep(layers: int, heads: int, length: int):
    """Our patches, in the order of TransformerLens's tables flattened: resid_pre (layer, position), then z (layer,
    position, head)."""
    from src.analysis.patching import Patch
    from src.model.names import DECODER_SELF, layer_name
    from src.model.points import point_name

    # a decoder-only model's layers each begin with the decoder's self-attention: resid_pre there is what the layer
    # receives, TransformerLens's resid_pre, and z its heads' outputs
    resid = [
        Patch(point_name("resid_pre", layer_name(DECODER_SELF, layer)), position)
        for layer in range(layers)
        for position in range(length)
    ]
    z = [
        Patch(point_name("z", layer_name(DECODER_SELF, layer)), position, head)
        for layer in range(layers)
        for position in range(length)
        for head in range(heads)
    ]
    return resid, z


# ---------------------------------------------------------------------------------------------------------------------
# the two sides


def our_sweep(model_dir: Path, pair: PromptPair, dtype: torch.dtype, patches_per_pass: int, repeats: int = 1) -> dict:
    """Our activation_patching over the sweep: the two tables, the clean and corrupted metric, seconds per repeat
    (the model loaded once, before)."""
    from src.analysis.patching import activation_patching
    from src.model.config import ARCHITECTURES
    from src.pretrained import load_pretrained

    pretrained = load_pretrained(str(model_dir), dtype=dtype)
    cfg = pretrained.config
    kind = ARCHITECTURES[cfg.arch].task_kind  # a decoder-only model's (lm): the kind of pair.batches()
    resid, z = the_sweep(cfg.dec_layers, cfg.heads, pair.clean.size(1))
    clean, corrupted = pair.batches()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        last = torch.full((pair.clean.size(0),), pair.clean.size(1) - 1)  # the position the metric reads
        result = activation_patching(
            pretrained.model, kind, clean, corrupted, resid + z, logit_difference, patches_per_pass=patches_per_pass,
            scored=last,
        )  # fmt: skip
        seconds.append(time.perf_counter() - start)
    length = pair.clean.size(1)
    return {
        "resid_pre": result.values[: len(resid)].view(cfg.dec_layers, length),
        "head_out_by_pos": result.values[len(resid) :].view(cfg.dec_layers, length, cfg.heads),
        "clean": result.clean,
        "corrupted": result.corrupted,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
    }


TABLES = ("resid_pre", "head_out_by_pos")


def their_sweep(
    python: Path,
    model_dir: Path,
    pair: PromptPair,
    dtype: torch.dtype,
    threads: int,
    repeats: int = 1,
    every: int = 1,
) -> dict:
    """TransformerLens's sweep, run by the throw-away environment's python (transformer_lens_side.py): each table's
    values at the places patched (flattened; every `every`-th one) and, per repeat, the seconds of the whole sweep
    (with every > 1: the unpatched runs plus the patching scaled to the whole tables, each patch being one forward
    pass of the same cost)."""
    with tempfile.TemporaryDirectory() as scratch:
        inputs, out = Path(scratch) / "inputs.json", Path(scratch) / "out"
        inputs.write_text(pair.as_json())
        command = [str(python), str(SIDE_SCRIPT), "--model", str(model_dir), "--inputs", str(inputs)]
        command += ["--out", str(out), "--threads", str(threads), "--dtype", str(dtype).removeprefix("torch.")]
        command += ["--repeats", str(repeats), "--every", str(every)]
        env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1", OMP_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch)
        if result.returncode != 0:
            raise RuntimeError(f"transformer_lens_side.py failed:\n{(result.stdout + result.stderr)[-3000:]}")
        figures = json.loads((out / "results.json").read_text())
    for table in TABLES:
        figures[table] = torch.tensor(figures[table], dtype=torch.float64)
    scale = figures["patches"] / figures["patches_run"]
    figures["seconds"] = [runs + patched * scale for runs, patched in zip(figures["runs_s"], figures["patch_s"])]
    figures["median_s"] = statistics.median(figures["seconds"])
    return figures


def differences(ours: dict, theirs: dict) -> dict[str, float]:
    """The largest absolute difference of each table (at the places TransformerLens patched), and of the clean and
    of the corrupted metric."""
    found = {}
    for table in TABLES:
        mine = ours[table].double().flatten()[theirs[f"{table}_places"]]
        found[table] = (mine - theirs[table]).abs().max().item()
    found["clean"] = abs(ours["clean"] - theirs["clean"])
    found["corrupted"] = abs(ours["corrupted"] - theirs["corrupted"])
    return found


def save_model(model, directory: Path, dtype: torch.dtype = torch.float32) -> Path:
    model.to(dtype).save_pretrained(directory)  # config.json + model.safetensors
    return directory


# ---------------------------------------------------------------------------------------------------------------------
# the benchmark


def measure(
    quick: bool = False, threads: int | None = None, patches_per_pass: tuple[int, ...] = PATCHES_PER_PASS
) -> dict:
    """GPT-2 small, one IOI-like pair, float32: our whole sweep at each patches_per_pass (the fastest is the
    figure; timed before and after TransformerLens's, the median) and TransformerLens's (the whole sweep once;
    --quick: every 12th patch of each table, scaled to the whole), the ratio, and the largest difference of the
    values both computed."""
    threads = threads or torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    repeats, every = (1, 12) if quick else (2, 1)
    try:
        python = transformer_lens_python()
        pair = ioi_like_pair(GPT2_SMALL["vocab_size"])
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = save_model(random_gpt2(), Path(scratch) / "gpt2")
            ours = {n: our_sweep(model_dir, pair, torch.float32, n, repeats) for n in patches_per_pass}
            theirs = their_sweep(python, model_dir, pair, torch.float32, threads, every=every)
            if not quick:  # TransformerLens's sweep sits between ours: a slow spell of the machine hits both
                for n in patches_per_pass:
                    ours[n]["seconds"] += our_sweep(model_dir, pair, torch.float32, n, repeats)["seconds"]
    finally:
        torch.set_num_threads(before)
    ours_s = {n: statistics.median(figures["seconds"]) for n, figures in ours.items()}
    best = min(ours_s, key=ours_s.__getitem__)
    gap = max(differences(ours[best], theirs).values())
    return {
        "patches": theirs["patches"],
        "tokens": LENGTH,
        "threads": threads,
        "ours_s": ours_s[best],
        "transformer_lens_s": theirs["median_s"],
        "ours_vs_transformer_lens": theirs["median_s"] / ours_s[best],
        "patches_per_pass": best,
        "ours_s_by_patches_per_pass": ours_s,
        "transformer_lens_patches_run": theirs["patches_run"],
        "max_abs_difference": gap,
        "transformer_lens": theirs["versions"]["transformer_lens"],
        "transformer_lens_install_s": install_seconds(),
        "load_average": _load_average(),
    }


def _load_average() -> float | None:
    """The machine's load over the last minute, as the benchmark ends (> threads: something else was running)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one sweep each, TransformerLens's every 12th patch")
    parser.add_argument("--threads", type=int, help="torch threads on both sides (default: torch's)")
    parser.add_argument("--patches-per-pass", type=int, nargs="+", default=list(PATCHES_PER_PASS))
    args = parser.parse_args(argv)
    figures = measure(args.quick, args.threads, tuple(args.patches_per_pass))
    for key, value in figures.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
