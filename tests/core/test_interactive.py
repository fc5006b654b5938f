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


def test_listeners_state_layout_and_click_log(tiny_sam, photo, tmp_path):
    import json

    from regionlib.errors import RegionLibError
    from regionlib.interactive import record_clicks
    from regionlib.masks import decode_rle

    seen = []
    widget = ClickSegmenter(SamSegmenter(tiny_sam), photo, captioner=lambda im, r: ["a long caption " * 20],
                            on_update=lambda w: seen.append(len(w.points)))
    assert widget.state() == {"points": [], "labels": [], "caption": None, "predicted_iou": None, "mask_rle": None}
    log = record_clicks(widget, tmp_path / "clicks.jsonl", note={"seed": 3})
    # the image box maps an image pixel to the figure fraction where a click reaches that pixel
    left, top, right, bottom = widget.image_box_in_figure()
    h, w = photo.shape[:2]
    x, y = 30, 90
    fx, fy = left + (x + 0.5) / w * (right - left), top + (y + 0.5) / h * (bottom - top)
    fw, fh = widget.figure.bbox.width, widget.figure.bbox.height
    event = MouseEvent("button_press_event", widget.figure.canvas, fx * fw, (1 - fy) * fh, button=MouseButton.LEFT)
    widget.figure.canvas.callbacks.process("button_press_event", event)
    assert widget.points == [pytest.approx((x, y), abs=0.01)] and seen == [1]  # pixel centres are integers
    state = widget.state()
    np.testing.assert_array_equal(decode_rle(state["mask_rle"])[0], widget.regions.masks[0])
    assert state["predicted_iou"] == pytest.approx(float(widget.regions.data["predicted_iou"][0]))
    assert widget.ax.get_title().count("\n") == 3 and widget.ax.get_title().endswith("...")  # wrapped, 3 lines
    ready, update = [json.loads(line) for line in log.read_text().splitlines()]
    assert ready["event"] == "ready" and ready["image_size"] == [h, w] and ready["note"] == {"seed": 3}
    assert ready["image_box_in_figure"] == pytest.approx([left, top, right, bottom])
    assert update == {"event": "update", **state}
    with pytest.raises(RegionLibError, match="does not exist"):
        record_clicks(widget, tmp_path / "missing" / "clicks.jsonl")
    with pytest.raises(RegionLibError, match="JSON-able"):
        record_clicks(widget, tmp_path / "other.jsonl", bad=object())
    plt.close(widget.figure)
