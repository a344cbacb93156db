"""Llama, Qwen2, Mistral and T5 through the commands users know, as GPT-2, BERT and Marian go (test_commands.py):
`ckpt=hf:<directory>` in src.predict, src.eval and src.analyze, `model.pretrained=<directory>` in src.run, and a
fine-tuned run read back by src.predict and src.eval. The directories are what save_pretrained writes, with each
family's tokenizer in its own layout (hf_tokenizers.py), and Llama models with SmolLM's and Llama 3's too; Qwen2's
and T5's embeddings have rows past their tokenizer's last token, as theirs do (conftest.PADDED). T5's task prefixes:
task.src_prefix."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from src.dashboard.explorer import attention_on_text
from src.data.pretrained_tokenizer import PretrainedTokenizer, model_tokenizer
from src.model.tokens import SpecialIds
from src.predict import continuation, read_inputs
from src.training.checkpoint import load_run, read_any_checkpoint
from tests.conftest import run_in_process

from .conftest import (
    LLAMA3_BOS,
    LLAMA3_VOCAB,
    LLAMA_VOCAB,
    PADDED,
    QWEN2_ENDOFTEXT,
    SMOLLM_VOCAB,
    T5_EOS,
    T5_PAD,
    VOCAB,
    save,
    save_qwen2_tokenizer,
    tiny_t5,
    tiny_tokenized_decoder,
    transformers,
)
from .hf_tokenizers import LLAMA3_SPECIALS, SMOLLM_SPECIALS, save_llama3_tokenizer, save_smollm_tokenizer
from .test_commands import parallel_files as commands_parallel_files

pytestmark = pytest.mark.slow

TEXT = "The cat sat on the"
PREFIX = "translate English to German: "
PAIRS = [("The dog runs.", "Der Hund läuft."), ("Two men play.", "Zwei Männer spielen."), ("A book.", "Ein Buch.")]
STORY = "The cat sat on the mat and the dog ran to the park. " * 40


def command(module: str, *args: str) -> tuple[str, str]:
    """(stdout, stderr) of a command that must succeed."""
    code, out, err = run_in_process(module, *args)
    assert code == 0, err
    return out, err


def refused(module: str, *args: str) -> str:
    """The one `error:` line of a command that must be refused (exit status 2)."""
    code, out, err = run_in_process(module, *args)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def fine_tune(directory, run_dir, *task: str) -> str:
    """src.run of 2 steps from the pretrained model at a learning rate that moves nothing measurable (the checkpoint
    is the pretrained model, as test_commands.fine_tune's); its stderr."""
    settings = ["trainer.max_steps=2", "trainer.val_check_interval=2", "batch_size=2", "optimizer.lr=1e-30"]
    settings += ["optimizer.weight_decay=0", "torch_threads=1", f"hydra.run.dir={run_dir}"]
    return command("src.run", f"model.pretrained={directory}", *task, *settings)[1]


def parallel_files(directory) -> list[str]:
    """translation's six files (English to German), each split the same three pairs."""
    return commands_parallel_files(directory, PAIRS)


def story(directory) -> list[str]:
    text = directory / "story.txt"
    text.write_text(STORY)
    return ["task=char_lm", f"task.path={text}", "task.block_size=16"]


def hf_continuation(model, tokenizer, text: str) -> str:
    """What transformers' greedy generate adds to `text` (tokenizer(text): Llama's <s> in front), decoded as the
    text-generation pipeline does (the whole sequence's text past the prompt's), up to the first eos, with <s>
    left out as our decoding leaves it out, and every space kept (Llama 3's clean_up_tokenization_spaces is not
    applied: test_llama3_text_is_decoded_with_every_space_its_tokens_hold)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    eos = model.config.eos_token_id
    stops = eos if isinstance(eos, list) else [eos]  # Llama 3.1's and 3.2's instruct models list three
    generated = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=stops[0])[0, ids.size(1) :]
    generated = list(itertools.takewhile(lambda i: i not in stops, generated.tolist()))
    bos = model.config.bos_token_id  # Qwen2's is its eos, cut off above

    def decode(sequence):
        ids = [i for i in sequence if i != bos]
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    prompt = ids[0].tolist()
    return decode(prompt + generated)[len(decode(prompt)) :]


# Whether each tokenizer puts its bos in front of a text: Llama 2's and Mistral's <s>, Llama 3's <|begin_of_text|>;
# Qwen2 and SmolLM put nothing there
BOS_IN_FRONT = {"llama": True, "mistral": True, "llama3": True, "qwen2": False, "smollm": False}


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "smollm", "llama3"])
def test_predict_continues_text_as_each_decoder_family_does_in_huggingface(family, request):
    directory = request.getfixturevalue(f"{family}_dir")
    out, _ = command("src.predict", f"ckpt=hf:{directory}", f"text={TEXT}", "decode.max_new_tokens=20")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = tiny_tokenized_decoder(family)
    prompt = tokenizer(TEXT)["input_ids"]
    assert (prompt[0] == model.config.bos_token_id) == BOS_IN_FRONT[family]
    assert out.rstrip("\n") == TEXT + hf_continuation(model, tokenizer, TEXT)


def test_a_prompt_is_read_as_transformers_reads_it_and_a_continuation_keeps_its_space(llama_dir):
    """Llama's <s> in front, as tokenizer(text) gives generate; Llama's decoder drops the first "▁" of a text, so a
    continuation is the whole text's past the prompt's ("▁mat" alone decodes to "mat")."""
    _, datamodule = load_run(f"hf:{llama_dir}", checkpoint=read_any_checkpoint(f"hf:{llama_dir}"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(llama_dir)
    (prompt,) = read_inputs(datamodule, [TEXT], ["text"])
    assert prompt == tokenizer(TEXT)["input_ids"] and prompt[0] == tokenizer.bos_token_id
    view, _ = attention_on_text(load_run(f"hf:{llama_dir}")[0].model, datamodule, TEXT)  # the page reads the same
    assert view.tokens["tgt"][0] == "<s>" and len(view.tokens["tgt"]) == len(prompt)
    mat = tokenizer(" mat", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(mat) == "mat" and continuation(datamodule, prompt, mat) == " mat"


def test_smollm_and_llama3_tokenizers_keep_their_layout_and_the_same_files_on_every_run(tmp_path):
    """SmolLM: its 17 special tokens first, <|endoftext|> = 0; Llama 3: the 256 bytes first ("!" = 0, as tiktoken's
    ranks), its 256 special tokens last, <|begin_of_text|> put in front of a text (and of each text of a pair) by its
    post-processor, and read as that token where a text holds it. Trained again, each is the same files."""
    for save_tokenizer in (save_smollm_tokenizer, save_llama3_tokenizer):
        first, second = (tmp_path / save_tokenizer.__name__ / run for run in ("first", "second"))
        save_tokenizer(first), save_tokenizer(second)
        names = sorted(path.name for path in first.iterdir())
        assert names == sorted(path.name for path in second.iterdir())
        assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    smollm = transformers.AutoTokenizer.from_pretrained(tmp_path / "save_smollm_tokenizer" / "first")
    assert smollm.convert_ids_to_tokens(list(range(17))) == list(SMOLLM_SPECIALS) and len(smollm) == SMOLLM_VOCAB
    llama3 = transformers.AutoTokenizer.from_pretrained(tmp_path / "save_llama3_tokenizer" / "first")
    assert llama3.convert_ids_to_tokens(list(range(LLAMA3_BOS, LLAMA3_VOCAB))) == list(LLAMA3_SPECIALS)
    assert llama3.convert_ids_to_tokens(0) == "!" and len(llama3) == LLAMA3_VOCAB
    one, two = (llama3(text, add_special_tokens=False)["input_ids"] for text in ("One", " two"))
    assert llama3("One", " two")["input_ids"] == [LLAMA3_BOS, *one, LLAMA3_BOS, *two]
    assert llama3("<|begin_of_text|>One")["input_ids"] == [LLAMA3_BOS, LLAMA3_BOS, *one]


@pytest.mark.parametrize("family", ["smollm", "llama3"])
def test_smollm_and_llama3_read_a_prompt_with_their_own_marks_and_end_at_their_eos(family, request):
    """SmolLM puts nothing around a text and its <|endoftext|> = 0 is its bos, eos and pad (config.json, its
    tokenizer's); Llama 3's post-processor puts <|begin_of_text|> once in front, and <|end_of_text|> is its eos. The
    prompt src.predict reads is what tokenizer(text) gives generate(), the attention page labels those tokens, and a
    decoded output ends at the eos, the other special tokens written out as transformers writes them."""
    directory = request.getfixturevalue(f"{family}_dir")
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    config = transformers.AutoConfig.from_pretrained(directory)
    bos, eos = config.bos_token_id, config.eos_token_id
    assert hf.eos_token_id == eos and hf.bos_token_id == bos
    tokenizer = model_tokenizer(str(directory))
    assert (tokenizer.prefix, tokenizer.suffix) == ([bos] if BOS_IN_FRONT[family] else [], [])
    assert (tokenizer.specials.bos, tokenizer.specials.eos) == (bos, eos)

    _, datamodule = load_run(f"hf:{directory}", checkpoint=read_any_checkpoint(f"hf:{directory}"))
    (prompt,) = read_inputs(datamodule, [TEXT], ["text"])
    assert prompt == hf(TEXT)["input_ids"] and prompt.count(bos) == int(BOS_IN_FRONT[family])
    view, _ = attention_on_text(load_run(f"hf:{directory}")[0].model, datamodule, TEXT)
    assert view.tokens["tgt"] == tokenizer.token_strings(prompt)
    assert (view.tokens["tgt"][0] == "<|begin_of_text|>") == (family == "llama3")

    end_of_turn = hf.convert_tokens_to_ids("<|im_end|>" if family == "smollm" else "<|eot_id|>")
    output = [*hf(" sat", add_special_tokens=False)["input_ids"], end_of_turn, eos, *hf(" on")["input_ids"]]
    expected = hf.decode(output[: output.index(eos)], skip_special_tokens=False)
    assert tokenizer.decode(output) == expected == f" sat{hf.convert_ids_to_tokens(end_of_turn)}"


def test_llama3_text_is_decoded_with_every_space_its_tokens_hold(llama3_dir):
    """Llama 3's tokenizer_config.json sets clean_up_tokenization_spaces, a tidying of WordPiece's spaced-out text
    that drops a space before punctuation. transformers applied it to every decode until recent versions, which skip
    it for a BPE (printing a warning) unless clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
    is set: set here, it stands for those versions. A byte-level BPE's text is its bytes: decoded with every space."""
    config = transformers.AutoConfig.from_pretrained(llama3_dir)
    specials = SpecialIds(config.eos_token_id, config.bos_token_id, config.eos_token_id)
    tokenizer = PretrainedTokenizer.load(llama3_dir, specials, LLAMA3_VOCAB, "llama3")  # its own: it is changed
    assert tokenizer.tokenizer.clean_up_tokenization_spaces  # as Meta's tokenizer_config.json has it
    tokenizer.tokenizer.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    text = "x != y ? It's 'social' , isn't it ."
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.wrap_source(tokenizer.encode(text))) == text  # <|begin_of_text|> left out


def test_a_llama3_instruct_model_stops_at_the_end_of_its_turn_as_generate_does(tmp_path):
    """Llama 3.1's and 3.2's instruct models list three eos ids in config.json (<|end_of_text|>, <|eom_id|>,
    <|eot_id|>) and end a reply with <|eot_id|>, their tokenizer's eos: generate() stops at any of them, and the
    continuation src.predict prints ends there too."""
    stops = [LLAMA3_BOS + 1, LLAMA3_BOS + 8, LLAMA3_BOS + 9]
    model = tiny_tokenized_decoder("llama3", eos_token_id=stops)
    with torch.no_grad():  # a longer <|eot_id|> row (tied: its output too), so that greedy decoding comes to it
        model.model.embed_tokens.weight[LLAMA3_BOS + 9] *= 2
    directory = save(model, tmp_path, functools.partial(save_llama3_tokenizer, instruct=True), LLAMA3_VOCAB)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    assert tokenizer.eos_token_id == LLAMA3_BOS + 9
    prompt = torch.tensor([tokenizer(TEXT)["input_ids"]])
    assert LLAMA3_BOS + 9 in model.generate(prompt, max_new_tokens=20, do_sample=False)[0, prompt.size(1) :]
    out, _ = command("src.predict", f"ckpt=hf:{directory}", f"text={TEXT}", "decode.max_new_tokens=20")
    assert out.rstrip("\n") == TEXT + hf_continuation(model, tokenizer, TEXT)


@pytest.mark.parametrize(
    "text, longer",
    [
        ("Hi<|eot_id|>The cat sat", LLAMA3_BOS + 9),  # a chat prompt holds the end of a turn: the reply is after it
        ("The cat sat on the", LLAMA3_BOS + 8),  # <|eom_id|>: a stop id of config.json, not the tokenizer's eos
    ],
    ids=["chat-prompt", "eom-stop"],
)
def test_a_llama3_instruct_reply_is_what_generate_gives_up_to_any_of_its_ends(tmp_path, text, longer):
    """The reply src.predict prints is generate()'s, cut at the first of the model's ends (config.json's eos ids, the
    tokenizer's eos), after a prompt that may itself hold one."""
    stops = [LLAMA3_BOS + 1, LLAMA3_BOS + 8, LLAMA3_BOS + 9]
    model = tiny_tokenized_decoder("llama3", eos_token_id=stops)
    with torch.no_grad():  # a longer row (tied: its output too), so that greedy decoding comes to that end
        model.model.embed_tokens.weight[longer] *= 2
    directory = save(model, tmp_path, functools.partial(save_llama3_tokenizer, instruct=True), LLAMA3_VOCAB)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    out, _ = command("src.predict", f"ckpt=hf:{directory}", f"text={text}", "decode.max_new_tokens=20")
    expected = hf_continuation(model, tokenizer, text)
    assert expected and out.rstrip("\n") == text + expected


def hf_translation(model, tokenizer, text: str, use_cache: bool = True) -> str:
    """T5's greedy translation of `text` (tokenizer(text): with its </s>), never the pad token (our decoder's start,
    never an output of ours), decoded up to the first </s>."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    settings = dict(max_new_tokens=20, num_beams=1, do_sample=False, bad_words_ids=[[T5_PAD]], use_cache=use_cache)
    generated = model.generate(ids, **settings)[0, 1:].tolist()  # without the start token
    generated = generated[: generated.index(T5_EOS)] if T5_EOS in generated else generated
    return tokenizer.decode(generated, skip_special_tokens=False)


@pytest.mark.parametrize("style", ["t5", "flan"])
@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["no-prefix", "typed-prefix"])
def test_predict_translates_as_t5_does_in_huggingface(style, prefix, request):
    """With ckpt=hf: the prefix is typed in the text, as transformers' users type it."""
    directory = request.getfixturevalue("t5_dir" if style == "t5" else "flan_t5_dir")
    text = prefix + "The dog runs in the park."
    out, err = command("src.predict", f"ckpt=hf:{directory}", f"text={text}", "decode.max_new_tokens=20")
    assert not warnings_of(err)  # no task: the text is all there is, prefix and all
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    # transformers 5's generate sizes T5's cache by the encoder's depth, short of the flan model's decoder
    expected = hf_translation(tiny_t5(style), tokenizer, text, use_cache=style == "t5")
    assert out.rstrip("\n") == expected


@pytest.mark.parametrize("family", ["qwen2", "smollm", "llama3"])
def test_eval_scores_a_decoder_family_on_a_text_as_transformers_does(family, request, tmp_path):
    """test/loss is transformers' mean cross-entropy per target token over the test windows of the family's tokens
    (all its rows scored, Qwen2's padded ones included); the windows are the text as the tokenizer reads it, Llama
    3's <|begin_of_text|> once in front."""
    directory = request.getfixturevalue(f"{family}_dir")
    task = story(tmp_path)
    out, _ = command("src.eval", f"ckpt=hf:{directory}", *task)
    settings = OmegaConf.create({"name": "char_lm", "path": str(tmp_path / "story.txt"), "block_size": 16})
    _, datamodule = load_run(f"hf:{directory}", checkpoint=read_any_checkpoint(f"hf:{directory}", settings))
    hf, total, count = tiny_tokenized_decoder(family), 0.0, 0
    text = transformers.AutoTokenizer.from_pretrained(directory)(STORY)["input_ids"]
    splits = [datamodule.task.train, datamodule.task.val, datamodule.task.test]
    windows = [window["tokens"].tolist() for split in splits for window in split]
    assert windows[0] == text[:17]  # <|begin_of_text|> and 16 more for Llama 3; 17 tokens of the text for the others
    bos = hf.config.bos_token_id
    assert sum(window.count(bos) for window in windows) == int(BOS_IN_FRONT[family])
    with torch.no_grad():
        for window in datamodule.task.test:
            tokens = window["tokens"][None]  # (1, L + 1)
            logits = hf(tokens[:, :-1]).logits  # (1, L, vocabulary)
            total += torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:], reduction="sum").item()
            count += tokens.size(1) - 1
    assert float(metric_line(out, "test/loss").split()[1]) == pytest.approx(total / count, abs=1e-4)


