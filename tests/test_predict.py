"""src.predict on a whole file and src.eval's sacrebleu score, on a tiny translation run trained here: the file is
translated line for line in batches, and the BLEU that eval reports is sacrebleu's own score of those lines.

And for every task kind (a synthetic seq2seq task, translation with bpe, char_lm, classification with the word
tokenizer), predict on the input lines of a split gives what src.eval scored on them: the same line is the same ids
in training, eval and predict (whitespace around a sentence, words outside the vocabulary, cuts), and the outputs are
the ones eval's metrics were computed from."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from sacrebleu.metrics import BLEU

from src.model import EOS_ID, PAD_ID
from src.training.bleu import score_split
from src.training.checkpoint import load_run
from src.training.inference import eval_mode, forward_batch, greedy_decode, predict_labels
from tests.conftest import PYTHON, run_in_process
from tests.e2e.conftest import SMALL_SYNTHETIC, TINY, parallel_lines, run_module

BEAM = ["decode.strategy=beam", "decode.beam_size=3"]


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder) of a tiny German-English run on made-up sentences."""
    root = tmp_path_factory.mktemp("translation")
    for split, n, seed in (("train", 120, 0), ("val", 16, 1), ("test", 24, 2)):
        src, tgt = parallel_lines(n, seed)
        if split == "val":  # a character no training sentence has: the bpe tokenizer reads it as <unk>
            src, tgt = [*src, "ein hund läuft im café"], [*tgt, "a dog runs in the café"]
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    files = [
        f"task.{split}_{side}={root / f'{split}.{lang}'}"
        for split in ("train", "val", "test")
        for side, lang in (("src", "de"), ("tgt", "en"))
    ]
    run_dir = root / "run"
    # long enough for a BLEU of about 10 here, so the comparison below is between real numbers, not zeros
    longer = [o for o in TINY if not o.startswith(("trainer.max_steps=", "model.d_model="))]
    args = ["task=translation", *files, "task.vocab_size=120", "task.max_len=16", *longer]
    args += ["trainer.max_steps=200", "model.d_model=32", "test_after_fit=true", *BEAM]
    code, out, err = run_in_process("src.run", *args, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir / "checkpoints" / "last.ckpt", root


def test_a_file_is_translated_line_for_line_in_batches(translation_run, tmp_path):
    ckpt, data = translation_run
    lines = (data / "test.de").read_text().splitlines()
    source = tmp_path / "in.de"
    source.write_text("\n".join([lines[0], "", *lines[1:5]]) + "\n")  # an empty line keeps its place
    output = tmp_path / "out.en"
    code, out, err = run_in_process(
        "src.predict", f"ckpt={ckpt}", f"input={source}", f"output={output}", "batch_size=2"
    )
    assert code == 0, err
    translated = output.read_text().splitlines()
    assert len(translated) == 6 and translated[1] == "" and all(translated[i] for i in (0, 2, 3, 4, 5))
    assert "1 empty line(s)" in err and "6 lines written" in err
    code, out, err = run_in_process("src.predict", f"ckpt={ckpt}", f"text={lines[3]}")
    assert code == 0 and out.strip() == translated[4]  # the same as translating it alone

    code, out, err = run_in_process("src.predict", f"ckpt={ckpt}", f"input={source}", f"output={output}")
    assert code == 2 and "already exists" in err and output.read_text().splitlines() == translated  # kept


def test_eval_reports_sacrebleu_of_the_beam_translations_with_its_signature(translation_run, tmp_path):
    ckpt, data = translation_run
    hypotheses = tmp_path / "test.hyp.en"
    code, _, err = run_in_process(
        "src.predict", f"ckpt={ckpt}", f"input={data / 'test.de'}", f"output={hypotheses}", *BEAM
    )
    assert code == 0, err
    expected = BLEU().corpus_score(hypotheses.read_text().splitlines(), [(data / "test.en").read_text().splitlines()])

    code, out, err = run_in_process("src.eval", f"ckpt={ckpt}", *BEAM)
    assert code == 0, err
    # One line says what the number is (src.eval prints no other BLEU of the split: tests/test_eval.py).
    line = next(line.strip() for line in out.splitlines() if line.strip().startswith("test/sacrebleu:"))
    assert (
        "sacreBLEU of 24 test sentences, beam search (3 beams" in line and "nrefs:1|case:mixed|eff:no|tok:13a" in line
    )
    assert expected.score > 1.0  # the model translates something
    assert float(line.split(": ")[1].split()[0]) == pytest.approx(expected.score, abs=1e-4)


def test_a_run_with_test_after_fit_scores_its_test_split_with_sacrebleu_and_logs_it(translation_run):
    ckpt, _ = translation_run
    run_dir = ckpt.parents[1]
    log = (run_dir / "run.log").read_text().splitlines()
    # The summary prints the split's one BLEU once, saying what it is (no second, bare sacreBLEU line).
    (line,) = [line.strip() for line in log if line.strip().startswith("test/sacrebleu:")]
    assert "sacreBLEU of 24 test sentences, beam search (3 beams" in line
    assert not any(line.startswith("sacreBLEU on test") for line in log)
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert float(line.split(": ")[1].split()[0]) == pytest.approx(final["test/sacrebleu"], abs=1e-4)
    assert "test/bleu" not in final  # one BLEU per split: the test split has only sacreBLEU's


# --- predict gives what eval scored, for every task kind ----------------------------------------------------------


def run_predict(*args: str) -> tuple[int, str, str, list[str]]:
    """src.predict in this process: (exit status, stdout, stderr, the Python warnings it raised). Inference runs
    without autograd, so no warning about a tensor that requires grad may appear."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_in_process("src.predict", *args)
    return code, out, err, [str(w.message) for w in caught]


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def train(root: Path, *args: str) -> Path:
    run_dir = root / "run"
    code, _, err = run_in_process("src.run", *args, *TINY_RUN, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir / "checkpoints" / "last.ckpt"


TINY_RUN = [o for o in TINY if not o.startswith(("trainer.max_steps=", "trainer.val_check_interval="))] + [
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
]


def test_predict_does_not_report_the_training_splits_it_rebuilds(translation_run, tmp_path):
    """src.predict rebuilds the run's task for its tokenizer; the task's own messages about its splits (pairs cut
    to task.max_len in train, val and test) are not about the text predicted, and were printed before its output.
    A real process: the messages come through the logging Hydra configures."""
    _, data = translation_run
    files = [
        f"task.{split}_{side}={data / f'{split}.{lang}'}"
        for split in ("train", "val", "test")
        for side, lang in (("src", "de"), ("tgt", "en"))
    ]
    run_dir = tmp_path / "run"
    run = run_module("src.run", "task=translation", *files, "task.vocab_size=120", "task.max_len=4", *TINY,
                     f"hydra.run.dir={run_dir}")  # fmt: skip
    assert run.returncode == 0 and "truncated" in run.stdout + run.stderr, run.stderr  # the run says it
    text = (data / "train.de").read_text().splitlines()[0]
    predicted = run_module("src.predict", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"text={text}")
    assert predicted.returncode == 0 and predicted.stdout.strip(), predicted.stderr
    assert "truncated" not in predicted.stdout + predicted.stderr, predicted.stderr


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder) of a sentiment run with the word tokenizer and a vocabulary too small for its
    training words: each `number <i>` occurs once, so most numbers fall outside the vocabulary and are trained as
    <unk>, like the rare words of a real corpus."""
    root = tmp_path_factory.mktemp("classification")
    train_rows = [
        f"{'great good fine' if i % 2 else 'bad awful poor'} movie number {i}\t{'pos' if i % 2 else 'neg'}"
        for i in range(80)
    ]
    (root / "train.tsv").write_text("\n".join(train_rows) + "\n")
    val_rows = [
        "great movie number 77\tpos",  # 77 occurs in training, outside the vocabulary
        "  awful film  \tneg",  # whitespace around the sentence; 'film' never occurs in training
        "Bad Movie\tneg",  # lowercased as in training
        "good " * 12 + "\tpos",  # longer than task.max_len: cut
        "poor plot\tneg",  # 'plot' never occurs in training either
        "fine movie\tpos",
    ]
    (root / "val.tsv").write_text("\n".join(val_rows) + "\n")
    files = [f"task.{split}_path={root / f'{split}.tsv'}" for split in ("train", "val")]
    ckpt = train(
        root,
        "task=classification",
        *files,
        f"task.test_path={root / 'val.tsv'}",
        "task.vocab_size=20",
        "task.max_len=8",
    )
    return ckpt, root


def test_classification_predicts_the_labels_eval_scored(classification_run, tmp_path):
    ckpt, data = classification_run
    rows = [line.rsplit("\t", 1) for line in (data / "val.tsv").read_text().splitlines()]
    sentences = [sentence for sentence, _ in rows]
    source, output = tmp_path / "val.txt", tmp_path / "labels.txt"
    source.write_text("\n".join([*sentences[:2], "", *sentences[2:]]) + "\n")  # a blank line keeps its place
    code, _, err, raised = run_predict(f"ckpt={ckpt}", f"input={source}", f"output={output}", "batch_size=4")
    assert code == 0, err
    assert not [message for message in raised if "requires_grad" in message]
    predicted = output.read_text().splitlines()
    assert len(predicted) == len(sentences) + 1 and predicted.pop(2) == ""
    unknown, cut, empty = warning_lines(err)
    assert "3 of 7 lines have 3 word(s) outside the model's vocabulary, read as <unk>" in unknown
    assert unknown.endswith(": '77', 'film', 'plot'")
    assert "1 of 7 lines are longer than the model reads (8 tokens)" in cut and "1 empty line(s)" in empty

    module, datamodule = load_run(str(ckpt))
    # The same ids as the examples eval scores, and the labels it scored: argmax over its own batches.
    assert [datamodule.encode_input(s)[0] for s in sentences] == [e["src"].tolist() for e in datamodule.task.val]
    scored = torch.cat([predict_labels(module.model, batch) for batch in datamodule.val_dataloader()])
    assert predicted == [datamodule.label_names[c] for c in scored.tolist()]
    code, out, err = run_in_process("src.eval", f"ckpt={ckpt}", "split=val")
    assert code == 0, err
    accuracy = sum(p == label for p, (_, label) in zip(predicted, rows)) / len(rows)
    assert float(out.split("val/acc: ")[1].split()[0]) == pytest.approx(accuracy, abs=1e-4)


def test_classification_reads_a_word_outside_the_vocabulary_as_unk_with_one_warning(classification_run):
    ckpt, _ = classification_run
    code, out, err, raised = run_predict(f"ckpt={ckpt}", "text=great movie number 77")
    assert code == 0, err
    assert out.splitlines()[0] in ("pos", "neg") and len(out.splitlines()) == 3  # the label, then both classes
    assert warning_lines(err) == [
        "warning: text has 1 word(s) outside the model's vocabulary, read as <unk> as its training and evaluation "
        "data read them: '77'"
    ]
    assert not [message for message in raised if "requires_grad" in message]
    code, _, err, _ = run_predict(f"ckpt={ckpt}", "text=   ")
    assert code == 2 and "error: text is empty: give a sentence to classify" in err
    code, out, err, _ = run_predict(f"ckpt={ckpt}", 'text="a ${x} film"')  # the text itself, not an interpolation
    assert code == 0 and out.splitlines()[0] in ("pos", "neg"), err
    assert warning_lines(err)[0].endswith(": 'a', '${', 'x', '}', 'film'")


def test_translation_predicts_the_translations_eval_scored(translation_run, tmp_path):
    ckpt, data = translation_run
    lines = (data / "val.de").read_text().splitlines()
    source, output = tmp_path / "val.de", tmp_path / "val.en"
    source.write_text("\n".join(f"  {line} " if i % 2 else line for i, line in enumerate(lines)) + "\n")
    code, _, err, raised = run_predict(f"ckpt={ckpt}", f"input={source}", f"output={output}", "batch_size=5")
    assert code == 0, err
    assert not [message for message in raised if "requires_grad" in message]
    assert warning_lines(err) == [
        f"warning: 1 of {len(lines)} lines have 1 character(s) outside the model's vocabulary, read as <unk> as its "
        "training and evaluation data read them: 'é'"
    ]
    module, datamodule = load_run(str(ckpt))
    assert [datamodule.encode_input(f" {line}  ")[0] for line in lines] == [
        e["src"].tolist() for e in datamodule.task.val
    ]
    greedy = {"strategy": "greedy", "max_new_tokens": 100}  # predict's default decoding
    assert output.read_text().splitlines() == score_split(module, datamodule, "val", greedy).hypotheses


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("reverse"), "task=reverse", *SMALL_SYNTHETIC)


