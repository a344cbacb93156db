"""Text samples: a markdown table of the model's outputs after each validation run, readable in TensorBoard."""

import pytest
import torch

from src.dashboard import TextSampleLogger, read_events
from src.dashboard.explorer import attention_on_text
from src.dashboard.text_samples import markdown_table
from src.model import generate
from src.predict import read_inputs
from src.training import inference
from src.training.checkpoint import load_run

LM_SAMPLE = "a | b <unk> *c*\nnext line"


@pytest.fixture
def perfect_decoding(monkeypatch):
    """The fake network cannot decode: greedy decoding returns the reference (a perfect model), sampling a fixed
    text full of markdown's special characters. Returns the extra_tokens each greedy decode was given."""
    extra_tokens_seen = []

    def greedy_decode(model, kind, batch, extra_tokens=0):
        extra_tokens_seen.append(extra_tokens)
        return batch["tgt_out"]

    monkeypatch.setattr(inference, "greedy_decode", greedy_decode)
    monkeypatch.setattr(inference, "sample_text", lambda model, datamodule, decode: LM_SAMPLE)
    return extra_tokens_seen


@pytest.mark.parametrize("kind", ["seq2seq", "lm", "classification"])
def test_a_table_after_each_validation_run(tmp_path, fit, perfect_decoding, kind):
    fit(kind, [TextSampleLogger(num_examples=3)])
    events = read_events(tmp_path)

    # After each of the two validation runs (the sanity check is skipped).
    assert events.text_tags == {"samples/validation"}
    texts = events.texts["samples/validation"]
    assert len(texts) == 2
    if kind == "seq2seq":
        assert "| source | target | greedy output |" in texts[0][1] and "✓" in texts[0][1]
        assert perfect_decoding == [3, 3]  # the module's extra_decode_tokens
    elif kind == "lm":
        assert "```" in texts[0][1] and "<unk>" in texts[0][1]  # inside a code block, kept verbatim
    else:
        assert "negative" in texts[0][1] or "positive" in texts[0][1]


def test_markdown_cells_survive_tensorboard_rendering():
    from tensorboard import plugin_util

    table = markdown_table(["source", "output"], [["x <unk> y | z *w*", ""]])
    html = plugin_util.markdown_to_safe_html(table)  # what the TEXT tab shows
    assert "&lt;unk&gt;" in html and "| z *w*" in html and html.count("<td>") == 2


def test_a_rows_example_number_is_its_attention_images_example_number(tmp_path, fit):
    """Both count the validation split's examples from 0: row `example 1` of the table and the images tagged
    `/example_1` show the split's example 1, not the first and the second."""
    from src.dashboard import AttentionMapLogger

    from .conftest import FakeDataModule

    fit("classification", [TextSampleLogger(num_examples=2), AttentionMapLogger(every_n_steps=4, num_examples=2)])
    events = read_events(tmp_path)
    table = events.texts["samples/validation"][-1][1]
    header, _, *rows = table.splitlines()
    assert header.startswith("| example | sentence |")
    datamodule = FakeDataModule("classification")
    numbers = []
    for row in rows:
        number, sentence = [cell.strip() for cell in row.strip("|").split("|")[:2]]
        numbers.append(int(number))
        assert sentence == datamodule.decode_src(datamodule.src[int(number)])  # the split's example of that number
    examples = {int(tag.rsplit("_", 1)[1]) for tag in events.image_tags if "/example_" in tag}
    assert numbers == [0, 1] and examples == set(numbers)


# --- a pretrained Llama: its tokenizer puts <s> in front of every input ---------------------------------------------

PROMPT = "The cat sat on the"


@pytest.fixture(scope="module")
def fine_tuned_llama(tmp_path_factory):
    """A tiny Llama (tests/pretrained: Llama 2's tokenizer layout, <s> = 1) fine-tuned for 2 steps with the
    TensorBoard dashboards on, by src.run in this process: its run directory."""
    pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")
    from tests.conftest import run_in_process
    from tests.pretrained.conftest import save_tokenized_decoder

    root = tmp_path_factory.mktemp("llama_samples")
    model_dir = save_tokenized_decoder("llama", root / "llama")
    story = root / "story.txt"
    story.write_text("The cat sat on the mat and the dog ran to the park. " * 40)
    run_dir = root / "run"
    code, _, err = run_in_process(
        "src.run", f"model.pretrained={model_dir}", "task=char_lm", f"task.path={story}", "task.block_size=16",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "batch_size=2", "torch_threads=1",
        "dashboard.attention_maps=false", "dashboard.attention_stats=false", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert code == 0, err
    return run_dir


def test_a_llama_sample_shows_the_s_it_read_as_the_attention_page_does(fine_tuned_llama):
    """Sampling starts from <s>, Llama's mark in front of an input: the sample writes it, as the attention page of
    the same (empty) prompt labels it and src.predict reads it."""
    table = read_events(fine_tuned_llama).texts["samples/validation"][-1][1]
    sample = table.split("```\n", 1)[1]
    module, datamodule = load_run(str(fine_tuned_llama / "checkpoints" / "last.ckpt"))
    view, _ = attention_on_text(module.model, datamodule, "")
    assert view.tokens["tgt"] == ["<s>"]
    assert sample.startswith("<s>") and not sample.startswith("<s><s>")


def test_a_llama_prompt_is_read_and_shown_as_src_predict_and_the_attention_page_read_it(fine_tuned_llama):
    """A prompt given to the sample (inference.sample_text) is read with <s> in front, as src.predict reads it, and
    the sample is drawn from those ids and shows them."""
    module, datamodule = load_run(str(fine_tuned_llama / "checkpoints" / "last.ckpt"))
    (ids,) = read_inputs(datamodule, [PROMPT], ["text"])  # what src.predict reads: <s> in front
    view, _ = attention_on_text(module.model, datamodule, PROMPT)
    assert view.tokens["tgt"][0] == "<s>" and len(view.tokens["tgt"]) == len(ids)
    sample = inference.sample_text(module.model, datamodule, {}, max_new_tokens=8, prompt=PROMPT, seed=0)
    drawn = generate(
        module.model, prompt=torch.tensor([ids]), max_new_tokens=8, strategy="sample",
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert sample == "<s>" + PROMPT + datamodule.decode_tgt(drawn[0])