def test_eval_scores_t5_on_translation_with_its_prefix_and_warns_once_without(t5_dir, flan_t5_dir, tmp_path):
    """t5-small's config.json names its prefixes: without task.src_prefix one warning names them; Flan-T5's names
    none (it reads instructions), and gets none."""
    task = parallel_files(tmp_path)
    out, err = command("src.eval", f"ckpt=hf:{t5_dir}", *task, f"task.src_prefix={PREFIX}")
    assert "test/sacrebleu" in out and not warnings_of(err)
    out, err = command("src.eval", f"ckpt=hf:{t5_dir}", *task)
    assert "test/sacrebleu" in out
    (line,) = warnings_of(err)
    assert f'task.src_prefix="{PREFIX}"' in line and '"summarize: " (summarization)' in line, line
    out, err = command("src.eval", f"ckpt=hf:{flan_t5_dir}", *task)
    assert "test/sacrebleu" in out and not warnings_of(err)


def test_a_fine_tuned_t5_keeps_its_prefix_and_is_the_pretrained_model_read_back(t5_dir, tmp_path):
    run_dir = tmp_path / "run"
    fine_tune(t5_dir, run_dir, *parallel_files(tmp_path), f"task.src_prefix={PREFIX}")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    assert saved["config"]["task"]["src_prefix"] == PREFIX
    assert saved["model_config"]["tgt_vocab_size"] == VOCAB  # the padded embedding, all its rows
    module, datamodule = load_run(str(checkpoint))
    tokenizer = transformers.AutoTokenizer.from_pretrained(t5_dir)
    assert datamodule.task.train[0]["src"].tolist() == tokenizer(PREFIX + PAIRS[0][0])["input_ids"]  # with </s>
    assert datamodule.encode_src(PAIRS[1][0]) == tokenizer(PREFIX + PAIRS[1][0])["input_ids"]  # predict's input
    line = "The dog runs in the park."
    ours = command("src.predict", f"ckpt={checkpoint}", f"text={line}", "decode.max_new_tokens=20")[0]
    assert ours == command("src.predict", f"ckpt=hf:{t5_dir}", f"text={PREFIX}{line}", "decode.max_new_tokens=20")[0]
    assert ours.rstrip("\n") == hf_translation(tiny_t5("t5"), tokenizer, PREFIX + line)
    tuned, err = command("src.eval", f"ckpt={checkpoint}")
    assert not warnings_of(err)  # trained with its prefix: nothing to say
    pretrained = command("src.eval", f"ckpt=hf:{t5_dir}", *parallel_files(tmp_path), f"task.src_prefix={PREFIX}")[0]
    assert metric_line(tuned, "test/sacrebleu") == metric_line(pretrained, "test/sacrebleu")