def test_a_synthetic_task_predicts_the_outputs_eval_scored(reverse_run, tmp_path):
    module, datamodule = load_run(str(reverse_run))
    lines = [datamodule.decode_src(e["src"]) for e in datamodule.task.val]
    source, output = tmp_path / "val.txt", tmp_path / "out.txt"
    source.write_text("\n".join(f" {line}  " if i % 2 else line for i, line in enumerate(lines)) + "\n")
    code, _, err, raised = run_predict(f"ckpt={reverse_run}", f"input={source}", f"output={output}")
    assert code == 0 and not warning_lines(err), err
    assert not [message for message in raised if "requires_grad" in message]
    # What exact_match was computed from: greedy outputs of eval's batches, at most as long as the reference plus
    # the task's slack. Where that limit stopped eval's output before EOS, predict (allowed 100 tokens) goes on.
    predicted = output.read_text().splitlines()
    for batch in datamodule.val_dataloader():
        for row in greedy_decode(module.model, "seq2seq", batch, module.extra_decode_tokens):
            scored, line = datamodule.decode_tgt(row), predicted.pop(0)
            assert line == scored if EOS_ID in row.tolist() else line.startswith(scored)
    code, _, err, _ = run_predict(f"ckpt={reverse_run}", "text=12x4")
    assert code == 2 and "error: text has 1 symbol(s) the model has no token for ('x')" in err


