"""The attention page of one text (src.predict ... attention=<file.html>): what it holds, that it needs no network,
that it says what its numbers are, and the one-line refusals. (Its drawing and layout are checked in a real
browser by the browser tests.)"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from src.dashboard.explorer import attention_on_text, page_data, read_importance, render_page
from src.data.vocab import readable
from src.training.checkpoint import load_run
from tests.conftest import run_in_process

from .attention_pages import TEXTS, tiny_run, write_attention_page


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """An encoder-decoder (reverse task) of 2 layers x 2 heads a site, trained for 4 steps, without an analysis."""
    return tiny_run("seq2seq", tmp_path_factory)


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory) -> Path:
    return tiny_run("seq2seq", tmp_path_factory, analysed=True)


def not_json(constant: str):
    raise ValueError(f"{constant} is not JSON: the browser's JSON.parse refuses it and the page stays blank")


def data_of(page: Path) -> dict:
    """The page's data, read as strictly as the browser reads it (no NaN or Infinity)."""
    text = page.read_text(encoding="utf-8")
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    assert found is not None
    return json.loads(found.group(1), parse_constant=not_json)


def predict(*args: str) -> tuple[int, str, str]:
    return run_in_process("src.predict", *args)


def test_the_page_holds_every_site_layer_and_head_and_loads_nothing(run, tmp_path):
    page = tmp_path / "attention.html"
    code, out, err = predict(f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "text=31415", f"attention={page}")
    assert code == 0, err
    assert f"attention: {page}" in err
    html = page.read_text(encoding="utf-8")
    # Self-contained: no script, style, image or font from anywhere (the SVG namespace is a name, not a fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html) and "@import" not in html
    assert "<script src" not in html and "<link" not in html
    data = data_of(page)
    assert set(data["sites"]) == {"encoder_self", "decoder_self", "cross"}
    for site in data["sites"].values():
        weights = torch.tensor(site["weights"])  # (L, H, Tq, Tk)
        queries, keys = len(data["tokens"][site["queries"]]), len(data["tokens"][site["keys"]])
        assert weights.shape == (2, 2, queries, keys)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, queries), atol=2e-3, rtol=0)  # rounded to 1e-4
    assert data["tokens"]["src"] == ["3", "1", "4", "1", "5"]
    assert data["tokens"]["tgt"][0] == "<bos>"  # the decoder side: its own output, as it reads it
    # What the model made of the text is on the page, as predict printed it, and which model it is
    assert data["prediction"]["what"] == "output (greedy decoding)"
    assert data["prediction"]["text"] == out.strip()
    assert "encoder-decoder, 2 + 2 layers, 2 heads a layer" in data["about"] and "step 4" in data["about"]
    assert data["sides"] == {"src": "input tokens (encoder)", "tgt": "output tokens (decoder)"}


def test_heads_and_layers_are_named_as_ablate_heads_reads_them(run, tmp_path):
    """The issue's example: a head read on the page is pasted into ablate.heads and switches that very head off."""
    page = tmp_path / "names.html"
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    code, _, err = predict(ckpt, "text=271", f"attention={page}")
    assert code == 0, err
    cross = data_of(page)["sites"]["cross"]
    assert cross["names"] == [["cross:0:0", "cross:0:1"], ["cross:1:0", "cross:1:1"]]
    assert cross["layer_names"] == ["cross:0", "cross:1"]
    name = cross["names"][1][0]
    switched = tmp_path / "switched.html"
    code, _, err = predict(ckpt, "text=271", f"attention={switched}", f"ablate.heads=[{name}]")
    assert code == 0, err
    data = data_of(switched)
    assert data["sites"]["cross"]["ablated"] == [[False, False], [True, False]]
    assert data["switched_off"] == [name]


