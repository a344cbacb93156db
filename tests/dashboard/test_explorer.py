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

from src.dashboard.explorer import (
    HeadPatching,
    attention_on_text,
    page_data,
    read_importance,
    read_patching,
    render_page,
)
from src.data.vocab import readable
from src.training.checkpoint import load_run
from tests.conftest import PYTHON, run_in_process

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
        # multi-head: every head has its own keys and values (a grouped model's page: test_family_commands.py)
        assert site["kv_groups"] is None
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


def test_the_heads_of_a_removed_sublayer_are_marked_off(run, tmp_path):
    """ablate.sublayers=[cross:1] removes the sublayer, not its gates: its heads still attend (drawn) but write
    nothing, so the page marks them switched off, as the analyses count them."""
    page = tmp_path / "removed.html"
    code, _, err = predict(f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "text=271", f"attention={page}",
                           "ablate.sublayers=[cross:1]")  # fmt: skip
    assert code == 0, err
    data = data_of(page)
    assert data["sites"]["cross"]["ablated"] == [[False, False], [True, True]]
    assert data["switched_off"] == ["cross:1:0", "cross:1:1"]


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


def heads_rows(folder: Path) -> dict[tuple[str, str, str], dict]:
    with (folder / "heads.csv").open() as file:
        return {(r["site"], r["layer"], r["head"]): r for r in csv.DictReader(file)}


def test_the_page_shows_the_analysis_measured_with_its_ablation_or_says_it_has_another(analysed_run, tmp_path):
    """The issue's example: with <run>/analysis (nothing ablated) and <run>/analysis-2 (cross:1:0 off), the page of
    the model with cross:1:0 off showed the unablated analysis's importance and "without this head" numbers. It
    shows the analysis measured with its own ablation; where there is none, it says whose numbers they are."""
    copy = tmp_path / "run"
    shutil.copytree(analysed_run, copy, ignore=shutil.ignore_patterns("patching"))
    code, _, err = run_in_process(
        "src.analyze", f"ckpt={copy}", "ablate.heads=[cross:1:0]", f"out={copy / 'analysis-2'}", "torch_threads=1"
    )
    assert code == 0, err
    ablated = json.loads((copy / "analysis-2" / "summary.json").read_text())["ablation"]
    assert ablated == "cross:1:0; zero ablation"  # what the analysis records of its ablation
    ckpt = f"ckpt={copy / 'checkpoints' / 'last.ckpt'}"

    def page_of(*settings: str) -> tuple[dict, list[str]]:
        page = tmp_path / f"page{len(list(tmp_path.glob('*.html')))}.html"
        code, _, err = predict(ckpt, "text=1234567", f"attention={page}", "attention_site=cross", *settings)
        assert code == 0, err
        return data_of(page), [line for line in err.splitlines() if line.startswith("warning:")]

    data, warnings = page_of("ablate.heads=[cross:1:0]")
    cross, rows = data["sites"]["cross"], heads_rows(copy / "analysis-2")
    assert cross["importance"][1][0] is None and cross["notes"][1][0].startswith("importance not measured")
    assert cross["importance"][0][1] == pytest.approx(float(rows[("cross", "0", "1")]["importance_normalised"]))
    assert f"without this head alone: {float(rows[('cross', '0', '1')]['metric_without']):.3f}" in cross["notes"][0][1]
    assert f"with {ablated}, in analysis-2/." in data["importance_about"]
    assert "another ablation" not in data["importance_about"] and not warnings, warnings
    # Without the ablation: the run's own analysis, as before
    data, warnings = page_of()
    cross, rows = data["sites"]["cross"], heads_rows(copy / "analysis")
    assert cross["importance"][1][0] == pytest.approx(float(rows[("cross", "1", "0")]["importance_normalised"]))
    assert "another ablation" not in data["importance_about"] and "analysis-2" not in data["importance_about"]
    assert not warnings, warnings
    # An ablation no analysis measured with: the run's own analysis, said plainly to be of another ablation
    data, warnings = page_of("ablate.heads=[cross:0:1]")
    about = data["importance_about"]
    assert "measured with another ablation (nothing ablated) than the page's model has (cross:0:1; zero ablation)" in (
        about
    )
    assert f"`{PYTHON} -m src.analyze` with the page's `ablate.*` settings" in about
    assert all(
        note.endswith("(measured with nothing ablated, not the page's ablation)")
        for site in data["sites"].values()
        for row in site["notes"]
        for note in row
    )
    assert len(warnings) == 1 and "measured with nothing ablated" in warnings[0], warnings
    assert "page's model has cross:0:1; zero ablation" in warnings[0]


