"""``make demo``: the shipped pretrained SAM segments a RegionWorld image, the shipped VL base captions it.

Bugs caught: the demo silently on a random-init SAM (IoU ~0.01), a box / click mix-up (the masks'
IoU against their own objects and the colour each caption names would swap), a captioner reading
the wrong crop.
"""

import json

from regionlib import demo


def test_demo_segments_and_captions_the_right_objects(tmp_path):
    summary = demo.run(tmp_path)
    assert (tmp_path / "demo.png").stat().st_size > 20_000
    assert json.loads((tmp_path / "demo.json").read_text()) == summary
    assert summary["sam"] == "regionworld base"
    assert min(summary["iou_vs_ground_truth"]) > 0.5, summary
    for caption, truth in zip(summary["captions"], summary["true_captions"]):
        colour = truth.split()[2]  # "A {size} {color} ..."
        assert caption and colour in caption.lower().split(), (caption, truth)
