"""Pixels for the dashboards: heat maps, text and colour bars drawn straight into an image with numpy and Pillow.

Why not matplotlib: a figure of four attention heads took about 100 ms to build and draw, most of it axes and text
layout that a fixed grid of heat maps does not need. Drawn here, the same image takes a few milliseconds, so the
maps can be logged at the default interval for a small share of the training time (``python -m src.bench.loop``
measures it).

Everything works in pixels of the final image. A ``Canvas`` is a white RGB image you paste panels and write text
on; ``heat_panel`` turns a matrix into a block of coloured cells; ``colour_bar`` draws a scale.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# DejaVu Sans ships with matplotlib (a dependency already) and covers the scripts our tokenizers produce.
FONT_FILE = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
BOLD_FONT_FILE = FONT_FILE.with_name("DejaVuSans-Bold.ttf")
TEXT_COLOUR = (40, 40, 40)
BACKGROUND = (255, 255, 255)


@functools.lru_cache(maxsize=8)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(BOLD_FONT_FILE if bold else FONT_FILE), size)


def text_width(text: str, size: int, bold: bool = False) -> int:
    return math.ceil(font(size, bold).getlength(text))


@functools.lru_cache(maxsize=4096)
def _rotated_text(text: str, size: int) -> Image.Image:
    """``text`` written bottom-to-top as a greyscale stencil (255 = ink), for labels under columns."""
    stencil = Image.new("L", (text_width(text, size) + 2, size + 4), 0)
    ImageDraw.Draw(stencil).text((1, 1), text, fill=255, font=font(size))
    return stencil.transpose(Image.Transpose.ROTATE_90)


@functools.lru_cache(maxsize=8)
def colour_table(cmap: str) -> np.ndarray:
    """(256, 3) uint8: a matplotlib colour map sampled at 256 levels, indexed by a weight scaled to 0..255."""
    return (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def heat_panel(matrix: np.ndarray, cell: int, vmax: float, colours: np.ndarray, side: int | None = None):
    """(rows, columns) values in [0, vmax] -> (H, W, 3) uint8 block of cells, ``cell`` pixels square each, coloured
    through ``colours`` (a (256, 3) table such as ``colour_table("viridis")``).

    With ``side`` smaller than the matrix (a long sequence), the matrix is first shrunk by averaging blocks of
    cells (Pillow's box filter on the float values, so the colour shows the mean weight, not one sampled cell) to
    at most ``side`` cells per axis, and drawn with one-pixel cells.
    """
    rows, columns = matrix.shape
    if side is not None and max(rows, columns) > side:
        scale = side / max(rows, columns)
        size = (max(1, round(columns * scale)), max(1, round(rows * scale)))  # Pillow sizes are (width, height)
        matrix = np.asarray(Image.fromarray(matrix.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
        cell = 1
    levels = np.clip(matrix / vmax, 0.0, 1.0) * 255.0
    pixels = colours[np.nan_to_num(levels).round().astype(np.uint8)]  # (rows, columns, 3)
    return np.repeat(np.repeat(pixels, cell, axis=0), cell, axis=1)


class Canvas:
    """A white RGB image of ``width`` x ``height`` pixels to paste panels and write text on."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)

    def paste(self, pixels: np.ndarray, left: int, top: int) -> None:
        self.image.paste(Image.fromarray(pixels), (left, top))

    def text(self, x: float, y: float, text: str, size: int, anchor: str = "la", bold: bool = False) -> None:
        """Write ``text`` with its ``anchor`` point at (x, y). Anchors are Pillow's two letters, horizontal then
        vertical: "la" = left/ascender (top), "rm" = right/middle, "ma" = centred below the point, "md" = centred
        above it (the descender line at y)."""
        self.draw.text((x, y), text, fill=TEXT_COLOUR, font=font(size, bold), anchor=anchor)

    def vertical_text(self, x_centre: float, y: float, text: str, size: int, align: str = "top") -> None:
        """``text`` reading bottom-to-top, centred on ``x_centre``; ``align`` says whether ``y`` is its top end
        ("top") or its middle ("middle")."""
        stencil = _rotated_text(text, size)
        top = y if align == "top" else y - stencil.height / 2
        self.image.paste(TEXT_COLOUR, (round(x_centre - stencil.width / 2), round(top)), stencil)

    def rectangle(self, box: tuple[int, int, int, int], outline=(160, 160, 160)) -> None:
        self.draw.rectangle(box, outline=outline)

    def to_array(self) -> np.ndarray:
        return np.asarray(self.image)  # (H, W, 3) uint8


def colour_bar(canvas: Canvas, left: int, top: int, height: int, vmax: float, colours: np.ndarray, size: int) -> None:
    """A 10-pixel-wide vertical scale from 0 (bottom) to ``vmax`` (top) with its end and middle values written
    beside it."""
    levels = np.linspace(255, 0, max(2, height)).round().astype(np.uint8)  # top row = the largest value
    column = colours[levels][:, None, :]  # (height, 1, 3)
    canvas.paste(np.repeat(column, 10, axis=1), left, top)
    canvas.rectangle((left, top, left + 9, top + height - 1))
    for fraction in (0.0, 0.5, 1.0):
        canvas.text(left + 13, top + (1 - fraction) * (height - 1), f"{fraction * vmax:.2g}", size, anchor="lm")
