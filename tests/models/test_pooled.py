"""Mask-pooled captioner: PGC format, region captioning and grounded captioning."""

import pytest

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.models import GroundedPhrase, create_model, format_pgc, parse_pgc

from .conftest import batch_of, fit, inputs, per_image


def test_pgc_format_round_trip():
    text = format_pgc(["A", ("red circle", "thing"), "lies on", GroundedPhrase("grass", "stuff"), "."])
    assert text == "A <p>red circle</p><SEG_t> lies on <p>grass</p><SEG_s> ."
    assert parse_pgc(text) == [GroundedPhrase("red circle", "thing"), GroundedPhrase("grass", "stuff")]
    # decoded model output has spaces around the special tokens
    assert parse_pgc("a <p> red circle </p> <SEG_t> and <SEG_s>") == [GroundedPhrase("red circle", "thing")]
    with pytest.raises(DataFormatError, match="kind"):
        format_pgc([("sky", "background")])


def test_forward_backward_region_and_grounded(world):
    model = create_model("tiny-pooled")
    s = world[0]
    batch = inputs(model, s.image, s.regions[:3])
    ctx, _ = model.contexts(batch)
    assert ctx.shape[0] == 3 and ctx.shape[2] == model.lm_head.width
    loss = model(batch).loss
    loss.backward()
    assert model.mask_tokenizer.proj[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    text = format_pgc([("yellow striped diamond", "thing"), "and", ("white hexagon", "thing")])
    g = model.grounded_loss([batch], [text], [[0, 2]])
    g.backward()
    assert model.ground_proj.weight.grad.abs().sum() > 0
    with pytest.raises(RegionLibError, match="SEG"):
        model.grounded_loss([batch], [text], [[0]])
    with pytest.raises(RegionLibError, match="groundings"):
        model.grounded_loss([batch], [text], [[0, 5]])


def test_fits_eight_region_captions(eight):
    model = create_model("tiny-pooled")
    groups = per_image(eight)
    batch = batch_of(model, groups)  # regions of several images in one batch: each reads its own image's tokens
    expected = [model.lm_head.decode(model.lm_head.token_ids(c)) for c in batch["targets"]]

    def loss():
        return model(batch).loss

    def generated():
        return model.generate(batch, max_new_tokens=40)

    steps = fit(model, loss, lambda: generated() == expected, max_steps=300)
    assert generated() == expected, f"not fitted after {steps} steps"


def test_fits_grounded_captions_with_their_masks(world):
    model = create_model("tiny-pooled")
    samples, texts, groundings = [], [], []
    for s in world[:3]:
        phrases = s.regions.data["phrase"]
        order = [len(phrases) - 1, 0]
        samples.append(inputs(model, s.image, s.regions))
        texts.append(format_pgc(["there is a", (phrases[order[0]], "thing"), "and a", (phrases[order[1]], "thing")]))
        groundings.append(order)

    def done():
        out = model.grounded_caption(samples, max_new_tokens=20)
        return all([p.mask_index for p in o.phrases] == g for o, g in zip(out, groundings))

    steps = fit(model, lambda: model.grounded_loss(samples, texts, groundings), done, max_steps=300, check_every=20)
    out = model.grounded_caption(samples, max_new_tokens=20)
    for o, s, g in zip(out, world, groundings):
        assert [p.phrase for p in o.phrases] == [s.regions.data["phrase"][i] for i in g], f"after {steps} steps"
        assert [p.mask_index for p in o.phrases] == g
        assert all(p.kind == "thing" for p in o.phrases)