def test_a_fine_tuned_flan_t5_with_a_deeper_decoder_says_null_layers_and_resumes(flan_t5_dir, tmp_path):
    """Flan-T5's tiny model has 2 encoder and 3 decoder layers: no one `model.layers` is both, so the run config says
    null beside the two counts (not the composed default model's 2), and a resume reads it back."""
    run_dir = tmp_path / "run"
    task = parallel_files(tmp_path)
    fine_tune(flan_t5_dir, run_dir, *task)
    model = OmegaConf.load(run_dir / ".hydra" / "config.yaml").model
    assert (model.layers, model.enc_layers, model.dec_layers) == (None, 2, 3)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["config"]
    assert saved["model"]["layers"] is None
    more = ["trainer.max_steps=3", "trainer.val_check_interval=2", "ckpt_path=last", "batch_size=2", "torch_threads=1"]
    more += ["optimizer.lr=1e-30", "optimizer.weight_decay=0"]
    command("src.run", f"model.pretrained={flan_t5_dir}", *task, *more, f"hydra.run.dir={run_dir}")
    assert read_any_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    typed = refused(
        "src.run", f"model.pretrained={flan_t5_dir}", *task, "model.layers=null", f"hydra.run.dir={run_dir}2"
    )
    assert (
        typed
        == f"error: model.layers is set by model.pretrained={flan_t5_dir} (its config.json): leave model.layers out"
    )


