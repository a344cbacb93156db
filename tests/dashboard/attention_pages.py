"""Attention pages of the three kinds of model for the page's tests: tiny trained runs (an encoder-decoder on the
reverse task, a decoder-only char_lm, an encoder-only classifier), each trained in seconds and at most once per test
process, their pages written by `src.predict ... attention=`, and a headless Chromium to open them in.

The browser helpers measure what a reader sees (sizes, positions, labels) at a given viewport, in one script call per
page, so that the layout tests assert facts, not pixels."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.conftest import run_in_process
from tests.e2e.conftest import task_overrides

# A model and a schedule small enough that a run costs seconds: 2 layers of 2 heads a site.
TINY = [
    "batch_size=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.enable_progress_bar=false",
    "model.d_model=16",
    "model.heads=2",
    "model.layers=2",
    "model.d_ff=32",
    "torch_threads=1",
]
KINDS = ("seq2seq", "lm", "classification")
ARCH = {"seq2seq": "encoder-decoder", "lm": "decoder-only", "classification": "classifier"}
TEXTS = {"seq2seq": "3141592", "lm": "To be, or not", "classification": "a great good movie"}
SITES = {
    "seq2seq": ["encoder_self", "decoder_self", "cross"],
    "lm": ["decoder_self"],
    "classification": ["encoder_self"],
}


def write_data(root: Path) -> Path:
    """The files of the file-based tasks: a text to model character by character, and sentences with labels."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.txt").write_text("To be, or not to be, that is the question.\n" * 60, encoding="utf-8")
    rows = [
        f"{'great good fine' if i % 2 else 'bad awful poor'} movie number {i}\t{'positive' if i % 2 else 'negative'}"
        for i in range(80)
    ]
    (root / "sentiment.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def task_settings(kind: str, data: Path) -> list[str]:
    if kind == "seq2seq":
        return ["task=reverse", "task.train_size=64", "task.val_size=16", "task.test_size=16"]
    return task_overrides("char_lm" if kind == "lm" else "classification", data)  # the e2e tests' small files


_runs: dict[tuple[str, bool], Path] = {}  # (kind, analysed) -> run directory, for this test process


def tiny_run(kind: str, tmp_path_factory, analysed: bool = False) -> Path:
    """A run of `kind` trained for 4 steps (and analysed by src.analyze when `analysed`), made once per process."""
    if (kind, analysed) not in _runs:
        root = tmp_path_factory.mktemp(f"{kind}_{'analysed' if analysed else 'plain'}")
        data = write_data(root / "data")
        code, _, err = run_in_process("src.run", *task_settings(kind, data), *TINY, f"hydra.run.dir={root / 'run'}")
        assert code == 0, err
        if analysed:
            code, _, err = run_in_process("src.analyze", f"ckpt={root / 'run'}", "torch_threads=1")
            assert code == 0, err
        _runs[(kind, analysed)] = root / "run"
    return _runs[(kind, analysed)]


def write_attention_page(run: Path, page: Path, text: str, *settings: str) -> tuple[str, str]:
    """`src.predict ckpt=<run's last checkpoint> text=<text> attention=<page>`: (stdout, stderr)."""
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    code, out, err = run_in_process("src.predict", ckpt, f"text={text}", f"attention={page}", *settings)
    assert code == 0, err
    return out, err


# --- the browser ---------------------------------------------------------------------------------------------------


def start_browser():
    """Headless Chromium through chromedriver, every network request sent nowhere (the page must need none)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.add_argument("--proxy-server=127.0.0.1:9")  # any request for the network goes nowhere
    options.add_argument("--proxy-bypass-list=<-loopback>")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    return driver


def set_viewport(browser, width: int, height: int) -> None:
    """The page's viewport exactly width x height CSS pixels (a window size would include the browser's frame)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def open_page(browser, page: Path) -> None:
    browser.get(page.as_uri())
    for _ in range(100):  # the script marks its first draw
        if browser.execute_script("return document.documentElement.dataset.firstDraw"):
            return
        time.sleep(0.05)
    raise AssertionError("the page never finished its first draw")


# What a reader sees, measured in the page: one call returns every fact the layout tests assert on.
LAYOUT = r"""
const rect = (e) => { const r = e.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
const all = (selector) => [...document.querySelectorAll(selector)];
const text = (selector) => all(selector).map((e) => e.textContent);
const overlapping = (boxes) => {
  const pairs = [];
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b, j) => {
    if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
      pairs.push([i, i + 1 + j]);
  }));
  return pairs;
};
// Elements that reach past the right edge of the viewport, outside the boxes that scroll on their own.
const outside = all("body *").filter((e) => !e.closest(".box") || e.classList.contains("box"))
  .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 0.5; })
  .map((e) => e.id || e.className || e.tagName);
const boxesScrolling = all(".box").filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.id);
return {
  viewport: [window.innerWidth, window.innerHeight],
  scrollWidth: document.documentElement.scrollWidth,
  outside, boxesScrolling,
  headView: rect(document.getElementById("head-view")),
  headSection: rect(document.getElementById("head-section")),
  focusSection: rect(document.getElementById("focus-section")),
  prediction: Object.assign(rect(document.getElementById("prediction")),
                            {text: document.getElementById("prediction").textContent,
                             answer: text("#prediction .answer")[0]}),
  legend: Object.assign(rect(document.getElementById("legend")),
                        {text: document.getElementById("legend").textContent}),
  headsLabel: document.getElementById("heads-label").textContent,
  chips: text("#heads .head .name"),
  chipNumbers: text("#heads .head .imp"),
  chipsOverlapping: overlapping(all("#heads .head").map(rect)),
  queries: text("#head-view text.query"),
  keys: text("#head-view text.key"),
  headLabelsOverlapping: overlapping(all("#head-view text.query").map(rect)).length +
                         overlapping(all("#head-view text.key").map(rect)).length,
  focusQueries: text("#enlarged .query-axis"),
  focusKeys: text("#enlarged .key-axis"),
  thumbnails: all("#model-view .cell").map((e) => e.dataset.name),
  thumbnailQueries: text("#model-view .query-axis"),
  thumbnailKeys: text("#model-view .key-axis"),
  thumbnailsOverlapping: overlapping(all("#model-view .cell").map(rect)).length,
};
"""


def layout(browser) -> dict:
    return browser.execute_script(LAYOUT)
