"""Report figures drawn once: the .png and the TensorBoard image are the same pixels (src/dashboard/rendering.py)."""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from src.dashboard.rendering import FIGURE_DPI, drawn_pixels, render, rendered, save_pictures, save_png  # noqa: E402


def a_figure():
    """A report-like figure: constrained layout, a wrapped title, an image with its colour bar."""
    figure, axis = plt.subplots(figsize=(5, 3), layout="constrained")
    axis.plot([1, 2, 3], [3, 1, 2])
    axis.set_title("val/exact_match: mean and 95% interval over seeds (as in the table) " * 2, wrap=True)
    figure.colorbar(axis.imshow(np.random.default_rng(0).random((4, 4))))
    return figure


def test_the_png_drawn_once_is_what_savefig_writes(tmp_path):
    saved, drawn = a_figure(), a_figure()
    saved.savefig(tmp_path / "savefig.png", dpi=FIGURE_DPI)
    pixels = render(drawn)
    save_png(pixels, tmp_path / "render.png")
    assert (tmp_path / "savefig.png").read_bytes() == (tmp_path / "render.png").read_bytes()
    assert pixels.shape == (3 * FIGURE_DPI, 5 * FIGURE_DPI, 4) and pixels.dtype == np.uint8
    assert np.array_equal(drawn_pixels(drawn), pixels)  # what TensorBoard gets: that drawing, not another
    plt.close("all")


def test_each_figure_is_drawn_once_for_its_file_and_tensorboard(tmp_path, monkeypatch):
    """rendered draws each figure once and closes it; saving the pictures draws nothing again."""
    from matplotlib.figure import Figure

    draws = []
    draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: draws.append(self) or draw(self, renderer))
    made = {"one": a_figure(), "two": a_figure()}
    pictures = rendered(made)
    assert len(draws) == 2 and not plt.get_fignums()  # drawn once each, then closed
    assert save_pictures(pictures, tmp_path) == ["one", "two"] and len(draws) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]
