"""The pretrained families through the commands users know: `ckpt=hf:<directory>` in src.predict and src.eval,
`model.pretrained=<directory>` in src.run, and a fine-tuned run read back by src.predict and src.eval. The
directories are what save_pretrained writes (model + tokenizer), as a hub snapshot is."""

import pytest
import torch
from omegaconf import OmegaConf

from src.pretrained import load_pretrained
from src.training.checkpoint import load_run, read_any_checkpoint
from tests.conftest import run_in_process

from .conftest import PAD, save, save_bert_tokenizer, tiny_bert, tiny_gpt2, tiny_marian, transformers

pytestmark = pytest.mark.slow


def predict(*args: str) -> str:
    code, out, err = run_in_process("src.predict", *args)
    assert code == 0, err
    return out


def test_predict_continues_text_as_gpt2_does_in_huggingface(gpt2_dir):
    text = "the cat sat on"
    out = predict(f"ckpt=hf:{gpt2_dir}", f"text={text}", "decode.max_new_tokens=20")
    tokenizer = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    generated = tiny_gpt2().generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=PAD)[0, ids.size(1) :]
    ended = (generated == PAD).nonzero()  # <|endoftext|> ends the continuation
    generated = generated[: int(ended[0]) if len(ended) else None]
    assert out.rstrip("\n") == text + tokenizer.decode(generated)


def test_predict_samples_with_top_k_top_p_and_temperature(gpt2_dir):
    args = [f"ckpt=hf:{gpt2_dir}", "text=the dog", "decode.strategy=sample", "decode.top_k=50", "decode.top_p=0.95"]
    first = predict(*args, "decode.temperature=0.7", "num_samples=2", "seed=3")
    assert first == predict(*args, "decode.temperature=0.7", "num_samples=2", "seed=3")  # the seed decides
    assert first.count("--- sample") == 2 and first.count("the dog") == 2


def test_predict_translates_a_file_as_marian_does_in_huggingface(marian_dir, tmp_path):
    lines = ["Ein Hund läuft im Park.", "", "Zwei Männer spielen Fußball."]
    source = tmp_path / "de.txt"
    source.write_text("\n".join(lines) + "\n")
    out = predict(f"ckpt=hf:{marian_dir}", f"input={source}", "decode.max_new_tokens=20").split("\n")[:3]
    tokenizer = transformers.AutoTokenizer.from_pretrained(marian_dir)
    hf = tiny_marian()
    for line, ours in zip(lines, out):
        if not line:
            assert ours == ""  # an empty line stays empty
            continue
        ids = torch.tensor([tokenizer(line)["input_ids"]])  # with its </s>
        generated = hf.generate(ids, max_new_tokens=20, num_beams=1, do_sample=False, bad_words_ids=[[PAD]])
        assert ours == tokenizer.decode(generated[0], skip_special_tokens=True)


def test_predict_classifies_as_bert_does_in_huggingface(bert_dir):
    text = "the film was good"
    out = predict(f"ckpt=hf:{bert_dir}", f"text={text}").split("\n")
    tokenizer = transformers.AutoTokenizer.from_pretrained(bert_dir)
    with torch.no_grad():
        logits = tiny_bert()(**tokenizer(text, return_tensors="pt")).logits[0]  # [CLS] text [SEP]
    assert out[0] == f"LABEL_{int(logits.argmax())}"
    assert out[1].strip() == f"LABEL_{int(logits.argmax())}: {logits.softmax(-1).max().item():.3f}"


GERMAN_ENGLISH = [
    ("Ein Hund läuft.", "A dog runs."),
    ("Zwei Männer spielen.", "Two men play."),
    ("Ein Buch.", "A book."),
]


def parallel_files(directory, pairs=GERMAN_ENGLISH) -> list[str]:
    """translation's six files, each split the same (source, target) pairs."""
    settings = []
    for split in ("train", "val", "test"):
        for side, column in (("src", 0), ("tgt", 1)):
            path = directory / f"{split}.{side}"
            path.write_text("\n".join(pair[column] for pair in pairs) + "\n")
            settings.append(f"task.{split}_{side}={path}")
    return ["task=translation", *settings, "task.max_len=60"]  # no cut: the tiny tokenizer makes many pieces


