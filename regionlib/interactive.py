"""Click-to-segment in a notebook: a matplotlib figure whose clicks become SAM point prompts.

In JupyterLab use the interactive backend (``%matplotlib widget``, from ipympl): a left click
adds a positive point, a right click a negative one; the mask, the points and (with a
``captioner``) the region's caption update after every click. The same handler is driven
programmatically with `ClickSegmenter.add_point` (tests, scripted demos).

Show the figure once: create the widget under ``plt.ioff()`` and display ``widget.figure.canvas``
(with ipympl, a figure made while interactive is displayed by the backend after the cell, and a
cell that also ends in ``widget.figure`` adds a second, static copy that ignores clicks).

`record_clicks` writes the widget's layout and every click's result to a JSON-lines file, so a
scripted session (``tests/notebooks/test_browser.py`` clicks in a real browser) can check from
outside what the kernel computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import RegionLibError
from .images import to_rgb_uint8
from .overlays import draw_masks, draw_points
from .prompts import Prompt
from .regions import Regions

__all__ = ["ClickSegmenter", "record_clicks"]

#: Matplotlib mouse buttons: 1 = left (positive point), 3 = right (negative point).
_BUTTON_LABELS = {1: 1, 3: 0}
_TITLE_WIDTH = 70  # characters per title line: a long caption wraps (at most 3 lines) inside the figure


class ClickSegmenter:
    """Interactive point-prompt segmentation (and optional captioning) of one image.

    Args:
        segmenter: an object with ``set_image(image)`` and ``segment(prompts) -> Regions``
            (e.g. `regionlib.sam.SamSegmenter`).
        image: the image (anything `to_rgb_uint8` accepts).
        captioner: optional ``f(image, regions) -> list[str]`` called after each update.
        ax: a matplotlib Axes to draw in (a new figure is made when None).
        on_update: optional ``f(widget)`` called after every accepted point (once the region,
            caption and figure are updated); more can be added to ``widget.listeners``.
    """

    def __init__(self, segmenter, image, *, captioner: Callable[[np.ndarray, Regions], list[str]] | None = None,
                 ax=None, on_update: Callable[["ClickSegmenter"], None] | None = None):
        import matplotlib.pyplot as plt

        self.image = to_rgb_uint8(image)
        self.segmenter = segmenter
        self.segmenter.set_image(self.image)
        self.captioner = captioner
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        self.ax = ax
        self.figure = ax.figure
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.regions: Regions | None = None
        self.caption: str | None = None
        self.listeners: list[Callable[["ClickSegmenter"], None]] = [] if on_update is None else [on_update]
        self._artist = ax.imshow(self.image)
        ax.set_axis_off()
        ax.set_title("click: left = add, right = remove area")
        self._cid = self.figure.canvas.mpl_connect("button_press_event", self.on_click)

    def on_click(self, event) -> None:
        """Matplotlib ``button_press_event`` handler (ignores clicks outside the axes)."""
        if event.inaxes is not self.ax or event.xdata is None or event.button not in _BUTTON_LABELS:
            return
        self.add_point(event.xdata, event.ydata, _BUTTON_LABELS[event.button])

    def add_point(self, x: float, y: float, label: int = 1) -> Regions:
        """Add a point (label 1 positive, 0 negative), re-segment, redraw; returns the region."""
        prompt = Prompt.from_points([*self.points, (x, y)], [*self.labels, label])
        prompt.check_inside(self.image.shape[:2], "click")
        self.points.append((float(x), float(y)))
        self.labels.append(int(label))
        self.regions = self.segmenter.segment([prompt])
        if self.captioner is not None:
            self.caption = self.captioner(self.image, self.regions)[0]
            self.regions = self.regions.with_fields(captions=[self.caption])
        self._redraw()
        for listener in self.listeners:
            listener(self)
        return self.regions

    def reset(self) -> None:
        """Forget all points and show the bare image."""
        self.points, self.labels, self.regions, self.caption = [], [], None, None
        self._artist.set_data(self.image)
        self.figure.canvas.draw_idle()

    def state(self) -> dict:
        """The current result as JSON-able data: points, labels, caption, predicted IoU and the
        mask as COCO RLE (``mask_rle``; None before the first point)."""
        row = self.regions.to_rows()[0] if self.regions is not None else {}
        iou = row.get("data.predicted_iou")
        return {"points": [list(p) for p in self.points], "labels": list(self.labels), "caption": self.caption,
                "predicted_iou": None if iou is None else float(iou), "mask_rle": row.get("mask_rle")}

    def image_box_in_figure(self) -> tuple[float, float, float, float]:
        """Where the image is drawn: ``(left, top, right, bottom)`` of its outer pixel edges as
        fractions of the figure's width and height, measured from the figure's top-left corner
        (independent of the figure's dpi, so it maps image pixels onto the rendered canvas)."""
        self.ax.apply_aspect()  # imshow's equal aspect shrinks the axes box at draw time
        h, w = self.image.shape[:2]
        (x0, y0), (x1, y1) = self.ax.transData.transform([(-0.5, -0.5), (w - 0.5, h - 0.5)])
        fw, fh = self.figure.bbox.width, self.figure.bbox.height
        return float(x0 / fw), float(1 - y0 / fh), float(x1 / fw), float(1 - y1 / fh)

    def rendered(self) -> np.ndarray:
        """The current overlay ``(H, W, 3)`` uint8 (mask + points)."""
        out = self.image
        if self.regions is not None:
            out = draw_masks(out, self.regions.masks, colors=[[30, 144, 255]])
        if self.points:
            out = draw_points(out, self.points, self.labels)
        return out

    def _redraw(self) -> None:
        self._artist.set_data(self.rendered())
        iou = float(self.regions.data["predicted_iou"][0]) if self.regions is not None and "predicted_iou" in self.regions.data else None
        title = f"{len(self.points)} point(s)" + (f", predicted IoU {iou:.2f}" if iou is not None else "")
        if self.caption:
            title += "\n" + textwrap.fill(self.caption, width=_TITLE_WIDTH, max_lines=3, placeholder=" ...")
        self.ax.set_title(title, fontsize=9)
        self.figure.canvas.draw_idle()


def record_clicks(widget: ClickSegmenter, path: str | os.PathLike, **info) -> Path:
    """Append ``widget``'s session to the JSON-lines file ``path``: now one ``{"event": "ready"}``
    line (the image's size and SHA-256, `ClickSegmenter.image_box_in_figure`, and ``info``, which
    must be JSON-able), then one ``{"event": "update", **widget.state()}`` line after every click.

    Each line is written whole and flushed, so a reader polling the file sees complete lines."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RegionLibError(f"record_clicks: the folder of {str(path)!r} does not exist")

    def write(record: dict) -> None:
        line = json.dumps(record) + "\n"
        with path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    h, w = widget.image.shape[:2]
    try:
        write({"event": "ready", "image_size": [h, w],
               "image_sha256": hashlib.sha256(np.ascontiguousarray(widget.image).tobytes()).hexdigest(),
               "image_box_in_figure": list(widget.image_box_in_figure()), **info})
    except TypeError as exc:
        raise RegionLibError(f"record_clicks: info must be JSON-able ({exc})") from exc
    widget.listeners.append(lambda wd: write({"event": "update", **wd.state()}))
    return path
