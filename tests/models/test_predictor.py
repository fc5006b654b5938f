"""RegionPredictor: cached == uncached captions, batching, SCA segment + caption, RAS select, bad input."""

import numpy as np
import pytest

from regionlib.errors import ConfigError, InvalidMaskError, InvalidPromptError, RegionLibError
from regionlib.models import create_model
from regionlib.predictor import RegionPredictor
from regionlib.prompts import Prompt
from regionlib.regions import Regions


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca", "tiny-pooled"])
def test_cached_and_uncached_captions_are_identical(preset, world):
    model = create_model(preset).eval()
    s = world[0]
    predictor = RegionPredictor(model, batch_size=4)
    predictor.set_image(s.image)
    cached = predictor.caption(s.regions, max_new_tokens=6)
    assert len(cached) == len(s.regions)
    if preset == "tiny-sca":
        uncached = model.caption_regions(s.image, [Prompt(box_xyxy=b) for b in s.regions.boxes_xyxy], max_new_tokens=6)
    else:
        uncached = model.caption(s.image, s.regions.masks, max_new_tokens=6)
    assert cached == uncached
    # a second image replaces the cache
    s1 = world[1]
    predictor.set_image(s1.image)
    second = predictor.caption(s1.regions, max_new_tokens=6, batch_size=1)
    if preset == "tiny-sca":
        assert second == model.caption_regions(s1.image, [Prompt(box_xyxy=b) for b in s1.regions.boxes_xyxy],
                                               max_new_tokens=6)
    else:
        assert second == model.caption(s1.image, s1.regions.masks, max_new_tokens=6)


def test_batch_size_does_not_change_captions(world):
    model = create_model("tiny-pooled").eval()
    predictor = RegionPredictor(model)
    predictor.set_image(world[0].image)
    one = predictor.caption(world[0].regions, max_new_tokens=6, batch_size=1)
    assert one == predictor.caption(world[0].regions, max_new_tokens=6, batch_size=16)


def test_segment_and_caption_in_one_pass(world):
    model = create_model("tiny-sca").eval()
    s = world[0]
    predictor = RegionPredictor(model)
    predictor.set_image(s.image)
    prompts = [Prompt(box_xyxy=b) for b in s.regions.boxes_xyxy[:2]] + \
              [Prompt(points_xy=np.array([[100.0, 120.0]]), point_labels=np.array([1]))]
    out = predictor.segment_and_caption(prompts, max_new_tokens=4)
    assert len(out) == 3 and out.image_size == s.image.shape[:2]
    assert len(out.captions) == 3 and list(out.data["prompt_index"]) == [0, 1, 2]
    assert out.captions[:2] == predictor.caption(s.regions[:2], max_new_tokens=4)
    with pytest.raises(InvalidPromptError, match="empty"):
        predictor.segment_and_caption([])


def test_select_returns_a_subset_with_scores(world):
    model = create_model("tiny-ras").eval()
    s = world[0]
    predictor = RegionPredictor(model)
    predictor.set_image(s.image)
    chosen = predictor.select("every diamond", s.regions, threshold=0.0)
    assert len(chosen) == len(s.regions) and list(chosen.data["candidate_index"]) == list(range(len(s.regions)))
    none = predictor.select("every diamond", s.regions, threshold=1.0)
    assert len(none) == 0
    sample = model.prepare(s.image, "every diamond", s.regions.masks)
    scores = model.select([sample])[0].scores
    mid = predictor.select("every diamond", s.regions, threshold=float(np.median(scores)))
    assert np.allclose(mid.scores, scores[scores > np.median(scores)])


def test_bad_input(world):
    s = world[0]
    predictor = RegionPredictor(create_model("tiny-dam"))
    with pytest.raises(RegionLibError, match="set_image"):
        predictor.caption(s.regions)
    predictor.set_image(s.image)
    with pytest.raises(RegionLibError, match="empty"):
        predictor.caption(Regions.empty(s.image.shape[:2]))
    with pytest.raises(InvalidMaskError):
        predictor.caption(np.ones((1, 32, 32), dtype=bool))
    with pytest.raises(InvalidMaskError, match="size"):
        predictor.caption(Regions.from_masks(np.ones((1, 32, 32), dtype=bool)))
    with pytest.raises(RegionLibError, match="max_new_tokens"):
        predictor.caption(s.regions, max_new_tokens=0)
    with pytest.raises(ConfigError, match="SCA"):
        predictor.segment_and_caption([Prompt(box_xyxy=s.regions.boxes_xyxy[0])])
    with pytest.raises(ConfigError, match="RAS"):
        predictor.select("x", s.regions)
    with pytest.raises(ConfigError):
        RegionPredictor(object())


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca", "tiny-pooled"])
def test_describe_returns_regions_with_captions_and_their_log_probabilities(preset, world):
    model = create_model(preset).eval()
    s = world[0]
    predictor = RegionPredictor(model, batch_size=3)
    predictor.set_image(s.image)
    described = predictor.describe(s.regions, max_new_tokens=5)
    assert isinstance(described, Regions) and len(described) == len(s.regions)
    assert described.captions == predictor.caption(s.regions, max_new_tokens=5)
    lp = described.data["caption_logprob"]
    assert lp.shape == (len(s.regions),) and np.all(np.isfinite(lp)) and np.all(lp <= 0)
    np.testing.assert_array_equal(described.masks, s.regions.masks)
    predictor.reset()
    assert predictor.image is None and predictor._cache is None and predictor.model is model
    with pytest.raises(RegionLibError, match="set_image"):
        predictor.describe(s.regions)
