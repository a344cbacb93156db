"""Every documented command with a pretrained model (`ckpt=hf:<model>`, `model.pretrained=<model>`) runs here,
offline: the hub names the pages use (gpt2, bert-base-uncased, Helsinki-NLP/opus-mt-de-en) are tiny random-weight
models of their family, built by `transformers` itself and laid out in a model-hub cache as huggingface_hub
writes one, so the commands take the real hub code path; `<the fine-tuned run>` is a run fine-tuned here."""

from __future__ import annotations

import shlex
import shutil

import pytest

from tests.e2e.conftest import check

from .commands import of_kind, unique
from .conftest import copy_run, run_here, sized, train, write_data_files

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")

from tests.pretrained.conftest import save, tiny_bert, tiny_gpt2, tiny_marian  # noqa: E402
from tests.pretrained.hf_tokenizers import (  # noqa: E402
    save_bert_tokenizer,
    save_gpt2_tokenizer,
    save_marian_tokenizer,
)

PRETRAINED = unique(of_kind("pretrained"))
REVISION = "0" * 40


def cache(home, name: str, model, save_tokenizer) -> None:
    """`name` in HF_HOME's hub cache, as a download leaves it: models--<org>--<name>/snapshots/<rev>, refs/main."""
    repo = home / "hf" / "hub" / ("models--" + name.replace("/", "--"))
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "refs").mkdir(parents=True)
    save(model, repo / "snapshots" / REVISION, save_tokenizer)
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def hub(home):
    cache(home, "gpt2", tiny_gpt2(n_positions=512), save_gpt2_tokenizer)
    cache(home, "bert-base-uncased", tiny_bert(num_labels=2, max_position_embeddings=512), save_bert_tokenizer)
    cache(home, "Helsinki-NLP/opus-mt-de-en", tiny_marian(max_position_embeddings=512), save_marian_tokenizer)
    return home


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, hub, data):
    made = tmp_path_factory.mktemp("fine_tuned")
    return train(
        made, hub, "task=classification", f"task.train_path={data / 'sst2.tsv'}", "model.pretrained=bert-base-uncased"
    )


def test_the_pages_have_pretrained_commands():
    assert len(PRETRAINED) >= 6, [c.line for c in PRETRAINED]


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