def test_ablated_heads_and_the_runs_head_importance_are_on_the_page_and_say_what_they_are(analysed_run, tmp_path):
    page = tmp_path / "ablated.html"
    args = [f"ckpt={analysed_run / 'checkpoints' / 'last.ckpt'}", "text=271", f"attention={page}"]
    code, _, err = predict(*args, "ablate.heads=[cross:1:0]")
    assert code == 0, err
    data = data_of(page)
    assert data["start"] is None
    assert data["sites"]["cross"]["ablated"] == [[False, False], [True, False]]
    assert data["sites"]["encoder_self"]["ablated"] == [[False, False], [False, False]]
    importance = data["sites"]["encoder_self"]["importance"]
    assert len(importance) == 2 and len(importance[0]) == 2 and all(v >= 0 for row in importance for v in row)
    # The number is said to be an importance: which measure, on which data, from which checkpoint and step
    summary = json.loads((analysed_run / "analysis" / "summary.json").read_text())
    about = data["importance_about"]
    assert "Michel et al. 2019" in about and "normalised per layer" in about
    assert f"over {summary['examples']} {summary['split']} examples" in about
    assert f"on best.ckpt (step {summary['step']})" in about
    # And each head's own figures, for when it is pointed at: its exact effect on the run's metric
    with (analysed_run / "analysis" / "heads.csv").open() as file:
        row = next(r for r in csv.DictReader(file) if (r["site"], r["layer"], r["head"]) == ("cross", "1", "0"))
    assert (
        f"{summary['metric']} without this head alone: {float(row['metric_without']):.3f}"
        in (data["sites"]["cross"]["notes"][1][0])
    )


def test_a_head_the_analysis_did_not_measure_leaves_the_page_readable(run, tmp_path):
    """An analysis made with a head switched off has no importance for it (NaN in heads.csv): the page's data must
    stay JSON (NaN is not), and the head is said to be unmeasured."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    code, _, err = run_in_process("src.analyze", f"ckpt={copy}", "ablate.heads=[cross:1:0]", "torch_threads=1")
    assert code == 0, err
    with (copy / "analysis" / "heads.csv").open() as file:
        rows = {(r["site"], r["layer"], r["head"]): r for r in csv.DictReader(file)}
    assert math.isnan(float(rows[("cross", "1", "0")]["importance_normalised"]))  # what src.analyze writes
    page = tmp_path / "unmeasured.html"
    code, _, err = predict(f"ckpt={copy / 'checkpoints' / 'last.ckpt'}", "text=12", f"attention={page}")
    assert code == 0, err
    cross = data_of(page)["sites"]["cross"]
    assert cross["importance"][1][0] is None and cross["importance"][1][1] is not None
    assert cross["notes"][1][0].startswith("importance not measured")


def test_an_analysis_of_another_step_is_said_to_be_so(analysed_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(analysed_run, copy)
    summary_file = copy / "analysis" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary["step"] = 2  # as if src.analyze had measured an earlier checkpoint of the run
    summary_file.write_text(json.dumps(summary))
    page = tmp_path / "other_step.html"
    code, _, err = predict(f"ckpt={copy / 'checkpoints' / 'last.ckpt'}", "text=12", f"attention={page}")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "analysis of step 2" in warnings[0] and "at step 4" in warnings[0], err
    assert data_of(page)["importance_about"].endswith("The page's checkpoint is at step 4.")


def test_a_moved_checkpoint_shows_the_analysis_written_beside_it(run, tmp_path):
    """src.analyze writes a checkpoint moved out of its run into <name>_analysis beside it: the page reads it there."""
    moved = tmp_path / "kept" / "last.ckpt"
    moved.parent.mkdir()
    shutil.copy(run / "checkpoints" / "last.ckpt", moved)
    code, _, err = run_in_process("src.analyze", f"ckpt={moved}", "torch_threads=1")
    assert code == 0, err
    assert (tmp_path / "kept" / "last_analysis" / "heads.csv").is_file() and not (run / "analysis").exists()
    page = tmp_path / "moved.html"
    code, _, err = predict(f"ckpt={moved}", "text=12", f"attention={page}")
    assert code == 0, err
    data = data_of(page)
    assert data["sites"]["cross"]["importance"] is not None and "on last.ckpt (step 4)" in data["importance_about"]


def test_a_page_without_an_analysis_says_how_to_get_one(tmp_path_factory, tmp_path):
    lm = tiny_run("lm", tmp_path_factory)
    ckpt = lm / "checkpoints" / "last.ckpt"
    write_attention_page(lm, tmp_path / "lm.html", TEXTS["lm"])
    data = data_of(tmp_path / "lm.html")
    assert all(site["importance"] is None for site in data["sites"].values())
    assert f"`python -m src.analyze ckpt={ckpt}`" in data["importance_about"]


def test_a_classifiers_page_shows_the_label_and_probabilities_predict_prints(tmp_path_factory, tmp_path):
    """The issue's example: the page of a classifier did not show its predicted label."""
    run = tiny_run("classification", tmp_path_factory)
    out, _ = write_attention_page(run, tmp_path / "classifier.html", TEXTS["classification"])
    label, *probabilities = out.strip().splitlines()  # "positive", then "  positive: 0.512", ...
    prediction = data_of(tmp_path / "classifier.html")["prediction"]
    assert prediction["what"] == "predicted label" and prediction["text"] == label
    assert [f"  {name}: {p:.3f}" for name, p in prediction["choices"]] == probabilities
    data = data_of(tmp_path / "classifier.html")
    assert list(data["sites"]) == ["encoder_self"] and "encoder-only classifier" in data["about"]


