"""SCA: paper parameter count, decoder parity with SAM, mixer variants, frozen SAM, fitting 8 regions."""

import numpy as np
import pytest
import torch

from regionlib.errors import ConfigError, InvalidPromptError
from regionlib.models import MIXER_INPUTS, SCAConfig, create_model, sca_trainable_parameters
from regionlib.prompts import Prompt

from .conftest import batch_of, fit, per_image


def test_paper_config_trains_19_4_million_parameters():
    counts = sca_trainable_parameters()  # SAM ViT-H decoder space, 8 queries, 12 layers, 6 task tokens, width 1280
    assert round(counts["total"] / 1e6, 1) == 19.4  # seed 000: "19.4M trainable parameters"
    assert counts["queries"] == 8 * 256 and counts["task_tokens"] == 6 * 1280 and counts["proj"] == 256 * 1280 + 1280
    assert sca_trainable_parameters(SCAConfig(sam_preset="vit_h", mixer_depth=6))["total"] < counts["total"]


def test_decoder_masks_equal_sams_mask_decoder(world):
    model = create_model("tiny-sca").eval()
    s = world[0]
    batch = model.region_inputs(model.encode_image(s.image), s.regions[:3])
    state = model.decode(batch["image_embeddings"], batch["image_index"], boxes=batch["boxes"])
    sparse, dense = model.sam.prompt_encoder(points=None, boxes=batch["boxes"], masks=None)
    for i in range(3):
        ref, iou = model.sam.mask_decoder(image_embeddings=batch["image_embeddings"],
                                         image_pe=model.sam.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse[i:i + 1], dense_prompt_embeddings=dense[i:i + 1],
                                         multimask_output=True)
        best = int(iou[0].argmax())
        assert torch.allclose(state.low_res_masks[i], ref[0, best], atol=1e-5)
        assert torch.allclose(state.iou[i], iou[0, best], atol=1e-6)


@pytest.mark.parametrize("mixer_inputs", MIXER_INPUTS)
def test_forward_backward_every_mixer_variant_keeps_sam_frozen(mixer_inputs, world):
    model = create_model("tiny-sca", mixer_inputs=mixer_inputs)
    sam_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    s = world[0]
    state = model.encode_image(s.image)
    for prompts in ("box", [Prompt(points_xy=np.array([[60.0, 70.0]]), point_labels=np.array([1])) for _ in range(2)]):
        batch = model.region_inputs(state, s.regions[:2].with_fields(captions=["a red circle", "a blue square"]),
                                    prompts=prompts)
        out = model(batch)
        n_visual = {"roi-align": 7 * 7, "sam-tokens": 4}.get(mixer_inputs, 8)
        assert out.prefix.shape == (2, 6 + n_visual, model.lm_head.width)
        assert out.low_res_masks.shape == (2, 64, 64)  # 4x the 16 x 16 embedding grid
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(batch).loss
    loss.backward()
    opt.step()
    assert model.task_tokens.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.sam.parameters())
    assert all(torch.equal(v, sam_before[k]) for k, v in model.sam.state_dict().items())


def test_lm_frozen_by_default_in_the_paper_preset():
    model = create_model("sca-gpt2-large", device="meta")
    report = model.parameter_report()
    assert report["trainable.lm_head"] == 0 and report["trainable.sam"] == 0
    assert round(report["trainable"] / 1e6, 1) == 19.4


def test_prompt_errors(world):
    model = create_model("tiny-sca")
    s = world[0]
    state = model.encode_image(s.image)
    with pytest.raises(InvalidPromptError, match="share"):
        model.region_inputs(state, s.regions[:2], prompts=[
            Prompt(box_xyxy=s.regions.boxes_xyxy[0]), Prompt(points_xy=np.array([[5.0, 5.0]]), point_labels=np.array([1]))])
    with pytest.raises(InvalidPromptError):
        model.region_inputs(state, s.regions[:1], prompts=[Prompt(box_xyxy=np.array([0.0, 0.0, 400.0, 400.0]))])
    with pytest.raises(InvalidPromptError, match="one Prompt per region"):
        model.region_inputs(state, s.regions[:2], prompts=[Prompt(box_xyxy=s.regions.boxes_xyxy[0])])
    with pytest.raises(ConfigError, match="prompt must be one of"):
        model.region_inputs(state, s.regions[:1], prompts="centre")
    with pytest.raises(ConfigError, match="mixer_inputs"):
        create_model("tiny-sca", mixer_inputs="queries-only")


def test_fits_eight_regions_under_greedy_decoding(world, eight):
    model = create_model("tiny-sca", lm__max_target_tokens=None)
    batch = batch_of(model, per_image(eight))  # box prompts over 8 regions of several images, one batch
    captions = batch["targets"]
    assert batch["image_embeddings"].shape[0] == len({k for k, *_ in eight})
    expected = [model.lm_head.decode(model.lm_head.token_ids(c)) for c in captions]
    steps = fit(model, lambda: model(batch).loss,
                lambda: model.generate(batch, max_new_tokens=40) == expected, max_steps=300)
    assert model.generate(batch, max_new_tokens=40) == expected, f"not fitted after {steps} steps"