def test_fine_tuning_t5_without_a_prefix_warns_once(t5_dir, tmp_path):
    err = fine_tune(t5_dir, tmp_path / "run", *parallel_files(tmp_path))
    (line,) = [line for line in warnings_of(err) if "task.src_prefix" in line]
    assert line.startswith(f"warning: model.pretrained={t5_dir} was trained with a prefix in front of every source")


def metric_line(out: str, tag: str) -> str:
    """src.eval's line of one metric: its value and what it is."""
    (line,) = [line for line in out.splitlines() if line.strip().startswith(f"{tag}:")]
    return line


def test_a_fine_tuned_mistral_reads_its_text_as_llama_does_and_keeps_its_window(mistral_dir, tmp_path):
    """char_lm with Mistral's (Llama 2's) tokenizer: the text is one document, <s> in front, as tokenizer(text)
    reads it; the window of 5 stays; the checkpoint continues and scores text as the pretrained model does."""
    run_dir = tmp_path / "run"
    task = story(tmp_path)
    fine_tune(mistral_dir, run_dir, *task)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    module, datamodule = load_run(str(checkpoint))
    tokenizer = transformers.AutoTokenizer.from_pretrained(mistral_dir)
    assert datamodule.task.train[0]["tokens"].tolist() == tokenizer(STORY)["input_ids"][:17]  # <s> and 16 more
    assert module.model_cfg.mask == {"type": "window", "window": 5}
    assert module.model_cfg.tgt_vocab_size == LLAMA_VOCAB
    args = [f"text={TEXT}", "decode.max_new_tokens=20"]
    ours = command("src.predict", f"ckpt={checkpoint}", *args)[0]
    assert ours == command("src.predict", f"ckpt=hf:{mistral_dir}", *args)[0]
    tuned = command("src.eval", f"ckpt={checkpoint}")[0]
    pretrained = command("src.eval", f"ckpt=hf:{mistral_dir}", *task)[0]
    assert metric_line(tuned, "test/loss") == metric_line(pretrained, "test/loss")


