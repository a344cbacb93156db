"""Every documented command with a pretrained model (`ckpt=hf:<model>`, `model.pretrained=<model>`) runs here,
offline: the hub names the pages use (gpt2, bert-base-uncased, Helsinki-NLP/opus-mt-de-en, HuggingFaceTB/SmolLM-135M,
t5-small, google/flan-t5-small) are tiny random-weight models of their family with a tokenizer in the family's layout
(tests/pretrained/conftest.py), built by `transformers` itself and laid out in a model-hub cache as huggingface_hub
writes one, so the commands take the real hub code path; `<the fine-tuned run>` is a run fine-tuned here. A hub name
the pages use that is not cached here fails its command (the hub is offline): every name has its model below."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest

from tests.e2e.conftest import check

from .commands import of_kind, unique
from .conftest import copy_run, run_here, sized, train, write_data_files

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")

from tests.pretrained.conftest import (  # noqa: E402
    PADDED,
    VOCAB,
    save,
    tiny_bert,
    tiny_gpt2,
    tiny_marian,
    tiny_t5,
    tiny_tokenized_decoder,
)
from tests.pretrained.hf_tokenizers import (  # noqa: E402
    SMOLLM_VOCAB,
    save_bert_tokenizer,
    save_gpt2_tokenizer,
    save_marian_tokenizer,
    save_smollm_tokenizer,
    save_t5_tokenizer,
)

PRETRAINED = unique(of_kind("pretrained"))
REVISION = "0" * 40


def cache(home, name: str, model, save_tokenizer, tokens: int = VOCAB) -> None:
    """`name` in HF_HOME's hub cache, as a download leaves it: models--<org>--<name>/snapshots/<rev>, refs/main; its
    tokenizer of `tokens` tokens (fewer than the model's rows for T5, as T5's)."""
    repo = home / "hf" / "hub" / ("models--" + name.replace("/", "--"))
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "refs").mkdir(parents=True)
    save(model, repo / "snapshots" / REVISION, save_tokenizer, tokens)
    (repo / "refs" / "main").write_text(REVISION)


# The hub names the pages use -> (the tiny model, its tokenizer's writer, its tokenizer's size). Positions: 512, so
# that the pages' block_size=256 fits (GPT-2's 1,024, SmolLM's 2,048; T5's relative positions have no limit).
# SmolLM-135M is a Llama (model_type llama) with SmolLM's tokenizer; t5-small's config names its task prefixes.
HUB_MODELS = {
    "gpt2": (lambda: tiny_gpt2(n_positions=512), save_gpt2_tokenizer, VOCAB),
    "bert-base-uncased": (lambda: tiny_bert(num_labels=2, max_position_embeddings=512), save_bert_tokenizer, VOCAB),
    "Helsinki-NLP/opus-mt-de-en": (lambda: tiny_marian(max_position_embeddings=512), save_marian_tokenizer, VOCAB),
    "HuggingFaceTB/SmolLM-135M": (
        lambda: tiny_tokenized_decoder("smollm", max_position_embeddings=512),
        save_smollm_tokenizer,
        SMOLLM_VOCAB,
    ),
    "t5-small": (lambda: tiny_t5("t5"), save_t5_tokenizer, VOCAB - PADDED),
    "google/flan-t5-small": (lambda: tiny_t5("flan"), save_t5_tokenizer, VOCAB - PADDED),
}


def hub_names(line: str) -> set[str]:
    """The hub names a command reads (`ckpt=hf:<name>`, `model.pretrained=<name>`), local paths and placeholders
    aside."""
    names = set(re.findall(r"(?:ckpt=hf:|model\.pretrained=)(\S+)", line))
    return {name for name in names if not name.startswith(("<", ".", "/"))}


@pytest.fixture(scope="module")
def hub(home):
    for name, (model, save_tokenizer, tokens) in HUB_MODELS.items():
        cache(home, name, model(), save_tokenizer, tokens)
    return home


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, hub, data):
    made = tmp_path_factory.mktemp("fine_tuned")
    return train(
        made, hub, "task=classification", f"task.train_path={data / 'sst2.tsv'}", "model.pretrained=bert-base-uncased"
    )


def test_the_pages_have_pretrained_commands_and_each_hub_name_they_use_is_cached_here():
    """Without its tiny model a command would fail offline, not show that the family runs: every name is cached,
    and the pages show the Llama family and T5 as well as GPT-2, BERT and Marian."""
    assert len(PRETRAINED) >= 6, [c.line for c in PRETRAINED]
    used = set().union(*(hub_names(c.line) for c in PRETRAINED))
    assert used <= set(HUB_MODELS), used - set(HUB_MODELS)
    assert {"HuggingFaceTB/SmolLM-135M", "t5-small", "google/flan-t5-small"} <= used


@pytest.mark.parametrize("command", PRETRAINED, ids=[c.id for c in PRETRAINED])
def test_a_documented_pretrained_command_runs(command, tmp_path, hub, fine_tuned):
    write_data_files(tmp_path)
    line = command.line
    if "<the fine-tuned run>" in line:
        line = line.replace("<the fine-tuned run>", str(copy_run(fine_tuned, tmp_path)))
    assert "<" not in line, f"a placeholder the test cannot fill: {line}"
    words = shlex.split(line)
    args = words[3:]
    if command.module == "src.run":
        args = [*sized(command, args, resumes=False), f"hydra.run.dir={tmp_path / 'run'}"]
    done = check(run_here(["-m", command.module, *args], tmp_path, hub))
    assert "error:" not in done.stderr, done.stderr