@pytest.fixture(scope="module")
def char_lm_run(tmp_path_factory) -> Path:
    """A char_lm run on one long line, so that its validation windows are text without a line break."""
    root = tmp_path_factory.mktemp("char_lm")
    (root / "text.txt").write_text("To be, or not to be, that is the question. " * 40 + "\n")
    settings = ["task.block_size=16", "task.val_fraction=0.1", "task.test_fraction=0.1"]
    return train(root, "task=char_lm", f"task.path={root / 'text.txt'}", *settings)


def test_char_lm_continues_a_prompt_with_the_character_eval_scored(char_lm_run, tmp_path):
    """Eval scores, at every position of a window, the model's distribution over the next character given the
    characters before it. A window's first block_size characters as a prompt are the same ids (no BOS: the
    windows hold none; no whitespace stripped: it is text), and predict's greedy next character is that
    distribution's argmax."""
    module, datamodule = load_run(str(char_lm_run))
    windows = [e["tokens"] for e in datamodule.task.val]
    prompts = [datamodule.decode_tgt(window[:-1]) for window in windows]
    assert any(prompt != prompt.strip() for prompt in prompts)  # windows start and end anywhere, spaces included
    assert [datamodule.encode_input(prompt)[0] for prompt in prompts] == [w[:-1].tolist() for w in windows]
    source, output = tmp_path / "prompts.txt", tmp_path / "continued.txt"
    source.write_text("\n".join([*prompts, ""]) + "\n")  # an empty line stays empty
    args = [f"ckpt={char_lm_run}", f"input={source}", f"output={output}", "decode.max_new_tokens=1"]
    code, _, err, raised = run_predict(*args)
    assert code == 0, err
    assert not [message for message in raised if "requires_grad" in message]
    expected = []
    with eval_mode(module.model):
        for batch in datamodule.val_dataloader():
            logits = forward_batch(module.model, "lm", batch).logits  # (B, T, V), what the loss scores
            for row, length in enumerate((batch["tgt_in"] != PAD_ID).sum(dim=1).tolist()):
                expected.append(datamodule.decode_tgt([int(logits[row, length - 1].argmax())]))
    continued = output.read_text().splitlines()
    assert continued == [prompt + next_character for prompt, next_character in zip(prompts, expected)] + [""]
    code, _, err, _ = run_predict(f"ckpt={char_lm_run}", "text=To be Z")
    assert code == 2 and "error: text has 1 symbol(s) the model has no token for ('Z')" in err


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["text=hello", "input={file}"],
            "text= and input= are both given: give exactly one, text=... for one text or input=<file> for a file of "
            "lines",
        ),
        (
            [],
            f"text is required (or input=<file> for many lines): give one, e.g. {PYTHON} -m src.predict ckpt=... "
            'text="..."',
        ),
        (["input={folder}"], "input={folder} is a directory: give a file in it, whose lines are the texts"),
        (
            ["input={file}", "output={folder}"],
            "output={folder} is a directory: give a file name, e.g. output={folder}/predictions.txt",
        ),
        (
            ["text=hello", "num_samples=3"],
            "num_samples=3 draws several continuations only with decode.strategy=sample (decode.strategy=greedy gives "
            "one): add decode.strategy=sample, or leave num_samples out",
        ),
    ],
)
def test_a_refusal_names_what_was_given(args, line, tmp_path):
    """Each mistake is named as it is (both text= and input=, a folder for a file, num_samples that would be
    ignored), not as a neighbouring one. All are refused before the checkpoint is read."""
    file = tmp_path / "lines.txt"
    file.write_text("hello\n")
    names = {"file": file, "folder": tmp_path}
    code, out, err, _ = run_predict("ckpt=never_read.ckpt", *(a.format(**names) for a in args))
    assert code == 2 and "Traceback" not in err, err
    assert [e for e in err.splitlines() if e.startswith("error:")] == [f"error: {line.format(**names)}"]


