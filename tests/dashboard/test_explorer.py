"""The attention page of one text (src.predict ... attention=<file.html>): what it holds, that it needs no network,
and the one-line refusals. (Its drawing is checked in a real browser by the browser tests.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from src.dashboard.explorer import attention_on_text, page_data, render_page
from src.training.checkpoint import load_run
from tests.conftest import run_in_process

TINY = [
    "task.train_size=64",
    "task.val_size=16",
    "task.test_size=16",
    "batch_size=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "model.d_model=16",
    "model.heads=2",
    "model.layers=2",
    "model.d_ff=32",
    "torch_threads=1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("explorer") / "run"
    code, _, err = run_in_process("src.run", *TINY, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir


def data_of(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    assert found is not None
    return json.loads(found.group(1).replace("<\\/", "</"))


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


def test_ablated_heads_and_the_runs_head_importance_are_on_the_page(run, tmp_path):
    code, _, err = run_in_process("src.analyze", f"ckpt={run}")
    assert code == 0, err
    page = tmp_path / "ablated.html"
    args = [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "text=271", f"attention={page}", "ablate.heads=[cross:1:0]"]
    code, _, err = predict(*args)
    assert code == 0, err
    data = data_of(page)
    assert data["start"] is None
    assert data["sites"]["cross"]["ablated"] == [[False, False], [True, False]]
    assert data["sites"]["encoder_self"]["ablated"] == [[False, False], [False, False]]
    importance = data["sites"]["encoder_self"]["importance"]
    assert len(importance) == 2 and len(importance[0]) == 2 and all(v >= 0 for row in importance for v in row)


def test_a_given_target_is_the_decoder_side_and_long_inputs_are_cut_with_a_warning(run):
    module, datamodule = load_run(str(run / "checkpoints" / "last.ckpt"))
    view, warnings = attention_on_text(module.model, datamodule, "123456", target="654", max_tokens=4)
    assert view.tokens["src"] == ["1", "2", "3", "4"] and view.tokens["tgt"] == ["<bos>", "6", "5", "4"]
    assert warnings == ["the input has 6 tokens: the page shows the first 4"]
    # bertviz's format: per layer (1, H, Tq, Tk), and both token lists
    bertviz = view.as_bertviz()
    assert bertviz["cross_attention"][0].shape == (1, 2, 4, 4) and bertviz["encoder_tokens"] == view.tokens["src"]
    view.title = "a <!-- <script> </script> text"  # inside the data block, no "<" is left to end or swallow it
    block = re.search(r'<script id="data" type="application/json">(.*?)</script>', render_page(view), re.S)
    assert block is not None and "<" not in block.group(1)
    assert json.loads(block.group(1))["title"] == view.title == page_data(view)["title"]


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