def test_analyze_scores_each_query_head_of_a_grouped_model(llama_dir, tmp_path):
    """4 query heads share 2 key/value heads in each of the 2 layers: a row per query head."""
    out = tmp_path / "analysis"
    command("src.analyze", f"ckpt=hf:{llama_dir}", *story(tmp_path), f"out={out}", "max_examples=8")
    with open(out / "heads.csv") as f:
        heads = [row["name"] for row in csv.DictReader(f)]
    assert heads == [f"decoder_self:{layer}:{head}" for layer in range(2) for head in range(4)]


def test_a_padded_embedding_is_read_and_its_ids_without_a_token_decode_to_nothing(qwen2_dir):
    """Qwen2's tiny model has VOCAB rows, its tokenizer VOCAB - PADDED tokens: accepted, and an id past the last token
    (which the model may score) decodes to nothing, as in transformers, and is labelled by its number."""
    endoftext = QWEN2_ENDOFTEXT
    tokenizer = PretrainedTokenizer.load(qwen2_dir, SpecialIds(endoftext, endoftext, endoftext), VOCAB, "qwen2")
    assert tokenizer.size == VOCAB - PADDED
    ids = tokenizer.encode("The cat")
    assert tokenizer.decode([*ids, VOCAB - 1, *ids]) == "The catThe cat"
    assert transformers.AutoTokenizer.from_pretrained(qwen2_dir).decode([*ids, VOCAB - 1, *ids]) == "The catThe cat"
    assert tokenizer.token_strings([*ids, VOCAB - 1]) == [*tokenizer.token_strings(ids), f"<id {VOCAB - 1}>"]


