"""The fixed-seed outputs the regression test compares against (DESIGN.md: "a fixed-seed regression test
against stored outputs"): per model family, a few numbers of its forward pass at seed 0 on RegionWorld's
first image; RegionWorld's own bytes.

Regenerate (only when a change is *meant* to alter the outputs, and say so in the commit):
    PYTHONPATH=. python tests/regression/outputs.py > tests/regression/expected.json
"""

from __future__ import annotations

import hashlib
import json

FAMILIES = ("tiny-dam", "tiny-sca", "tiny-ras", "tiny-pooled")


def regionworld_digest() -> dict:
    """sha256 of the pixels and of the masks / captions of RegionWorld's first 3 images (seed 0, train)."""
    from regionlib.data.regionworld import generate_regionworld

    out = {}
    for s in generate_regionworld(3, seed=0, split="train"):
        meta = json.dumps({"rle": s.regions.masks_rle, "captions": s.regions.captions,
                           "boxes": s.regions.boxes_xyxy.round(3).tolist()}, sort_keys=True, default=str)
        out[s.image_id] = {"image": hashlib.sha256(s.image.tobytes()).hexdigest(),
                           "regions": hashlib.sha256(meta.encode()).hexdigest()}
    return out


def family_outputs(preset: str) -> dict:
    """Numbers of ``preset``'s forward pass (seed 0) on the regions of RegionWorld's first image."""
    import torch

    from regionlib.data.regionworld import generate_regionworld
    from regionlib.models import create_model

    torch.manual_seed(0)
    s = generate_regionworld(1, seed=0, split="train")[0]
    model = create_model(preset, seed=0).eval()
    state = model.encode_image(s.image)
    with torch.no_grad():
        if preset == "tiny-ras":
            batch = model.region_inputs(state, s.regions, "every circle")
            values = model(batch).logits.flatten()
        else:
            batch = model.region_inputs(state, s.regions)
            values = model(batch).logits[:, :, :4].flatten()  # the first vocabulary entries at the target positions
    values = values.double()
    return {"n": int(values.numel()), "mean": float(values.mean()), "std": float(values.std()),
            "head": [round(float(v), 6) for v in values[:8]]}


def expected() -> dict:
    return {"regionworld": regionworld_digest(), "families": {p: family_outputs(p) for p in FAMILIES}}


if __name__ == "__main__":
    print(json.dumps(expected(), indent=1))
