import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import MouseButton, MouseEvent  # noqa: E402

from regionlib.errors import InvalidPromptError  # noqa: E402
from regionlib.interactive import ClickSegmenter  # noqa: E402
from regionlib.sam import SamSegmenter  # noqa: E402


def click(widget, x, y, button):
    """Dispatch a real matplotlib button_press_event at data coordinates (x, y)."""
    px, py = widget.ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", widget.figure.canvas, px, py, button=button)
    widget.figure.canvas.callbacks.process("button_press_event", event)


def test_clicks_drive_segmentation_and_caption(tiny_sam, photo):
    calls = []

    def captioner(image, regions):
        calls.append(len(regions))
        return [f"region of {int(regions.masks[0].sum())} px"]

    widget = ClickSegmenter(SamSegmenter(tiny_sam), photo, captioner=captioner)
    click(widget, 40, 50, MouseButton.LEFT)
    assert widget.points == [pytest.approx((40, 50), abs=0.6)] and widget.labels == [1]
    first = widget.regions.masks.copy()
    click(widget, 100, 20, MouseButton.RIGHT)
    assert widget.labels == [1, 0] and len(calls) == 2
    assert widget.caption == f"region of {int(widget.regions.masks[0].sum())} px"
    assert widget.caption in widget.ax.get_title()
    shown = np.asarray(widget.ax.images[0].get_array())
    np.testing.assert_array_equal(shown, widget.rendered())
    assert not np.array_equal(shown, photo)
    # the two-point result is exactly what the segmenter gives for the same prompt
    from regionlib.prompts import Prompt

    again = widget.segmenter.segment([Prompt.from_points(widget.points, widget.labels)])
    np.testing.assert_array_equal(again.masks, widget.regions.masks)
    assert first.shape == again.masks.shape
    with pytest.raises(InvalidPromptError, match="outside the image"):
        widget.add_point(500, 5)
    assert len(widget.points) == 2  # a refused click leaves the state unchanged
    widget.reset()
    assert widget.points == [] and widget.regions is None
    plt.close(widget.figure)
