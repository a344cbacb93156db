"""Matplotlib figures drawn once. A report's figure is both a .png beside the report and an image in TensorBoard;
`savefig` and TensorBoard's `add_figure` would each draw it (its layout, every text) anew, which is most of what
writing an analysis or a sweep's report costs. Here each figure is drawn once, at FIGURE_DPI, and both get those
pixels: the .png is what `savefig(dpi=FIGURE_DPI)` writes (the same drawing, written by the same PNG writer), and
TensorBoard shows the same picture at the same size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FIGURE_DPI = 110  # dots per inch of every report figure, in its .png and in TensorBoard
Pictures = dict[str, np.ndarray]  # figures drawn (rendered): name -> (H, W, 4) uint8 RGBA


def render(figure: Any) -> np.ndarray:
    """The figure drawn at FIGURE_DPI: (H, W, 4) uint8 RGBA, as savefig would write it."""
    figure.set_dpi(FIGURE_DPI)
    figure.canvas.draw()
    return drawn_pixels(figure)


def drawn_pixels(figure: Any) -> np.ndarray:
    """(H, W, 4) uint8 RGBA of the figure's last drawing (render), without drawing it again."""
    return np.asarray(figure.canvas.buffer_rgba()).copy()


def save_png(pixels: np.ndarray, path: Path) -> None:
    """Pixels from render as a PNG file, written as savefig writes one (matplotlib's imsave, with the dpi)."""
    from matplotlib.image import imsave

    imsave(path, pixels, dpi=FIGURE_DPI)


def rendered(made: dict[str, Any]) -> Pictures:
    """Each figure of `made` (name -> matplotlib figure) drawn once (render), then closed: name -> pixels."""
    import matplotlib.pyplot as plt

    pictures = {}
    for name, figure in made.items():
        pictures[name] = render(figure)
        plt.close(figure)
    return pictures


def save_pictures(pictures: Pictures, folder: Path) -> list[str]:
    """Each picture of `rendered` as <name>.png in `folder`; the names."""
    for name, pixels in pictures.items():
        save_png(pixels, folder / f"{name}.png")
    return list(pictures)
