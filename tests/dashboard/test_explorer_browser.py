"""The attention page in a real browser: Debian's headless Chromium, driven through chromedriver (selenium), with
every network request sent nowhere. It asserts on what is drawn, not on the page's source."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from src.dashboard.explorer import AttentionOnText, write_page

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (pip install selenium)")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip(
        "the browser tests need Chromium and its driver: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


def synthetic_view(layers: int = 6, heads: int = 16, tokens: int = 60, ablated=((1, 3),)) -> AttentionOnText:
    """A page's worth of attention: each head a softmax of random scores over the tokens (rows sum to 1)."""
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(heads, tokens, tokens, generator=g).mul(3).softmax(-1) for _ in range(layers)]
    marks = [[(layer, head) in ablated for head in range(heads)] for layer in range(layers)]
    importance = [[round(0.1 * (head % 10), 2) for head in range(heads)] for _ in range(layers)]
    return AttentionOnText(
        tokens={"src": [f"tok{i}" for i in range(tokens)]},
        attentions={"encoder_self": weights},
        importance={"encoder_self": importance},
        ablated={"encoder_self": marks},
        title="sixteen heads, six layers",
    )


@pytest.fixture(scope="module")
def browser():
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
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "attention.html"
    write_page(synthetic_view(), path)
    return path


def open_page(browser, page: Path) -> None:
    browser.get(page.as_uri())
    for _ in range(100):  # the script marks its first draw
        if browser.execute_script("return document.documentElement.dataset.firstDraw"):
            return
        time.sleep(0.05)
    raise AssertionError("the page never finished its first draw")


def visible_lines(browser) -> list[tuple[str, str, str]]:
    """(head, query, opacity) of every line drawn in the head view, read in one call (not one per element)."""
    script = """return [...document.querySelectorAll('#head-view line.attention')]
        .map((l) => [l.dataset.head, l.dataset.query, l.getAttribute('stroke-opacity')]);"""
    return [tuple(line) for line in browser.execute_script(script)]


def test_sixteen_heads_and_six_layers_are_drawn_offline_within_a_second(browser, page, tmp_path):
    open_page(browser, page)
    first_draw_ms = float(browser.execute_script("return document.documentElement.dataset.firstDraw"))
    print(f"time to first draw (16 heads, 6 layers, 60 tokens): {first_draw_ms:.0f} ms")
    assert first_draw_ms <= 1000
    assert len(browser.find_elements(By.CSS_SELECTOR, "#heads .head")) == 16
    assert len(Select(browser.find_element(By.ID, "layer")).options) == 6
    count = "return document.querySelectorAll(arguments[0]).length;"
    assert browser.execute_script(count, "#model-view .cell") == 6 * 16
    assert browser.execute_script(count, "#head-view text.query") == 60
    assert visible_lines(browser)
    browser.save_screenshot(str(tmp_path / "attention.png"))


def test_hovering_a_token_keeps_only_its_lines(browser, page):
    open_page(browser, page)
    everything = len(visible_lines(browser))
    token = browser.find_elements(By.CSS_SELECTOR, "#head-view text.query")[5]
    ActionChains(browser).move_to_element(token).perform()
    lines = visible_lines(browser)
    assert 0 < len(lines) < everything
    assert {query for _, query, _ in lines} == {"5"}


def test_choosing_another_layer_or_fewer_heads_changes_the_lines(browser, page):
    open_page(browser, page)
    first = visible_lines(browser)
    Select(browser.find_element(By.ID, "layer")).select_by_index(2)
    second = visible_lines(browser)
    assert first and second and first != second
    browser.find_elements(By.CSS_SELECTOR, "#heads .head")[0].click()  # head 1 off
    assert "0" not in {head for head, _, _ in visible_lines(browser)}


def test_an_ablated_head_is_marked_and_a_map_enlarges_on_click(browser, page):
    open_page(browser, page)
    Select(browser.find_element(By.ID, "layer")).select_by_index(1)
    buttons = browser.find_elements(By.CSS_SELECTOR, "#heads .head")
    assert [i for i, button in enumerate(buttons) if "ablated" in button.get_attribute("class")] == [3]
    cells = browser.find_elements(By.CSS_SELECTOR, "#model-view .cell.ablated")
    assert [(c.get_attribute("data-layer"), c.get_attribute("data-head")) for c in cells] == [("1", "3")]
    assert "(0.30)" in buttons[3].text  # its importance
    cells[0].click()
    assert "switched off" in browser.find_element(By.ID, "enlarged").text
    assert browser.find_element(By.ID, "enlarged-map").size["width"] > 0


def test_the_dark_theme_and_the_site_to_open_on(browser, tmp_path):
    view = synthetic_view(layers=2, heads=2, tokens=5)
    view.attentions["decoder_self"] = view.attentions["encoder_self"]
    view.tokens["tgt"] = view.tokens["src"]
    view.start_site = "decoder_self"
    page = tmp_path / "two_sites.html"
    write_page(view, page)
    open_page(browser, page)
    assert Select(browser.find_element(By.ID, "site")).first_selected_option.get_attribute("value") == "decoder_self"
    background = "return getComputedStyle(document.body).backgroundColor;"
    light = browser.execute_script(background)
    browser.find_element(By.ID, "theme").click()
    assert browser.execute_script(background) != light


def test_a_text_that_looks_like_markup_is_shown_as_text_and_the_page_still_draws(browser, tmp_path):
    view = synthetic_view(layers=1, heads=2, tokens=4)
    view.title = "Ein Hund <!-- <script> läuft </script> <img src=x onerror=alert(1)>"
    view.tokens["src"] = ["<!--", "<script>", "</script>", "&amp;"]
    page = tmp_path / "markup.html"
    write_page(view, page)
    open_page(browser, page)
    assert browser.find_element(By.ID, "title").text == view.title
    assert [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#head-view text.query")] == view.tokens["src"]
    assert visible_lines(browser)
