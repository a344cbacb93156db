"""Text samples: a markdown table of the model's outputs after each validation run, readable in TensorBoard."""

import pytest

from src.dashboard import TextSampleLogger, read_events
from src.dashboard.text_samples import markdown_table
from src.training import inference

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
