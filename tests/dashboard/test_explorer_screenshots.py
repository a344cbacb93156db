"""The screenshots of the attention page in the docs, one per kind of model, made from small runs trained here the
way a user trains them (`src.run`, `src.analyze`, `src.predict ... attention=`) and opened in headless Chromium at
1400 x 900:

    ATTENTION_PAGE_SCREENSHOTS=docs/images .venv/bin/pytest tests/dashboard/test_explorer_screenshots.py -n 0

writes docs/images/attention-page-{encoder-decoder,decoder-only,classifier}.png (a few minutes on two cores: three
runs of 300-800 steps and their analyses). Without the variable the test is skipped; the browser tests check
the same layout on tiny runs every time. Here the facts are asserted again on the realistic pages before a
screenshot is kept, and each image is kept under 300 KB (a palette of 256 colours)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_in_process

from .attention_pages import layout, open_page, set_viewport, start_browser

OUT = os.environ.get("ATTENTION_PAGE_SCREENSHOTS")
if not OUT:
    pytest.skip(
        "set ATTENTION_PAGE_SCREENSHOTS=docs/images to write the docs' screenshots of the attention page (trains "
        "three small runs, a few minutes)",
        allow_module_level=True,
    )
pytest.importorskip("selenium.webdriver", reason="the screenshots need selenium (pip install selenium)")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip(
        "the screenshots need Chromium and its driver: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

SENTENCES = (  # the decoder-only model's text: plain sentences a character model learns in a few hundred steps
    "The quick brown fox jumps over the lazy dog.",
    "A small model can still learn a lot from a few good examples.",
    "She sold three old books at the market on Saturday morning.",
    "We walked home together, talking about music and films.",
    "The children laughed when the cat jumped onto the table.",
    "Bright stars were shining over the mountains at night.",
    "The weather was warm, but the wind from the sea was strong.",
    "The dog slept under the tree while the birds were singing.",
)


def sentiment_rows(count: int, seed: int = 0) -> list[str]:
    """Short film reviews with their label (sentence<TAB>label), made from a few templates."""
    rng = random.Random(seed)
    good = "good great wonderful excellent lovely charming brilliant moving".split()
    bad = "bad awful boring dull terrible weak clumsy tedious".split()
    things = "film story acting music ending cast script plot".split()
    templates = [
        "the {t} was {w}",
        "a {w} {t}",
        "what a {w} {t} !",
        "i found the {t} {w}",
        "the {t} is {w} and the cast too",
        "not my kind of {t} , but {w}",
    ]
    rows = []
    for _ in range(count):
        positive = rng.random() < 0.5
        sentence = rng.choice(templates).format(t=rng.choice(things), w=rng.choice(good if positive else bad))
        rows.append(f"{sentence}\t{'positive' if positive else 'negative'}")
    return rows


# kind -> (the run's settings, the text of the page, the page's settings, the site and layer shown)
RUNS = {
    "encoder-decoder": ([], "48213957", ["attention_site=cross"], 1),
    "decoder-only": (
        [
            "task=char_lm",
            "task.path={data}/sentences.txt",
            "task.block_size=64",
            "batch_size=32",
            "trainer.max_steps=800",
            "trainer.val_check_interval=400",
        ],
        "The children laughed when the",
        [],
        1,
    ),
    "classifier": (
        [
            "task=classification",
            "task.train_path={data}/reviews.tsv",
            "task.max_len=32",
            "batch_size=32",
            "trainer.max_steps=300",
            "trainer.val_check_interval=150",
        ],
        "the acting was wonderful and the cast too",
        [],
        0,
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "sentences.txt").write_text("\n".join(SENTENCES * 12) + "\n", encoding="utf-8")
    (folder / "reviews.tsv").write_text("\n".join(sentiment_rows(1200)) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    set_viewport(driver, 1400, 900)
    yield driver
    driver.quit()


@pytest.mark.parametrize("kind", list(RUNS))
def test_a_screenshot_of_each_kind_of_models_page(browser, data, tmp_path, monkeypatch, kind):
    from PIL import Image

    target = (ROOT / OUT if not Path(OUT).is_absolute() else Path(OUT)) / f"attention-page-{kind}.png"
    settings, text, page_settings, layer = RUNS[kind]
    monkeypatch.chdir(tmp_path)  # the page names its checkpoint as typed: runs/<kind>/..., as a user's would read
    run = Path("runs") / kind
    args = [setting.format(data=data) for setting in settings]
    code, _, err = run_in_process("src.run", *args, "torch_threads=2", f"hydra.run.dir={run}")
    assert code == 0, err
    code, _, err = run_in_process("src.analyze", f"ckpt={run}", "torch_threads=2")
    assert code == 0, err
    ckpt = run / "checkpoints" / "best.ckpt"
    code, _, err = run_in_process("src.predict", f"ckpt={ckpt}", f"text={text}", "attention=page.html", *page_settings)
    assert code == 0, err
    open_page(browser, tmp_path / "page.html")
    Select(browser.find_element(By.ID, "layer")).select_by_index(layer)
    browser.execute_script("document.activeElement.blur()")  # no focus ring on the layer chosen
    facts = layout(browser)
    assert facts["scrollWidth"] <= 1400 and not facts["outside"] and not facts["boxesScrolling"]
    assert facts["headView"]["width"] >= 700 and facts["headsLabel"] == "heads (number: importance)"
    assert facts["prediction"]["bottom"] <= 900 and facts["legend"]["bottom"] <= 900
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(shot) as image:
        assert image.size == (1400, 900)
        # 256 colours: a third of the size or less; the octree keeps the heads' colours (median cut merged two)
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
    assert target.stat().st_size < 300_000
    print(f"{kind}: {target} ({target.stat().st_size // 1000} KB)")