def test_eval_scores_marian_with_sacrebleu_on_a_task(marian_dir, tmp_path):
    code, out, err = run_in_process("src.eval", f"ckpt=hf:{marian_dir}", *parallel_files(tmp_path))
    assert code == 0, err
    assert "test/sacrebleu" in out and "(sacreBLEU of 3 test sentences, greedy decoding, against the raw" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["ckpt=hf:{marian}"], "is evaluated on a task's data: give one, e.g. task=multi30k"),
        (["ckpt=hf:{marian}", "task=sort"], "task=sort has its own symbols, and a pretrained model reads text"),
        (["ckpt=hf:{bert_pretraining}"], "has no classification head .*: fine-tune it first"),
        (["ckpt=hf:{gpt2}", "task=classification", "task.train_path={tsv}"], "does lm tasks; task=classification"),
        (["ckpt=hf:{bert}", "task=classification", "task.train_path={tsv}", "task.max_len=100"], "lower task.max_len"),
        (["ckpt=hf:{broken}"], "model.safetensors cannot be read"),
        (["ckpt=hf:my model"], "is neither a directory nor a hub name"),
    ],
    ids=["no-task", "symbol-task", "no-head", "wrong-kind", "too-long", "damaged", "bad-hub-name"],
)
def test_eval_refuses_what_cannot_work_in_one_line(marian_dir, bert_dir, gpt2_dir, tmp_path, args, message):
    bert_pretraining = tmp_path / "bert-pretraining"
    tiny_bert("pretraining").save_pretrained(bert_pretraining)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((gpt2_dir / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("".join(f"{'good ' * 30}film {i}\tpos\nbad film {i}\tneg\nso so {i}\tmid\n" for i in range(10)))
    places = {"marian": marian_dir, "bert": bert_dir, "bert_pretraining": bert_pretraining, "gpt2": gpt2_dir}
    places |= {"broken": broken, "tsv": tsv}
    code, out, err = run_in_process("src.eval", *(arg.format(**places) for arg in args))
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    import re

    assert re.search(message, lines[0]), lines[0]


def fine_tune(directory, run_dir, *task: str, steps: int = 2) -> None:
    code, out, err = run_in_process(
        "src.run",
        f"model.pretrained={directory}",
        *task,
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "batch_size=2",
        "optimizer.lr=1e-30",  # the weights move by nothing measurable: the checkpoint is the pretrained model
        "optimizer.weight_decay=0",
        "torch_threads=1",
        f"hydra.run.dir={run_dir}",
    )
    assert code == 0, err


def test_a_fine_tuned_checkpoint_is_the_pretrained_model_read_back_by_eval_and_predict(marian_dir, tmp_path):
    run_dir = tmp_path / "run"
    fine_tune(marian_dir, run_dir, *parallel_files(tmp_path))
    assert (run_dir / "pretrained_tokenizer" / "tokenizer_config.json").is_file()  # saved with the run
    module, datamodule = load_run(str(run_dir / "checkpoints" / "last.ckpt"))
    original = load_pretrained(str(marian_dir)).model
    src = torch.tensor([datamodule.encode_src("Ein Hund läuft.")])
    tgt = torch.tensor([[PAD, 5, 6, 7]])
    with torch.no_grad():
        assert (module.model.eval()(src, tgt).logits - original(src, tgt).logits).abs().max() < 1e-6
    line = "Zwei Männer spielen."
    ours = predict(f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"text={line}", "decode.max_new_tokens=20")
    assert ours == predict(f"ckpt=hf:{marian_dir}", f"text={line}", "decode.max_new_tokens=20")
    code, out, err = run_in_process("src.eval", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert code == 0 and "test/sacrebleu" in out, err


def test_gpt2_fine_tunes_on_a_text_file_with_its_own_tokenizer(gpt2_dir, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    run_dir = tmp_path / "run"
    fine_tune(gpt2_dir, run_dir, "task=char_lm", f"task.path={text}", "task.block_size=16")
    _, datamodule = load_run(str(run_dir / "checkpoints" / "last.ckpt"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    window = datamodule.task.train[0]["tokens"].tolist()
    assert window == tokenizer(text.read_text())["input_ids"][:17]  # block_size + 1 of GPT-2's tokens


def test_a_fine_tuned_model_keeps_its_own_dropouts_unless_they_are_set(gpt2_dir, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    task = ["task=char_lm", f"task.path={text}", "task.block_size=16"]
    fine_tune(gpt2_dir, tmp_path / "own", *task, steps=1)
    fine_tune(gpt2_dir, tmp_path / "set", *task, "model.dropout=0.3", steps=1)
    own = torch.load(tmp_path / "own" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    tuned = torch.load(tmp_path / "set" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    gpt2 = tiny_gpt2().config
    assert own["model_config"]["dropout"] == gpt2.resid_pdrop and own["model_config"]["ffn_dropout"] == 0.0
    assert tuned["model_config"]["dropout"] == 0.3 and tuned["model_config"]["attention_dropout"] == gpt2.attn_pdrop


def test_run_refuses_model_settings_beside_a_pretrained_model(gpt2_dir, tmp_path):
    code, out, err = run_in_process(
        "src.run", f"model.pretrained={gpt2_dir}", "model.heads=8", "task=char_lm", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert code == 2 and "error: model.heads is set by model.pretrained=" in err
    assert not (tmp_path / "r").exists()  # refused before Hydra wrote anything


@pytest.mark.parametrize("broken", ["missing", "pickle"])
def test_run_refuses_weights_that_do_not_fit_before_writing_anything(gpt2_dir, tmp_path, broken):
    """The weights are checked from the files' headers before Hydra writes the run directory: a tensor missing, or
    a pickle that would run code."""
    import os

    from safetensors.torch import load_file, save_file

    directory = tmp_path / "gpt2"
    directory.mkdir()
    for file in gpt2_dir.iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    state = load_file(directory / "model.safetensors")
    if broken == "missing":
        save_file(
            {k: v for k, v in state.items() if not k.endswith("h.1.mlp.c_fc.bias")}, directory / "model.safetensors"
        )
        message = "has no weight 'h.1.mlp.c_fc.bias': its weights do not fit its config.json"
    else:

        class Exploit:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))

        (directory / "model.safetensors").unlink()
        torch.save({**state, "wte.weight": Exploit()}, directory / "pytorch_model.bin")
        message = "was refused: it holds a reference to 'posix.system'"
    run_dir, text = tmp_path / "run", tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    code, out, err = run_in_process(
        "src.run", f"model.pretrained={directory}", "task=char_lm", f"task.path={text}", "task.block_size=16",
        f"hydra.run.dir={run_dir}", "trainer.max_steps=2",
    )  # fmt: skip
    assert code == 2 and [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if message in line
    ], err
    assert message in err and not run_dir.exists() and not (tmp_path / "pwned").exists()


def test_a_masked_lm_bert_fine_tunes_with_a_new_pooler_and_head_said_once(tmp_path):
    directory = save(tiny_bert("masked_lm"), tmp_path / "bert-mlm", save_bert_tokenizer)
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("".join(f"good film {i}\tpos\nbad film {i}\tneg\n" for i in range(10)))
    task = ["task=classification", f"task.train_path={tsv}", "task.max_len=40"]
    code, out, err = run_in_process(
        "src.run", f"model.pretrained={directory}", *task, "trainer.max_steps=2", "trainer.val_check_interval=2",
        "batch_size=2", "torch_threads=1", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and "pooler" in line]
    assert warnings == [
        f"warning: model.pretrained={directory} has no classification head for the task's labels ['neg', 'pos'] and "
        "no pooler (a masked-LM checkpoint): a new pooler and head start from random weights"
    ]
    code, out, err = run_in_process("src.eval", f"ckpt=hf:{directory}", *task)
    assert code == 2 and "has no classification head" in err and "fine-tune it first" in err


def test_analyze_scores_the_heads_of_a_pretrained_model_on_a_task(gpt2_dir, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat and the dog ran to the park. " * 40)
    out = tmp_path / "analysis"
    task = ["task=char_lm", f"task.path={text}", "task.block_size=16"]
    code, stdout, err = run_in_process("src.analyze", f"ckpt=hf:{gpt2_dir}", *task, f"out={out}", "max_examples=8")
    assert code == 0, err
    assert (out / "report.md").is_file() and (out / "heads.csv").read_text().count("\n") == 1 + 2 * 4  # 2 x 4 heads
    code, stdout, err = run_in_process("src.analyze", f"ckpt=hf:{gpt2_dir}", *task)
    assert code == 2 and "has no run directory to write into: give out=<a new folder>" in err


def test_a_classifier_is_matched_to_the_tasks_labels_by_name(tmp_path):
    """config.json's id2label names the head's classes; the task sorts its labels: they meet by name."""
    hf = tiny_bert(num_labels=2, id2label={0: "pos", 1: "neg"}, label2id={"pos": 0, "neg": 1})
    model_dir = save(hf, tmp_path / "bert-posneg", save_bert_tokenizer)
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("".join(f"good film {i}\tpos\nbad film {i}\tneg\n" for i in range(10)))
    checkpoint = read_any_checkpoint(
        f"hf:{model_dir}", OmegaConf.create({"name": "classification", "train_path": str(tsv), "max_len": 40})
    )
    module, datamodule = load_run(f"hf:{model_dir}", checkpoint=checkpoint)
    assert datamodule.label_names == ["neg", "pos"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        theirs = hf(**tokenizer("a good film", return_tensors="pt")).logits[0]  # (pos, neg)
        ours = module.model(torch.tensor([datamodule.encode_input("a good film")[0]])).logits[0]  # (neg, pos)
    torch.testing.assert_close(ours, theirs.flip(0), atol=1e-5, rtol=0)


def test_mean_ablation_without_a_task_asks_for_one(gpt2_dir):
    code, out, err = run_in_process(
        "src.predict", f"ckpt=hf:{gpt2_dir}", "text=the cat", "ablate.heads=[decoder_self:0:0]", "ablate.method=mean"
    )
    assert code == 2 and "ablate.method=mean needs a task's training examples" in err


def test_run_refuses_an_hf_prefix_in_model_pretrained(gpt2_dir, tmp_path):
    code, out, err = run_in_process(
        "src.run", f"model.pretrained=hf:{gpt2_dir}", "task=char_lm", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert code == 2 and "without hf:, which is for ckpt=" in err