def test_each_kind_of_analysis_is_chosen_by_the_ablation_it_measured_with(tmp_path):
    """analysis_for: the analysis measured with the page's ablation, its own kind only (an induction analysis also
    has a heads.csv), the one of the page's step first; else src.analyze's own folder."""
    from src.dashboard.explorer import analysis_for, holds_head_analysis, holds_patching

    def analysis(name: str, ablation: str, step: int = 4, columns: str = "site,layer,head,importance_normalised"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "heads.csv").write_text(columns + "\n")
        (folder / "summary.json").write_text(json.dumps({"ablation": ablation, "step": step}))
        return folder

    default = analysis("analysis", "nothing ablated")
    analysis("induction", "cross:1:0; zero ablation", columns="head,induction,previous_token")
    earlier = analysis("analysis-2", "cross:1:0; zero ablation", step=2)
    same_step = analysis("analysis-3", "cross:1:0; zero ablation")
    assert analysis_for(default, "nothing ablated", 4, holds_head_analysis) == default
    assert analysis_for(default, "cross:1:0; zero ablation", 4, holds_head_analysis) == same_step
    assert analysis_for(default, "cross:1:0; zero ablation", 2, holds_head_analysis) == earlier
    assert analysis_for(default, "cross:1:0; mean ablation", 4, holds_head_analysis) == default  # none: its own
    # No analysis in src.analyze's own folder: one beside it measured with the page's ablation, else still its own
    assert analysis_for(tmp_path / "none", "nothing ablated", 4, holds_head_analysis) == default
    assert analysis_for(tmp_path / "none", "cross:0:0; zero ablation", 4, holds_head_analysis) == tmp_path / "none"
    patching = write_patching(tmp_path / "patching", {"cross:0:0": 0.5})
    ablated = write_patching(tmp_path / "patching-2", {"cross:0:0": 0.1}, ablation="cross:1:0; zero ablation")
    assert analysis_for(patching, "cross:1:0; zero ablation", 4, holds_patching) == ablated
    assert analysis_for(patching, "nothing ablated", 4, holds_patching) == patching
    assert not holds_patching(default) and not holds_head_analysis(patching)
    # Patching of another ablation than the page's: said beside the numbers and in each head's note
    other = read_patching(patching, 4, "cross:1:0; zero ablation")
    assert other is not None and other.ablation == "nothing ablated"
    assert "measured with another ablation (nothing ablated) than the page's model has (cross:1:0" in other.about
    assert f"`{PYTHON} -m src.analyze analysis=patching` with the page's `ablate.*` settings" in other.about
    assert other.notes["cross"][0][0].endswith("(measured with nothing ablated, not the page's ablation)")
    chosen = read_patching(ablated, 4, "cross:1:0; zero ablation")
    assert chosen is not None and "another ablation" not in chosen.about
    assert "with cross:1:0; zero ablation, in patching-2/" in chosen.about


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
    assert f"`{PYTHON} -m src.analyze ckpt={ckpt}`" in data["importance_about"]


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


# --- activation patching (src.analyze analysis=patching): the fraction restored by each head -----------------------

PATCHING_WORDS = (
    "activation patching (denoising, logit_diff, {pairs} pairs): the fraction of the clean-minus-corrupted "
    "difference restored by patching this head's output"
)


