"""Mask-pooled captioner: PGC format, region captioning and grounded captioning."""

import pytest

from regionlib.errors import DataFormatError, RegionLibError
from regionlib.models import GroundedPhrase, create_model, format_pgc, parse_pgc

from .conftest import fit, per_image


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
    batch = model.prepare(s.image, s.regions.masks[:3])
    ctx = model.region_contexts(batch)
    assert ctx.shape[0] == 3 and ctx.shape[2] == model.lm_head.width
    loss = model.loss(batch, s.regions.captions[:3])
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
    batches = [model.prepare(img, m) for img, m, _ in groups]
    captions = [c for *_, cs in groups for c in cs]
    expected = [model.lm_head.decode(model.lm_head.token_ids(c)) for c in captions]

    def loss():
        return sum(model.loss(b, cs) * len(cs) for b, (*_, cs) in zip(batches, groups)) / len(captions)

    def generated():
        return [c for b in batches for c in model.generate(b, max_new_tokens=40)]

    steps = fit(model, loss, lambda: generated() == expected, max_steps=300)
    assert generated() == expected, f"not fitted after {steps} steps"


def test_fits_grounded_captions_with_their_masks(world):
    model = create_model("tiny-pooled")
    samples, texts, groundings = [], [], []
    for s in world[:3]:
        phrases = s.regions.data["phrase"]
        order = [len(phrases) - 1, 0]
        samples.append(model.prepare(s.image, s.regions.masks))
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