def test_a_decoder_only_page_shows_the_next_token_and_a_long_text_keeps_its_end(tmp_path_factory, tmp_path):
    run = tiny_run("lm", tmp_path_factory)
    text = TEXTS["lm"]
    out, _ = write_attention_page(run, tmp_path / "lm.html", text, "decode.max_new_tokens=1")
    data = data_of(tmp_path / "lm.html")
    assert data["prediction"]["what"] == "next token (after the text)"
    assert data["prediction"]["text"] == readable(out[:-1][len(text)])  # the greedy continuation's first
    assert data["tokens"]["tgt"] == [readable(c) for c in text]
    # A text longer than the page shows: the last tokens are kept, the ones the next token is read from
    module, datamodule = load_run(str(run / "checkpoints" / "last.ckpt"))
    view, warnings = attention_on_text(module.model, datamodule, "To be, or not to be", max_tokens=6)
    assert view.tokens["tgt"] == [readable(c) for c in "not to be"[-6:]]
    assert warnings == ["the input has 19 tokens: the page shows the last 6"]


def test_gpt2_tokens_are_shown_without_the_tokenizers_marks(tmp_path):
    """The issue's example: GPT-2's byte-level pieces showed "Ġ" (a space) on the page. Each piece keeps its own
    label (the boundaries stay), with the text it stands for."""
    pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")
    from tests.pretrained.conftest import save, save_gpt2_tokenizer, tiny_gpt2

    model_dir = save(tiny_gpt2(), tmp_path / "gpt2", save_gpt2_tokenizer)
    text = "The quick brown fox jumps over the lazy dog"
    page = tmp_path / "gpt2.html"
    code, _, err = predict(f"ckpt=hf:{model_dir}", f"text={text}", f"attention={page}", "decode.max_new_tokens=2")
    assert code == 0, err
    tokens = data_of(page)["tokens"]["tgt"]
    assert not any(mark in token for token in tokens for mark in ("Ġ", "Ċ")), tokens
    from transformers import AutoTokenizer

    assert len(tokens) == len(AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"])  # one label a piece
    assert "".join(tokens).replace("␣", "") == text.replace(" ", "")  # the pieces' text, spaces aside


def test_a_given_target_is_the_decoder_side_and_long_inputs_are_cut_with_a_warning(run):
    module, datamodule = load_run(str(run / "checkpoints" / "last.ckpt"))
    view, warnings = attention_on_text(module.model, datamodule, "123456", target="654", max_tokens=4)
    assert view.tokens["src"] == ["1", "2", "3", "4"] and view.tokens["tgt"] == ["<bos>", "6", "5", "4"]
    assert warnings == ["the input has 6 tokens: the page shows the first 4"]
    assert view.prediction == {"what": "target (given with target=)", "text": "654", "choices": None}
    assert view.sides["tgt"] == "target tokens (decoder)"
    # bertviz's format: per layer (1, H, Tq, Tk), and both token lists
    bertviz = view.as_bertviz()
    assert bertviz["cross_attention"][0].shape == (1, 2, 4, 4) and bertviz["encoder_tokens"] == view.tokens["src"]
    view.title = "a <!-- <script> </script> text"  # inside the data block, no "<" is left to end or swallow it
    block = re.search(r'<script id="data" type="application/json">(.*?)</script>', render_page(view), re.S)
    assert block is not None and "<" not in block.group(1)
    assert json.loads(block.group(1))["title"] == view.title == page_data(view)["title"]


def test_read_importance_without_an_analysis_or_its_summary(tmp_path):
    assert read_importance(tmp_path) is None
    (tmp_path / "heads.csv").write_text("site,layer,head,importance_normalised\ncross,0,1,0.5\ncross,0,0,nan\n")
    importance = read_importance(tmp_path)  # heads.csv alone (no summary.json): the numbers, said to be importance
    assert importance is not None and importance.values == {"cross": [[None, 0.5]]}
    assert "Michel et al. 2019" in importance.about and importance.step is None


@pytest.mark.parametrize(
    "args,message",
    [
        (["text=12", "attention={existing}"], "already exists"),
        (["text=12", "attention={tmp}/no/such/folder/a.html"], "does not exist"),
        (["text=12", "attention={tmp}"], "is a directory"),
        (["input={existing}", "attention={tmp}/b.html"], "give text="),
        (["text=12", "target=21"], "add attention="),
        (["text=12", "attention_site=cross"], "add attention="),
        (["text=12", "attention={tmp}/d.html", "target= "], "target= is empty"),
        (["text=12", "attention={tmp}/c.html", "attention_site=decoder"], "has encoder_self, decoder_self, cross"),
    ],
    ids=[
        "exists",
        "no-folder",
        "directory",
        "input-file",
        "target-alone",
        "site-alone",
        "empty-target",
        "no-such-site",
    ],
)
def test_bad_attention_settings_are_refused_in_one_line_before_any_work(run, tmp_path, args, message):
    existing = tmp_path / "existing.html"
    existing.write_text("keep me")
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    code, out, err = predict(ckpt, *(arg.format(existing=existing, tmp=tmp_path) for arg in args))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert existing.read_text() == "keep me"


def test_bertviz_takes_the_tensors_as_they_are(run):
    """Both of bertviz's views accept as_bertviz() (when bertviz, an optional extra, is installed): encoder-decoder
    and, cut to one site, a single-stack model."""
    bertviz = pytest.importorskip("bertviz", reason="bertviz is optional: pip install bertviz")
    module, datamodule = load_run(str(run / "checkpoints" / "last.ckpt"))
    view, _ = attention_on_text(module.model, datamodule, "31415")
    for show in (bertviz.head_view, bertviz.model_view):
        page = show(**view.as_bertviz(), html_action="return")
        assert "31415"[0] in page.data and "<script" in page.data
    encoder_only = type(view)(tokens=view.tokens, attentions={"encoder_self": view.attentions["encoder_self"]})
    assert bertviz.model_view(**encoder_only.as_bertviz(), html_action="return").data


def test_the_page_opens_on_the_site_asked_for(run, tmp_path):
    page = tmp_path / "cross.html"
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    code, _, err = predict(ckpt, "text=31", f"attention={page}", "attention_site=cross")
    assert code == 0, err
    assert data_of(page)["start"] == "cross"
