"""Click-to-segment in a notebook: a matplotlib figure whose clicks become SAM point prompts.

In JupyterLab use the interactive backend (``%matplotlib widget``, from ipympl): a left click
adds a positive point, a right click a negative one; the mask, the points and (with a
``captioner``) the region's caption update after every click. The same handler is driven
programmatically with `ClickSegmenter.add_point` (tests, scripted demos).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .images import to_rgb_uint8
from .overlays import draw_masks, draw_points
from .prompts import Prompt
from .regions import Regions

__all__ = ["ClickSegmenter"]

#: Matplotlib mouse buttons: 1 = left (positive point), 3 = right (negative point).
_BUTTON_LABELS = {1: 1, 3: 0}


class ClickSegmenter:
    """Interactive point-prompt segmentation (and optional captioning) of one image.

    Args:
        segmenter: an object with ``set_image(image)`` and ``segment(prompts) -> Regions``
            (e.g. `regionlib.sam.SamSegmenter`).
        image: the image (anything `to_rgb_uint8` accepts).
        captioner: optional ``f(image, regions) -> list[str]`` called after each update.
        ax: a matplotlib Axes to draw in (a new figure is made when None).
    """

    def __init__(self, segmenter, image, *, captioner: Callable[[np.ndarray, Regions], list[str]] | None = None, ax=None):
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
        return self.regions

    def reset(self) -> None:
        """Forget all points and show the bare image."""
        self.points, self.labels, self.regions, self.caption = [], [], None, None
        self._artist.set_data(self.image)
        self.figure.canvas.draw_idle()

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
            title += f"\n{self.caption}"
        self.ax.set_title(title, fontsize=9)
        self.figure.canvas.draw_idle()