def write_patching(folder: Path, heads: dict[str, float | None], **summary) -> Path:
    """A patching analysis as src.analyze writes it (src/analysis/causal_report.py): summary.json and patching.csv,
    with one "head" row per head and two "head_position" rows (query positions 0 and 1) each."""
    folder.mkdir(parents=True, exist_ok=True)
    about = {
        "metric": "logit_diff",
        "direction": "denoising",
        "pairs": 12,
        "clean": 2.5,
        "corrupted": -1.5,
        "restored_undefined": None,
        "heads_restored": heads,
        "checkpoint": "/somewhere/run/checkpoints/best.ckpt",
        "step": 4,
        "ablation": "nothing ablated",
        "clean_accuracy": 0.75,
    }
    (folder / "summary.json").write_text(json.dumps({**about, **summary}))
    with (folder / "patching.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["family", "point", "site", "layer", "head", "position", "value", "restored", "estimate"])
        writer.writerow(["resid_pre", "resid_pre@cross:0", "cross", 0, "", 0, 1.0, 0.5, 0.5])
        for name, value in heads.items():
            site, layer, head = name.split(":")
            restored = "nan" if value is None else value
            writer.writerow(["head", f"z@{site}:{layer}", site, layer, head, "", 0.0, restored, 0.0])
            for position, part in ((0, 0.25), (1, 0.75)):
                share = "nan" if value is None else value * part
                writer.writerow(["head_position", f"z@{site}:{layer}", site, layer, head, position, 0.0, share, 0.0])
    return folder


def test_read_patching_gives_each_head_its_fraction_restored_and_says_what_it_is(tmp_path):
    heads = {"cross:0:0": 0.1, "cross:0:1": -0.02, "cross:1:0": 0.6, "cross:1:1": None, "encoder_self:0:1": 0.3}
    patching = read_patching(write_patching(tmp_path / "patching", heads), page_step=4)
    assert patching is not None and patching.undefined is None and patching.step == 4
    assert patching.values == {"cross": [[0.1, -0.02], [0.6, None]], "encoder_self": [[None, 0.3]]}
    # What the number is, in words, with the checkpoint and its step (the same step as the page's: no more said)
    assert PATCHING_WORDS.format(pairs=12) in patching.about
    assert "(1: the clean run's logit_diff, 2.500; 0: the corrupted run's, -1.500)" in patching.about
    assert "on best.ckpt (step 4)" in patching.about and "75% of the clean inputs" in patching.about
    assert "The page's checkpoint" not in patching.about
    # Each head's line for its note: its fraction, and its best single query position from patching.csv
    note = patching.notes["cross"][1][0]
    assert note.startswith("patching restores 0.600")
    assert "the largest effect at position 1, restores 0.450" in note
    assert patching.notes["cross"][1][1] == "patching restores nothing defined"
    assert patching.notes["encoder_self"][0][0] == ""  # not in the analysis: no line
    # Another step than the page's checkpoint is said beside the numbers
    assert read_patching(tmp_path / "patching", page_step=9).about.endswith("The page's checkpoint is at step 9.")


def test_under_noising_a_heads_best_position_is_the_one_whose_patch_moves_the_metric_most(tmp_path):
    """Noising's fraction is what is kept (1: no change): the position that matters keeps least, not the one whose
    fraction is largest in size."""
    folder = write_patching(tmp_path / "patching", {"cross:0:0": 0.4}, direction="noising")
    with (folder / "patching.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["family", "point", "site", "layer", "head", "position", "value", "restored", "estimate"])
        writer.writerow(["head", "z@cross:0", "cross", 0, 0, "", 0.0, 0.4, 0.0])
        for position, kept in enumerate((1.01, 0.35, 0.99, 1.0)):
            writer.writerow(["head_position", "z@cross:0", "cross", 0, 0, position, 0.0, kept, 0.0])
    note = read_patching(folder).notes["cross"][0][0]
    assert "the largest effect at position 1, keeps 0.350" in note


def test_read_patching_without_an_analysis_its_summary_or_defined_fractions(tmp_path):
    assert read_patching(tmp_path) is None
    folder = write_patching(tmp_path / "csv_only", {"cross:0:1": 0.5})
    (folder / "summary.json").unlink()  # patching.csv alone: the numbers, said to be activation patching
    patching = read_patching(folder)
    assert patching is not None and patching.values == {"cross": [[None, 0.5]]}
    assert patching.about.startswith("activation patching: the fraction") and patching.step is None
    # Noising patches the corrupted activation into the clean run: the fraction is the one kept
    noising = read_patching(write_patching(tmp_path / "noising", {"cross:0:0": 0.9}, direction="noising"))
    assert (
        noising is not None
        and (
            "activation patching (noising, logit_diff, 12 pairs): the fraction of the clean-minus-corrupted difference "
            "kept when patching this head's output"
        )
        in noising.about
    )
    assert noising.notes["cross"][0][0].startswith("patching keeps 0.900")
    # Undefined fractions: the page says why, and shows no number
    why = "the clean and corrupted runs score the same logit_diff (0): the corruption changes nothing the metric sees"
    undefined = read_patching(
        write_patching(tmp_path / "undefined", {"cross:0:0": None}, restored_undefined=why, clean=0.0, corrupted=0.0)
    )
    assert undefined is not None and undefined.values == {} and undefined.notes == {} and undefined.undefined == why
    assert undefined.about.startswith("No patching number on the heads: activation patching (denoising, logit_diff")
    assert why in undefined.about and "(step 4)" in undefined.about
    # An analysis of other places than the heads: said, and no number either
    elsewhere = read_patching(write_patching(tmp_path / "elsewhere", {}))
    assert elsewhere is not None and elsewhere.values == {} and "patched no head's output" in elsewhere.about


def test_a_runs_patching_analysis_is_on_its_heads_and_keeps_the_page_small(run, tmp_path):
    """A real `src.analyze analysis=patching` of the tiny run: every head's fraction restored from summary.json is on
    the page under the head's name as ablate.heads reads it, with its line for the head's note; the page's JSON grows
    by little (a rounded number and one line a head)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("analysis", "patching"))
    code, _, err = run_in_process("src.analyze", f"ckpt={copy}", "analysis=patching", "torch_threads=1")
    assert code == 0, err
    summary = json.loads((copy / "patching" / "summary.json").read_text())
    patching = read_patching(copy / "patching", page_step=4)
    assert patching is not None and patching.undefined is None and summary["restored_undefined"] is None
    assert PATCHING_WORDS.format(pairs=summary["pairs"]) in patching.about and "(step 4)" in patching.about
    module, datamodule = load_run(str(copy / "checkpoints" / "last.ckpt"))
    view, _ = attention_on_text(module.model, datamodule, "31415")
    plain = json.dumps(page_data(view))
    view.patching = patching
    data = page_data(view)
    assert data["patching_about"] == patching.about
    on_page = {
        name: (site["restored"][layer][head], site["restored_notes"][layer][head])
        for site in data["sites"].values()
        for layer, names in enumerate(site["names"])
        for head, name in enumerate(names)
    }
    assert set(on_page) == set(summary["heads_restored"])  # every head, named as elsewhere
    for name, fraction in summary["heads_restored"].items():
        value, note = on_page[name]
        assert value == pytest.approx(fraction, abs=5e-5) and note.startswith(f"patching restores {fraction:.3f}")
    grown = len(json.dumps(data)) - len(plain)
    assert grown < len(patching.about) + 150 * len(on_page), grown
    # The page's data stays JSON the browser reads (no NaN), with a head the analysis left undefined
    cross = patching.values["cross"]
    cross[0][0] = None
    data = json.loads(json.dumps(page_data(view), allow_nan=False))
    assert data["sites"]["cross"]["restored"][0][0] is None


def test_patching_of_another_shape_never_puts_a_number_on_the_wrong_head(run):
    """An analysis of fewer or more heads than the page's (another checkpoint's, say): each number stays on its own
    head, those not measured show none, and those the page does not have are left out."""
    module, datamodule = load_run(str(run / "checkpoints" / "last.ckpt"))
    view, _ = attention_on_text(module.model, datamodule, "12")
    view.patching = HeadPatching(
        values={"cross": [[0.5], [0.1, 0.2, 0.3], [0.9]]}, notes={"cross": [["a"], ["b", "c", "d"], ["e"]]}, about="x"
    )
    cross = page_data(view)["sites"]["cross"]
    assert cross["restored"] == [[0.5, None], [0.1, 0.2]] and cross["restored_notes"] == [["a", None], ["b", "c"]]
    assert page_data(view)["sites"]["encoder_self"]["restored"] is None  # no patching of its heads


def test_src_predict_puts_the_runs_patching_analysis_on_the_page(analysed_run, tmp_path):
    """`src.predict ... attention=` of a run with both analyses: the heads carry their fraction restored, said to be
    activation patching, beside the importance."""
    copy = tmp_path / "run"
    shutil.copytree(analysed_run, copy, ignore=shutil.ignore_patterns("patching"))
    code, _, err = run_in_process("src.analyze", f"ckpt={copy}", "analysis=patching", "torch_threads=1")
    assert code == 0, err
    page = tmp_path / "patching.html"
    code, _, err = predict(f"ckpt={copy / 'checkpoints' / 'last.ckpt'}", "text=271", f"attention={page}")
    assert code == 0, err
    data = data_of(page)
    summary = json.loads((copy / "patching" / "summary.json").read_text())
    assert PATCHING_WORDS.format(pairs=summary["pairs"]) in data["patching_about"]
    cross = data["sites"]["cross"]
    assert cross["restored"][1][0] == pytest.approx(summary["heads_restored"]["cross:1:0"], abs=5e-5)
    assert cross["importance"] is not None and cross["restored_notes"][1][0].startswith("patching restores")