# --- decode.* settings that would be ignored, and a classifier's TSV lines -----------------------------------------


def test_eval_says_that_decode_settings_do_not_change_a_synthetic_tasks_greedy_exact_match(reverse_run):
    """decode.* only decodes translation tasks' splits for sacreBLEU: a reverse task's exact match stays greedy."""
    code, out, err = run_in_process("src.eval", f"ckpt={reverse_run}", "decode.strategy=beam", "decode.beam_size=4")
    assert code == 0, err
    assert "test/exact_match" in out
    assert warning_lines(err) == [
        "warning: decode.strategy=beam, decode.beam_size=4 are not used: decode.* applies only to the sacreBLEU "
        "score of translation tasks, and this task has no references to score; its exact_match comes from greedy "
        "decoding: leave decode.* out"
    ]
    code, out, err = run_in_process("src.eval", f"ckpt={reverse_run}")
    assert code == 0 and not warning_lines(err), err


def test_eval_names_the_decode_settings_its_strategy_does_not_use(translation_run):
    ckpt, _ = translation_run
    code, out, err = run_in_process("src.eval", f"ckpt={ckpt}", "decode.beam_size=3", "decode.length_penalty=1.0")
    assert code == 0, err
    assert "greedy decoding" in next(line for line in out.splitlines() if line.strip().startswith("test/sacrebleu:"))
    assert warning_lines(err) == [
        "warning: decode.strategy=greedy does not use decode.beam_size=3, decode.length_penalty=1.0 (settings of "
        "decode.strategy=beam): choose the strategy they belong to, or leave them out"
    ]
    code, out, err = run_in_process("src.eval", f"ckpt={ckpt}", *BEAM, "decode.temperature=0.5")
    assert code == 0, err
    assert warning_lines(err) == [  # src.eval offers no sampling: the only fix is to leave it out
        "warning: decode.strategy=beam does not use decode.temperature=0.5 (a setting of decode.strategy=sample, "
        "which src.eval does not offer): leave it out"
    ]


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["decode.beam_size=4", "decode.temperature=0.5"],
            "decode.strategy=greedy does not use decode.beam_size=4 (a setting of decode.strategy=beam), "
            "decode.temperature=0.5 (a setting of decode.strategy=sample): choose the strategy they belong to, or "
            "leave them out",
        ),
        (
            ["decode.length_penalty=1.0", "decode.top_k=5", "decode.top_p=0.9"],
            "decode.strategy=greedy does not use decode.length_penalty=1.0 (a setting of decode.strategy=beam), "
            "decode.top_k=5, decode.top_p=0.9 (settings of decode.strategy=sample): choose the strategy they belong "
            "to, or leave them out",
        ),
        (
            ["decode.strategy=beam", "decode.top_k=5"],
            "decode.strategy=beam does not use decode.top_k=5 (a setting of decode.strategy=sample): choose the "
            "strategy it belongs to, or leave it out",
        ),
        (
            ["decode.strategy=sample", "decode.beam_size=2"],
            "decode.strategy=sample does not use decode.beam_size=2 (a setting of decode.strategy=beam): choose the "
            "strategy it belongs to, or leave it out",
        ),
    ],
)
def test_predict_names_the_decode_settings_its_strategy_does_not_use(reverse_run, args, line):
    code, out, err, _ = run_predict(f"ckpt={reverse_run}", "text=1234", *args)
    assert code == 0, err
    assert warning_lines(err) == [f"warning: {line}"]


