"""RegionPredictor, the only runner: cached == uncached and batched == one at a time on models whose
captions differ per region (fitted here), SCA segment + caption, RAS select, bad input."""

import numpy as np
import pytest
import torch

from regionlib.errors import ConfigError, InvalidMaskError, InvalidPromptError, RegionLibError
from regionlib.models import create_model
from regionlib.predictor import RegionPredictor
from regionlib.prompts import Prompt
from regionlib.regions import Regions

from .conftest import batch_of, fit, per_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["tiny-dam", "tiny-sca", "tiny-pooled"])
def fitted(request, eight):
    """A captioner of each family fitted to 8 distinct captions of regions on several images, so that a
    mix-up of regions, of images or of cached encodings changes what comes out."""
    model = create_model(request.param, **({"lm__max_target_tokens": None} if request.param == "tiny-sca" else {}))
    groups = per_image(eight)
    batch = batch_of(model, groups)
    expected = [model.lm_head.decode(model.lm_head.token_ids(c)) for c in batch["targets"]]
    fit(model, lambda: model(batch).loss, lambda: model.generate(batch, max_new_tokens=40) == expected, max_steps=400)
    model.eval()
    assert model.generate(batch, max_new_tokens=40) == expected, "the fixture model did not fit its 8 captions"
    return model, groups, expected


def test_cached_batched_equals_uncached_one_at_a_time_on_distinct_captions(fitted):
    """Bugs caught: a predictor that captions the wrong region of a batch, keeps a stale image
    encoding after set_image, or pads / batches regions so that they change each other's output."""
    model, groups, expected = fitted
    assert len(set(expected)) == 8  # not vacuous: every region has its own caption
    predictor = RegionPredictor(model, batch_size=3)
    got = []
    for image, regions in groups:  # one cached encoding per image, regions in chunks of 3
        predictor.set_image(image)
        got += predictor.caption(regions, max_new_tokens=40)
    assert got == expected
    single = []
    for image, regions in groups:  # uncached: a fresh predictor per region, one region per batch
        for k in range(len(regions)):
            p = RegionPredictor(model, batch_size=1)
            p.set_image(image)
            single += p.caption(regions[k: k + 1], max_new_tokens=40)
    assert single == expected
    reversed_regions = groups[0][1][::-1]  # order in = order out
    predictor.set_image(groups[0][0])
    assert predictor.caption(reversed_regions, max_new_tokens=40) == expected[: len(groups[0][1])][::-1]


def test_scores_follow_their_regions(fitted):
    """Bug caught: score() pairing texts with the wrong regions: each region's own caption must score
    higher than the caption of another region, batched or not, and equal describe()'s log-probability."""
    model, groups, expected = fitted
    image, regions = groups[0]
    n = len(regions)
    predictor = RegionPredictor(model, batch_size=2)
    predictor.set_image(image)
    own = predictor.score(regions, expected[:n])
    swapped = predictor.score(regions, expected[1:n] + expected[:1])
    assert np.all(own > swapped)
    described = predictor.describe(regions, max_new_tokens=40)
    assert described.captions == expected[:n]
    np.testing.assert_allclose(described.data["caption_logprob"], own, atol=1e-5)
    one = RegionPredictor(model, batch_size=1)
    one.set_image(image)
    np.testing.assert_allclose(one.score(regions, expected[:n]), own, atol=1e-5)


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
    batch = model.region_inputs(model.encode_image(s.image), s.regions, "every diamond")
    scores = model.select(batch)[0].scores
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
    with pytest.raises(RegionLibError, match="Regions"):
        predictor.caption(np.ones((1, 32, 32), dtype=bool))
    with pytest.raises(InvalidMaskError, match="size"):
        predictor.caption(Regions.from_masks(np.ones((1, 32, 32), dtype=bool)))
    with pytest.raises(RegionLibError, match="max_new_tokens"):
        predictor.caption(s.regions, max_new_tokens=0)
    with pytest.raises(RegionLibError, match="batch_size"):
        predictor.caption(s.regions, batch_size=0)
    with pytest.raises(ConfigError, match="not a PromptSegmenter; use an SCA"):
        predictor.segment_and_caption([Prompt(box_xyxy=s.regions.boxes_xyxy[0])])
    with pytest.raises(ConfigError, match="not a Selector; use a RAS"):
        predictor.select("x", s.regions)
    with pytest.raises(ConfigError, match="one per region"):
        predictor.caption(s.regions, prompts=[1] * len(s.regions))
    ras = RegionPredictor(create_model("tiny-ras"))
    ras.set_image(s.image)
    with pytest.raises(ConfigError, match="does not caption regions: it is not a Captioner"):
        ras.caption(s.regions)
    with pytest.raises(ConfigError, match="does not describe video regions"):
        ras.set_video([s.image])
    with pytest.raises(ConfigError):
        RegionPredictor(object())


