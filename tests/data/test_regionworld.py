import numpy as np
import pytest

from regionlib.data.regionworld import (
    VOCABULARY,
    attribute_accuracy,
    generate_regionworld,
    generate_sample,
    load_regionworld,
    save_regionworld,
    split_ids,
)
from regionlib.focal import focal_prompt


def test_deterministic_bytes_and_fields():
    a, b = generate_sample(7), generate_sample(7)
    assert a.image.tobytes() == b.image.tobytes() and a.regions.masks_rle == b.regions.masks_rle
    assert a.regions.captions == b.regions.captions
    assert generate_sample(8).image.tobytes() != a.image.tobytes()
    r = a.regions
    assert 1 <= len(r) <= 6 and r.image_size == (256, 256)
    for cap, attrs, q in zip(r.captions, r.data["attributes"], r.data["questions"]):
        assert attrs["shape"] in VOCABULARY["shape"] and attrs["color"] in cap and attrs["pattern"] in cap
        assert {len(x["choices"]) for x in q["details_positives"]} == {4}
        assert sorted(c[1] for c in q["details_positives"][0]["choices"]) == [-1, 0, 0.5, 1]
        assert sorted(c[1] for c in q["details_negatives"][0]["choices"]) == [-1, 0, 1, 1]
    # masks are the visible parts: disjoint
    assert r.masks.sum(axis=0).max() <= 1


def _pattern_energy(tensor, mask):
    """Std of the image inside the (eroded) region, averaged over channels."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=1)
    vals = tensor[:, inner] if inner.any() else tensor[:, mask]
    return float(vals.std(axis=1).mean())


def test_small_patterns_vanish_at_full_resolution_but_survive_in_the_focal_crop():
    ratios = []
    for seed in range(60):
        s = generate_sample(seed)
        for i, a in enumerate(s.regions.data["attributes"]):
            if a["size"] != "tiny" or a["pattern"] == "solid" or a["outline"]:
                continue
            m = s.regions.masks[i]
            fp = focal_prompt(s.image, m[None], size=(64, 64))
            full = fp.full_image_tensor[0].numpy()
            full_mask = fp.full_mask_tensor[0, 0].numpy() > 0
            crop = fp.image_tensor[0].numpy()
            crop_mask = fp.mask_tensor[0, 0].numpy() > 0
            if full_mask.sum() == 0:
                ratios.append(np.inf)
                continue
            ratios.append(_pattern_energy(crop, crop_mask) / max(_pattern_energy(full, full_mask), 1e-6))
    assert len(ratios) >= 5
    assert np.median(ratios) > 2.0  # the pattern's contrast is far higher in the focal crop


def test_hf_round_trip_splits_and_attribute_accuracy(tmp_path):
    samples = generate_regionworld(3, seed=2)
    save_regionworld(samples, tmp_path / "rw")
    back = load_regionworld(tmp_path / "rw")
    assert [s.image_id for s in back] == [s.image_id for s in samples]
    np.testing.assert_array_equal(back[1].image, samples[1].image)
    np.testing.assert_array_equal(back[1].regions.masks, samples[1].regions.masks)
    assert back[2].regions.captions == samples[2].regions.captions
    assert split_ids(10) == {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}
    caps = samples[0].regions.captions
    attrs = samples[0].regions.data["attributes"]
    assert attribute_accuracy(caps, attrs) == {k: 1.0 for k in ("shape", "color", "pattern", "size", "position")}
    assert attribute_accuracy(["a thing"] * len(attrs), attrs)["color"] == 0.0