def test_predict_uses_every_decode_setting_of_its_strategy_without_a_warning(reverse_run):
    for args in (
        ["decode.strategy=beam", "decode.beam_size=2", "decode.length_penalty=1.0"],
        ["decode.strategy=sample", "decode.temperature=0.5", "decode.top_k=3", "decode.top_p=0.9", "num_samples=2"],
        ["decode.max_new_tokens=3"],
    ):
        code, out, err, _ = run_predict(f"ckpt={reverse_run}", "text=1234", *args)
        assert code == 0 and not warning_lines(err), err
    code, out, err, _ = run_predict(f"ckpt={reverse_run}", "text=1234", "decode.strategy=sample", "num_samples=2")
    assert code == 0 and out.splitlines()[0] == "--- sample 1 ---" and "--- sample 2 ---" in out, err


@pytest.mark.parametrize(
    "args, given",
    [
        (["decode.strategy=sample", "num_samples=3"], "decode.strategy=sample, num_samples=3"),
        (["decode.strategy=beam"], "decode.strategy=beam"),
        (["decode.strategy=sample"], "decode.strategy=sample"),
    ],
)
def test_a_classifier_refuses_a_decoding_strategy(classification_run, args, given):
    ckpt, _ = classification_run
    code, out, err, _ = run_predict(f"ckpt={ckpt}", "text=great movie", *args)
    assert code == 2 and not out and "--- sample" not in out, err
    assert [line for line in err.splitlines() if line.startswith(("error:", "warning:"))] == [
        f"error: {given}: a classifier does not decode, it gives one label and the class probabilities: leave "
        f"{'them' if ',' in given else 'it'} out"
    ]


