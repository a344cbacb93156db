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