def test_a_tokenizer_larger_than_its_model_or_far_smaller_is_refused_in_one_line(tmp_path):
    """A padded embedding has spare rows (test above); a tokenizer with more tokens than the model has rows, or far
    fewer than a padding's, is another model's."""
    tokens = VOCAB - PADDED
    larger = save(tiny_tokenized_decoder("qwen2", vocab_size=tokens - 1), tmp_path / "a", save_qwen2_tokenizer, tokens)
    line = refused("src.predict", f"ckpt=hf:{larger}", f"text={TEXT}")
    assert f"its tokenizer has {tokens} tokens and its model {tokens - 1} embedding rows, so the ids from" in line
    smaller = save(
        tiny_tokenized_decoder("qwen2", vocab_size=tokens + 129), tmp_path / "b", save_qwen2_tokenizer, tokens
    )
    line = refused("src.predict", f"ckpt=hf:{smaller}", f"text={TEXT}")
    assert f"its tokenizer has {tokens} tokens and its model {tokens + 129}: the tokenizer files" in line, line


@pytest.mark.parametrize(
    "prefix, message",
    [
        ("'  '", r"task.src_prefix='  ' is only whitespace: give the text every source starts with"),
        (
            "translation_en_to_de",
            r"is the name of one of .*'s tasks, not the text .*: "
            r"give 'task.src_prefix=\"translate English to German: \"'",
        ),
        ("translate English to German:", r"prefix for translation_en_to_de without the space it ends in"),
    ],
    ids=["whitespace", "task-name", "no-space"],
)
def test_a_bad_prefix_is_refused_in_one_line(prefix, message, t5_dir, tmp_path):
    task = [*parallel_files(tmp_path), f"task.src_prefix={prefix}"]
    assert re.search(message, refused("src.eval", f"ckpt=hf:{t5_dir}", *task))
    run_dir = tmp_path / "run"
    assert re.search(message, refused("src.run", f"model.pretrained={t5_dir}", *task, f"hydra.run.dir={run_dir}"))
    assert not run_dir.exists()  # refused before Hydra wrote anything


def test_the_attention_page_of_a_grouped_model_says_which_heads_share_their_keys(llama_dir, tmp_path):
    """The page's top line names the axes that change how attention reads (model.kv_heads, the positional scheme),
    and each query head's note names its key/value head and the heads sharing it, grouped as our attention groups
    them (MultiHeadAttention.kv_group: 4 query heads on 2 key/value heads)."""
    from tests.dashboard.test_explorer import data_of

    page = tmp_path / "attention.html"
    command("src.predict", f"ckpt=hf:{llama_dir}", f"text={TEXT}", f"attention={page}", "decode.max_new_tokens=2")
    data = data_of(page)
    assert "4 heads a layer sharing 2 key/value heads (model.kv_heads=2), model.pos_encoding=rope" in data["about"]
    groups = data["sites"]["decoder_self"]["kv_groups"]
    assert groups == [
        [
            f"key/value head {h // 2} of k@decoder_self:{layer} and v@decoder_self:{layer}, shared by "
            f"decoder_self:{layer}:{h // 2 * 2}, decoder_self:{layer}:{h // 2 * 2 + 1}"
            for h in range(4)
        ]
        for layer in range(2)
    ]  # each head as ablate.heads takes it, the key/value head as k@ and v@ index it