def test_a_classifier_names_the_decode_settings_it_does_not_use(classification_run):
    ckpt, _ = classification_run
    code, out, err, _ = run_predict(f"ckpt={ckpt}", "text=great movie", "decode.beam_size=4", "decode.top_p=0.5")
    assert code == 0 and len(out.splitlines()) == 3, err  # the label, then both classes
    assert warning_lines(err) == [
        "warning: decode.beam_size=4, decode.top_p=0.5 are not used: a classifier does not decode, it gives one "
        "label and the class probabilities: leave them out"
    ]


def test_a_classifier_warns_of_input_lines_that_end_in_a_label(classification_run, tmp_path):
    """A split's TSV lines given to predict: each whole line is the sentence, so the label would be read as a word."""
    ckpt, data = classification_run
    source = tmp_path / "val.tsv"
    source.write_text("great movie\tpos\nfine movie\npoor movie\tneg\nbad movie\tnot a label\n")
    code, out, err, _ = run_predict(f"ckpt={ckpt}", f"input={source}")
    assert code == 0 and len(out.splitlines()) == 4, err
    labelled = [line for line in warning_lines(err) if "TAB" in line]
    assert labelled == [
        "warning: 2 of 4 lines end in a TAB and one of the model's labels (the first: line 1, 'great movie\\tpos'): "
        "predict reads each whole line as one sentence, label included: give the sentences only (e.g. cut -f1 "
        f"{source})"
    ]
    code, out, err, _ = run_predict(f"ckpt={ckpt}", "text=awful movie\tneg")
    assert code == 0, err
    assert [line for line in warning_lines(err) if "TAB" in line] == [
        "warning: text ends in a TAB and one of the model's labels ('neg'): predict reads the whole text as one "
        "sentence, label included: give the sentence only"
    ]
    code, out, err, _ = run_predict(f"ckpt={ckpt}", "text=awful movie")
    assert code == 0 and not warning_lines(err), err
