"""RAS: mask tokens with role tokens, selection head (BCE, pos_weight), selecting the right groups."""

import numpy as np
import pytest
import torch

from regionlib.errors import InvalidMaskError, RegionLibError
from regionlib.models import create_model
from regionlib.models.mask_tokens import sinusoidal_position_2d
from regionlib.models.ras import MASK_POOL_PRE, MASK_REF_PRE
from regionlib.regions import Regions

from .conftest import fit


def group_samples(world):
    """8 (image, prompt, candidates, selected indices): one shape group and one colour group per image."""
    rows = []
    for s in world[:4]:
        attrs = s.regions.data["attributes"]
        for key, idx in (("shape", 0), ("color", len(attrs) - 1)):
            value = attrs[idx][key]
            prompt = f"every {value}" if key == "shape" else f"every {value} object"
            rows.append((s.image, prompt, s.regions, [i for i, a in enumerate(attrs) if a[key] == value]))
    return rows


def test_role_tokens_and_sequence_layout(world):
    model = create_model("tiny-ras")
    tok = model.lm_head.tokenizer
    assert tok.convert_ids_to_tokens([model.pool_id, model.ref_id]) == [MASK_POOL_PRE, MASK_REF_PRE]
    assert model.lm_head.lm.get_input_embeddings().num_embeddings == len(tok)
    s = world[0]
    state = model.encode_image(s.image)
    sample = model.region_inputs(state, s.regions, "every diamond", references=s.regions[:1])["samples"][0]
    seq, pos = model._sequence(sample)
    assert len(pos) == len(s.regions)
    pool = model.lm_head.embed_ids([model.pool_id])[0]
    assert all(torch.equal(seq[p - 1], pool) for p in pos)  # <mask-pool-pre> before every candidate token
    assert pos[-1] == seq.shape[0] - 1


def test_forward_backward_and_pos_weight(world):
    model = create_model("tiny-ras-2enc").eval()  # no dropout: compare two passes exactly
    s = world[0]
    state = model.encode_image(s.image)
    batch = model.collate([model.region_inputs(state, s.regions, "every diamond"),
                           model.region_inputs(state, s.regions[:2], "every red object", references=s.regions[2:3])])
    samples = batch["samples"]
    loss = model.loss(samples, [[0, 1, 2], []])
    loss.backward()
    assert torch.isfinite(loss) and model.head.mlp[0].weight.grad.abs().sum() > 0
    assert model.mask_tokenizer.proj[0].in_features == 64 + 32 + 32  # two encoders + position feature
    logits = torch.cat([lg.detach() for lg in model.logits(samples)])
    y = torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(5.0))
    assert torch.allclose(model.loss(samples, [[0, 1, 2], []]), ref, atol=1e-6)
    assert not torch.allclose(ref, torch.nn.functional.binary_cross_entropy_with_logits(logits, y), atol=1e-4)
    with pytest.raises(RegionLibError, match="targets"):
        model.loss(samples, [[0]])
    with pytest.raises(RegionLibError, match=r"targets\[0\]"):
        model.loss(samples, [[9], []])
    with pytest.raises(InvalidMaskError):
        model.region_inputs(state, Regions.from_masks(np.ones((1, 32, 32), dtype=bool)), "x")
    with pytest.raises(RegionLibError, match="empty"):
        model.region_inputs(state, s.regions[:0], "x")
    # through forward (what DDP wraps): targets as a bool vector per candidate in regions.data["selected"]
    sel = np.zeros(len(s.regions), dtype=bool)
    sel[:3] = True
    one = model.region_inputs(state, s.regions.with_fields(data={"selected": sel}), "every diamond")
    assert torch.allclose(model(one).loss, model.loss(samples[:1], [[0, 1, 2]]), atol=1e-6)


def test_sinusoidal_position_features():
    pe = sinusoidal_position_2d(torch.tensor([[0.0, 0.0], [0.5, 0.25]]), 8)
    assert pe.shape == (2, 8)
    # per axis: k sines then k cosines (k = dim / 4), x first
    assert torch.allclose(pe[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))
    # first frequency: angle 2 pi x; second: 2 pi x / 10000 ** (1 / 2)
    assert torch.allclose(pe[1, [0, 2, 4, 6]], torch.tensor([0.0, -1.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(pe[1, 1], torch.sin(torch.tensor(torch.pi / 100)), atol=1e-6)


def test_selects_the_right_groups_for_eight_prompts(world):
    model = create_model("tiny-ras")
    rows = group_samples(world)
    batch = model.collate([model.region_inputs(model.encode_image(img), regions, prompt)
                           for img, prompt, regions, _ in rows])
    targets = [t for *_, t in rows]

    def done():
        return [list(s.indices) for s in model.select(batch)] == targets

    steps = fit(model, lambda: model.loss(batch["samples"], targets), done, max_steps=300, check_every=20)
    assert [list(s.indices) for s in model.select(batch)] == targets, f"not fitted after {steps} steps"