def test_the_missing_prefix_warning_gives_the_prefix_of_the_tasks_own_direction():
    """multi30k is German -> English by default, which t5-small was never trained for: the warning says so rather
    than suggest English -> German's prefix; for en -> de it gives that one, quoted as the command line needs it."""
    from src.pretrained.fit import missing_prefix_line

    config = tiny_t5("t5").config  # with t5-small's four task prefixes (conftest.T5_TASKS)
    de_en = missing_prefix_line("t5-small", config, {"src_lang": "de", "tgt_lang": "en"})
    assert "it names no prefix for de -> en" in de_en and "choose a direction it knows" in de_en
    en_de = missing_prefix_line("t5-small", config, {"src_lang": "en", "tgt_lang": "de"})
    assert "give 'task.src_prefix=\"translate English to German: \"' (translation_en_to_de;" in en_de
    assert missing_prefix_line("flan-t5", tiny_t5("flan").config, {"src_lang": "de", "tgt_lang": "en"}) is None


# --- src.analyze on Qwen2, Mistral and T5: head importance, patching on a pairs file, the logit lens -----------------
# Each family's tiny model (conftest: a tokenizer of its own beside it) on the task it is read with: the story as a
# text file for the decoders, the parallel files English -> German with T5's prefix. T5's analysis reads every site
# of an encoder-decoder (8 heads a layer, the original T5's tiny model), the decoders' one self-attention site.
ANALYSED = {
    "qwen2": ("qwen2_dir", ["decoder_self"], 4),
    "mistral": ("mistral_dir", ["decoder_self"], 4),
    "t5": ("t5_dir", ["encoder_self", "decoder_self", "cross"], 8),
}
# A pair per family, the texts one token apart in its tokenizer and each answer one token: the decoders score the
# token after the text; T5 the target's first token (no fifth column: the decoder reads its start token alone)
ANALYSIS_PAIRS = {
    "qwen2": "The cat sat on the\tThe bat sat on the\ta\to",
    "mistral": "The cat sat on the\tThe cat sat in the\ta\to",
    "t5": "The cat sat.\tThe bat sat.\tThe\tthe",
}


def analysed_task(family: str, directory) -> list[str]:
    return [*parallel_files(directory), f"task.src_prefix={PREFIX}"] if family == "t5" else story(directory)


def every_head(family: str) -> set[str]:
    _, sites, heads = ANALYSED[family]
    return {f"{site}:{layer}:{head}" for site in sites for layer in range(2) for head in range(heads)}


def is_number(text) -> bool:
    return math.isfinite(float(text))


