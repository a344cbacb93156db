"""The causal analyses through src.analyze on each pretrained family, with a pairs file (GPT-2, Marian, BERT) and on
a task's data (the logit lens of GPT-2): the files they write, and what the first layer's residual stream must give.

A pair that differs in one token differs, entering the first layer, only at that token's position: patching the
clean stream in there restores the clean run exactly (fraction 1), and patching any other position of it changes
nothing (fraction 0). That holds for every family whatever its weights, so it is checked on each."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import run_in_process

# (family fixture, the pairs file's lines, the stack whose first layer is read, the position that differs)
PAIRS = {
    "gpt2": (["the cat sat on\tthe cot sat on\t the\ts"], "decoder", 3),
    "marian": (["the cat\tthe mat\tthe\tThe"], "encoder", 2),
    "bert": (["the cat sat\tthe mat sat\t1\t0"], "encoder", 2),
}


def first_layer_rows(out, stack: str) -> dict[int, float]:
    """position -> fraction restored, of resid_pre entering the stack's first layer."""
    with open(out / "patching.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["family"] == "resid_pre" and r["layer"] == "0"]
    return {int(r["position"]): float(r["restored"]) for r in rows if r["site"].startswith(stack)}


@pytest.mark.parametrize("family", list(PAIRS))
def test_patching_a_pretrained_model_on_a_pairs_file_restores_exactly_at_the_changed_token(family, request, tmp_path):
    directory = request.getfixturevalue(f"{family}_dir")
    lines, stack, changed = PAIRS[family]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\ufeff" + "\n".join(lines) + "\r\n")  # a byte-order mark and CRLF, as some editors save
    out = tmp_path / "patching"
    site = {"gpt2": "decoder_self", "marian": "cross", "bert": "encoder_self"}[family]
    paths = [f"senders=[{'encoder_self' if family != 'gpt2' else site}:0:0]", f"receivers=[{site}:1:*]"]
    code, stdout, err = run_in_process(
        "src.analyze", f"ckpt=hf:{directory}", "analysis=patching", f"pairs={pairs}", f"out={out}", *paths
    )
    assert code == 0, err
    receivers = [
        h for h in json.loads((out / "summary.json").read_text())["heads_restored"] if h.startswith(f"{site}:1:")
    ]
    with open(out / "paths.csv") as f:  # the sender into every head of the receiving layer
        found = [(row["receiver"], row["channel"]) for row in csv.DictReader(f)]
    # an encoder head reaches a cross-attention through its keys and values only (its query reads the decoder)
    channels = ("k", "v") if site == "cross" else ("q", "k", "v")
    assert found == [(receiver, channel) for receiver in receivers for channel in channels]
    assert {"report.md", "patching.csv", "summary.json", "resid_pre.png", "heads.png", "attribution.png"} <= {
        p.name for p in out.iterdir()
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 1 and summary["metric"] == "logit_diff" and summary["clean"] != summary["corrupted"]
    restored = first_layer_rows(out, stack)
    # float32, and a tiny random model's clean-corrupted difference can be small (Marian's: 0.015): the fractions
    # hold to the rounding of the patched runs' batched forward passes
    assert restored[changed] == pytest.approx(1.0, abs=1e-3)
    assert all(abs(value) < 1e-3 for position, value in restored.items() if position != changed)


def test_a_pairs_file_that_cannot_be_patched_is_refused_naming_the_line(gpt2_dir, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    out = tmp_path / "patching"
    for lines, message in [
        ("the cat sat\tthe dog sat\t the\ts\n", "line 1: the clean text is 8 tokens and the corrupted one 9"),
        ("the cat\tthe cot\t park\ts\n", "line 1: the clean answer ' park' is 5 tokens"),
        ("the cat\tthe cot\n", "line 1 has 2 tab-separated fields"),
        ("\nthe cat\tthe cat\t the\ts\n", "line 2: the clean and corrupted texts are the same"),
        ("the cat\tthe cot\t the\t the\n", "line 1: the two answers are the same"),
        (
            "the cat sat " * 12 + "\t" + "the cot sat " * 12 + "\t the\ts\n",
            "line 1: the clean text is 86 tokens and the model reads at most 64",
        ),
    ]:
        pairs.write_text(lines)
        args = ("src.analyze", f"ckpt=hf:{gpt2_dir}", "analysis=patching", f"pairs={pairs}", f"out={out}")
        code, _, err = run_in_process(*args)
        assert code == 2 and message in err, err
        assert not out.exists()


def test_the_logit_lens_of_gpt2_on_a_task_ends_at_the_models_own_loss(gpt2_dir, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    out = tmp_path / "lens"
    task = ["task=char_lm", f"task.path={text}", "task.block_size=16"]
    code, stdout, err = run_in_process(
        "src.analyze", f"ckpt=hf:{gpt2_dir}", "analysis=lens", *task, f"out={out}", "max_examples=8"
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lens"][-1]["loss"] == pytest.approx(summary["loss"], rel=1e-5)  # the last layer is the output
    assert summary["attribution_undefined"] is None  # GPT-2 is pre-LN: the shares are defined
    total = sum(summary["attribution"].values())
    assert total == pytest.approx(summary["target_logit"], rel=1e-4, abs=1e-4)  # they sum to the target's logit


def test_the_logit_lens_of_marian_and_bert_ends_at_their_own_loss_with_attribution_refused(
    marian_dir, bert_dir, tmp_path
):
    """Both are post-LN (and BERT's pooler applies tanh): the lens alone, said before the work. Marian's decoder is
    read through its unembedding and final bias, BERT's encoder through its pooler and classifier."""
    from tests.pretrained.test_commands import parallel_files

    tsv = tmp_path / "labels.tsv"
    tsv.write_text("".join(f"a good film {i}\t1\nthe bad film {i}\t0\nso so {i}\t2\n" for i in range(6)))
    tasks = {
        "marian": (marian_dir, parallel_files(tmp_path), "decoder"),
        "bert": (bert_dir, ["task=classification", f"task.train_path={tsv}", "task.max_len=32"], "encoder"),
    }
    for family, (directory, task, stack) in tasks.items():
        out = tmp_path / f"lens-{family}"
        code, stdout, err = run_in_process("src.analyze", f"ckpt=hf:{directory}", "analysis=lens", *task, f"out={out}")
        assert code == 0, err
        assert "warning: direct logit attribution needs a pre-LN model" in err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stack"] == stack and summary["attribution"] == {} and summary["attribution_undefined"]
        layers = [row["layer"] for row in summary["lens"]]
        assert layers == ["embed", 0, 1]  # the tiny models' two layers, after what the stack receives
        assert summary["lens"][-1]["loss"] == pytest.approx(summary["loss"], rel=1e-5)
        assert summary["lens"][-1]["top1_agreement"] == 1.0


def test_a_word_the_vocabulary_does_not_know_is_refused_not_read_as_unknown(bert_dir, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    out = tmp_path / "patching"
    for line, message in [
        # BERT's tiny vocabulary has no such character
        ("the cat sat\tthe 猫 sat\t1\t0\n", "line 1: the corrupted text 'the 猫 sat' has 1 part(s) the model's"),
        ("the cat sat\tthe mat sat\t1\t1 \n", "line 1: both answers read as the label 'LABEL_1'"),
    ]:
        pairs.write_text(line)
        code, _, err = run_in_process(
            "src.analyze", f"ckpt=hf:{bert_dir}", "analysis=patching", f"pairs={pairs}", f"out={out}"
        )
        assert code == 2 and message in err, err
        assert not out.exists()


def test_induction_heads_of_a_pretrained_model_need_no_task_and_an_encoder_is_refused_first(
    gpt2_dir, bert_dir, tmp_path
):
    """The repeated random sequences are the model's own tokens: no task= is asked for; their half is the model's
    positions' (64 / 2). A random-weight model has no previous-token head: none clears twice chance."""
    out = tmp_path / "induction"
    code, _, err = run_in_process("src.analyze", f"ckpt=hf:{gpt2_dir}", "analysis=induction", f"out={out}")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["half"] == 32 and summary["previous_token_heads"] == [] and summary["chance"]["previous_token"] > 0
    refused = tmp_path / "refused"
    code, _, err = run_in_process("src.analyze", f"ckpt=hf:{bert_dir}", "analysis=induction", f"out={refused}")
    assert code == 2 and "analysis=induction reads a decoder-only model's self-attention" in err
    assert not refused.exists()