def test_reset_forgets_the_image_only(world):
    model = create_model("tiny-pooled").eval()
    predictor = RegionPredictor(model, batch_size=3)
    predictor.set_image(world[0].image)
    assert predictor.image_size == world[0].image.shape[:2]
    assert predictor.state.tensors["features"][0].device == next(model.parameters()).device  # cached on the device
    predictor.reset()
    assert predictor.image is None and predictor.state is None and predictor.model is model
    with pytest.raises(RegionLibError, match="set_image"):
        predictor.describe(world[0].regions)


def test_dam_embeds_the_full_image_once_per_image_in_a_batch(world):
    """Bug caught: a batch copying (and patch-embedding) one full image per region: the per-image
    tensor keeps its image axis, regions point at it through image_index, outputs equal the per-region form."""
    model = create_model("tiny-dam").eval()
    s = world[0]
    batch = model.region_inputs(model.encode_image(s.image), s.regions)
    assert batch["full_image"].shape[0] == 1 and batch["full_mask"].shape[0] == len(s.regions)
    per_region = {**batch, "full_image": batch["full_image"].expand(len(s.regions), -1, -1, -1), "image_index": None}
    with torch.no_grad():
        torch.testing.assert_close(model.prefix(batch), model.prefix(per_region), atol=1e-6, rtol=0)


def test_the_model_contract_is_declared_in_code():
    """Bug caught: a model that forgets part of the interface (it would fail only when a predictor or the
    training loop first calls it); each capability the predictor needs is a Protocol the models satisfy."""
    import torch.nn as nn

    from regionlib.models.checkpoint import RegionModel
    from regionlib.models.interface import Captioner, EmbeddingCacheable, PromptSegmenter, Selector, VideoDescriber

    class Incomplete(RegionModel):
        def encode_image(self, image):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()

    class NoContexts(Captioner, RegionModel):
        def encode_image(self, image):
            return None

        def region_inputs(self, state, regions, **request):
            return {}

    with pytest.raises(TypeError, match="contexts"):
        NoContexts()
    want = {"tiny-dam": {Captioner, VideoDescriber}, "tiny-sca": {Captioner, PromptSegmenter, EmbeddingCacheable},
            "tiny-ras": {Selector}, "tiny-pooled": {Captioner}}
    for preset, caps in want.items():
        model = create_model(preset)
        assert isinstance(model, nn.Module)
        got = {c for c in (Captioner, PromptSegmenter, Selector, VideoDescriber, EmbeddingCacheable)
               if isinstance(model, c)}
        assert got == caps, preset
        # FSDP2's fully_shard swaps the class for a subclass of (FSDPModule, cls): the layouts must agree
        from torch.distributed.fsdp import FSDPModule

        model.__class__ = type(f"FSDP{type(model).__name__}", (FSDPModule, type(model)), {})


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca", "tiny-pooled"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_describes_like_the_float32_one(preset, dtype, world):
    """Bug caught: ``model.to(torch.bfloat16)`` / ``.half()`` inference crashing with an untyped RuntimeError
    (the processors' float32 inputs meeting half-precision weights; SAM's float32 positional encoding)."""
    s = world[0]
    full = RegionPredictor(create_model(preset, seed=0).eval())
    half = RegionPredictor(create_model(preset, seed=0).to(dtype).eval())
    for p in (full, half):
        p.set_image(s.image)
    a, b = full.describe(s.regions[:3], max_new_tokens=5), half.describe(s.regions[:3], max_new_tokens=5)
    assert a.captions == b.captions
    np.testing.assert_allclose(a.data["caption_logprob"], b.data["caption_logprob"], atol=5e-3)