@pytest.mark.parametrize("family", list(ANALYSED))
def test_analyze_of_qwen2_mistral_and_t5_scores_every_head_and_its_top_head_pastes_into_ablate_heads(
    family, request, tmp_path
):
    """`src.analyze ckpt=hf:<dir> task=... out=...` (docs/pretrained.md) writes the report, the tables and the heat
    maps for every query head of every site, with finite figures; the head the report names first (its removal
    costs most) pasted into `ablate.heads=[...]` of src.eval gives the test loss heads.csv has without it, and a
    loss other than the model's own: the names are the ones ablation reads, and they name the head that was
    removed."""
    directory = request.getfixturevalue(ANALYSED[family][0])
    task = analysed_task(family, tmp_path)
    out = tmp_path / "analysis"
    command("src.analyze", f"ckpt=hf:{directory}", *task, f"out={out}", "split=test", "max_examples=8")
    written = {path.name for path in out.iterdir()}
    assert {"report.md", "heads.csv", "keep_one.csv", "pruning.csv", "summary.json", "importance.png"} <= written
    with open(out / "heads.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == every_head(family) and len(rows) == len(every_head(family))
    for row in rows.values():
        assert all(is_number(row[column]) for column in ("importance", "entropy", "loss_without")), row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "test" and math.isfinite(summary["figures"]["baseline"])
    report = (out / "report.md").read_text()
    # the answer's first line: the heads whose removal costs most, or (T5's tiny model scores sacreBLEU 0, which no
    # removal can lower) the costliest by the loss
    top = re.search(r"## The answer\s+- [^\n]*?`(\w+:\d+:\d+)`", report).group(1)
    assert top in rows
    own = float(metric_line(command("src.eval", f"ckpt=hf:{directory}", *task)[0], "test/loss").split()[1])
    ablated, _ = command("src.eval", f"ckpt=hf:{directory}", *task, f"ablate.heads=[{top}]")
    without = float(metric_line(ablated, "test/loss").split()[1])
    assert without == pytest.approx(float(rows[top]["loss_without"]), abs=1e-4) and without != own


@pytest.mark.parametrize("family", list(ANALYSED))
def test_patching_qwen2_mistral_and_t5_on_a_pairs_file_restores_exactly_at_the_changed_token(family, request, tmp_path):
    """`src.analyze ckpt=hf:<dir> analysis=patching pairs=<file>` with a path from the first layer's first head to
    each head of the second: the pair's texts differ in one token (in transformers' tokenizer), so patching the clean
    residual stream entering the first layer restores the clean run exactly there (fraction 1) and nowhere else
    (0), whatever the weights: RoPE (Qwen2, Mistral in its window) and T5's relative positions add nothing to the
    stream there. Every head has a finite fraction, named as ablate.heads names it, and each path is in the file."""
    from .test_causal_commands import first_layer_rows

    directory = request.getfixturevalue(ANALYSED[family][0])
    line = ANALYSIS_PAIRS[family]
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    clean, corrupted = (tokenizer(text)["input_ids"] for text in line.split("\t")[:2])
    (changed,) = [i for i, (a, b) in enumerate(zip(clean, corrupted, strict=True)) if a != b]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(line + "\n")
    out = tmp_path / "patching"
    sender, receiver = ("encoder_self", "cross") if family == "t5" else ("decoder_self", "decoder_self")
    paths = [f"senders=[{sender}:0:0]", f"receivers=[{receiver}:1:*]"]
    command("src.analyze", f"ckpt=hf:{directory}", "analysis=patching", f"pairs={pairs}", f"out={out}", *paths)
    assert {"report.md", "patching.csv", "paths.csv", "summary.json", "resid_pre.png", "heads.png"} <= {
        p.name for p in out.iterdir()
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 1 and summary["clean"] != summary["corrupted"]
    assert math.isfinite(summary["clean"]) and math.isfinite(summary["corrupted"])
    restored = summary["heads_restored"]
    assert set(restored) == every_head(family) and all(math.isfinite(v) for v in restored.values())
    receivers = sorted((h for h in restored if h.startswith(f"{receiver}:1:")), key=lambda h: int(h.split(":")[2]))
    channels = ("k", "v") if receiver == "cross" else ("q", "k", "v")  # an encoder head reaches cross via K and V
    with open(out / "paths.csv") as f:
        found = [(row["receiver"], row["channel"], is_number(row["restored"])) for row in csv.DictReader(f)]
    assert found == [(head, channel, True) for head in receivers for channel in channels]
    fractions = first_layer_rows(out, "encoder" if family == "t5" else "decoder")
    assert sorted(fractions) == list(range(len(clean)))  # every position of the text the tokenizer gives
    assert fractions[changed] == pytest.approx(1.0, abs=1e-3)
    assert all(abs(value) < 1e-3 for position, value in fractions.items() if position != changed)


@pytest.mark.parametrize("family", list(ANALYSED))
def test_the_logit_lens_of_qwen2_mistral_and_t5_ends_at_their_loss_and_attributes_every_decoder_head(
    family, request, tmp_path
):
    """`src.analyze ckpt=hf:<dir> analysis=lens task=...`: the decoder's stream entering its first layer and after
    each of its 2 layers; the last is the output, so its loss is the model's and its top-1 token always the
    model's. All three are pre-LN (RMSNorm): direct logit attribution is defined, has a share for every head writing
    into the decoder's stream (Qwen2's and Mistral's self-attention, T5's self- and cross-attention) and the
    shares sum to the target's logit."""
    directory = request.getfixturevalue(ANALYSED[family][0])
    out = tmp_path / "lens"
    _, err = command(
        "src.analyze", f"ckpt=hf:{directory}", "analysis=lens", *analysed_task(family, tmp_path), f"out={out}"
    )
    assert not warnings_of(err)
    assert {"report.md", "summary.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stack"] == "decoder" and summary["attribution_undefined"] is None
    assert [row["layer"] for row in summary["lens"]] == ["embed", 0, 1]
    assert all(math.isfinite(row["loss"]) for row in summary["lens"])
    assert summary["lens"][-1]["loss"] == pytest.approx(summary["loss"], rel=1e-5)
    assert summary["lens"][-1]["top1_agreement"] == 1.0
    decoder_heads = {head for head in every_head(family) if not head.startswith("encoder")}
    assert decoder_heads <= set(summary["attribution"])
    total = sum(summary["attribution"].values())
    assert total == pytest.approx(summary["target_logit"], rel=1e-4, abs=1e-4)
