"""DAM: zero-init equivalence, every Tab. 8 variant forward/backward, video, input checks, fitting 8 regions."""

import numpy as np
import pytest
import torch

from regionlib.errors import ConfigError, InvalidMaskError, RegionLibError
from regionlib.models import VARIANTS, create_model
from regionlib.regions import Regions

from .conftest import batch_of, fit, inputs, per_image


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-dam-siglip", "tiny-dam-clip"])
@pytest.mark.parametrize("adapter", ["paper", "released"])
def test_zero_initialised_backbone_equals_the_base_encoder(preset, adapter, world):
    model = create_model(preset, adapter=adapter).eval()
    s = world[0]
    batch = inputs(model, s.image, s.regions[:3])
    with torch.no_grad():
        out = model.backbone(**{k: v for k, v in batch.items() if k not in ("targets", "prompts")})
        base = model.backbone.vision(batch["crop_image"], output_hidden_states=True).hidden_states[-2]
    assert torch.equal(out, base)
    # and the equality is not vacuous: a non-zero mask embedding changes the output
    with torch.no_grad():
        model.backbone.mask_embed.weight.fill_(0.01)
        assert not torch.equal(model.backbone(**{k: v for k, v in batch.items() if k not in ("targets", "prompts")}), base)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_backward_every_variant(variant, world):
    model = create_model("tiny-dam", variant=variant)
    s = world[0]
    batch = inputs(model, s.image, s.regions[:2])
    prefix = model.prefix(batch)
    grid = (64 // 8) ** 2 + 1  # patches + CLS of the tiny ViT
    assert prefix.shape == (2, grid * (2 if variant.endswith("concat") else 1), model.lm_head.width)
    loss = model(batch, label_smoothing=0.1).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.mask_embed.weight.grad.abs().sum() > 0
    if variant.endswith("xattn"):
        adapters = model.backbone.adapters
        assert len(adapters) == 2  # blocks up to the second-to-last of 3
        assert adapters[0].gamma.grad is not None and adapters[0].gamma.grad.abs() > 0
    else:
        assert model.backbone.adapters is None


def test_crop_modes_follow_the_variant(world):
    s = world[0]
    local = inputs(create_model("tiny-dam-local-xattn"), s.image, s.regions[:1])["crop_image"]
    focal = inputs(create_model("tiny-dam"), s.image, s.regions[:1])["crop_image"]
    assert not torch.equal(local, focal)


def test_video_frames_are_concatenated(world):
    model = create_model("tiny-dam")
    frames = [world[0].image, world[0].image[:, ::-1].copy()]
    masks = [world[0].regions.masks[0], world[0].regions.masks[0][:, ::-1].copy()]
    video = model.video_inputs([model.encode_image(f) for f in frames], masks)
    assert video["crop_image"].shape == (1, 2, 3, 64, 64)
    prefix = model.prefix(video)
    assert prefix.shape == (1, 2 * 65, model.lm_head.width)
    single = model.prefix({k: v[:, 0] for k, v in video.items() if k not in ("targets", "prompts", "video")})
    assert torch.allclose(prefix[:, :65], single, atol=1e-6)
    assert len(model.generate(video, max_new_tokens=3)) == 1


def test_bad_inputs_raise_typed_errors(world):
    model = create_model("tiny-dam")
    s = world[0]
    batch = inputs(model, s.image, s.regions[:2])
    tensors = {k: v for k, v in batch.items() if k not in ("targets", "prompts")}
    with pytest.raises(InvalidMaskError, match="crop_mask"):
        model.backbone(**{**tensors, "crop_mask": batch["crop_mask"][:, :, :32]})
    with pytest.raises(InvalidMaskError):
        inputs(model, s.image, Regions.from_masks(np.ones((1, 10, 10), dtype=bool)))
    with pytest.raises(RegionLibError, match="targets"):
        model({**batch, "targets": ["one caption"]})
    with pytest.raises(RegionLibError, match="no targets"):
        model({**batch, "targets": None})
    with pytest.raises(ConfigError, match="variant"):
        create_model("tiny-dam", variant="crop-only")
    with pytest.raises(ConfigError, match="feature_layer"):
        create_model("tiny-dam", feature_layer=7)


def test_fits_eight_regions_under_greedy_decoding(eight):
    model = create_model("tiny-dam")
    groups = per_image(eight)
    batch = batch_of(model, groups)
    assert list(batch["image_index"]) == [k for k, (_, r) in enumerate(groups) for _ in range(len(r))]
    expected = [model.lm_head.decode(model.lm_head.token_ids(c)) for c in batch["targets"]]
    assert len(set(expected)) == 8
    steps = fit(model, lambda: model(batch).loss,
                lambda: model.generate(batch, max_new_tokens=40) == expected, max_steps=300)
    assert model.generate(batch, max_new_tokens=40) == expected, f"not fitted after {steps} steps"


def test_region_inputs_are_the_checkpoints_own_preprocessing_of_each_focal_crop(tmp_path, world):
    """Bug caught: DAM's inputs from a hard-coded mean/std table, squashed to a square, or a crop of
    the wrong region: for a CLIP checkpoint (shortest-edge resize + centre crop) the crop tensor of
    region k must equal CLIPImageProcessor on the focal crop of region k, cut from the image."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from regionlib.focal import crop_boxes

    path = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=64)).save_pretrained(path)
    ref = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    ref.save_pretrained(path)
    model = create_model("tiny-dam", vision__path=str(path)).eval()
    s = world[0]
    batch = inputs(model, s.image, s.regions)
    boxes = crop_boxes(s.regions.masks, "focal_crop")
    assert len({(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes}) > 1  # non-square, different crops
    crops = [s.image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
    want = ref(images=crops, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batch["crop_image"], want, atol=1e-4, rtol=0)
    want_full = ref(images=[s.image], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batch["full_image"], want_full, atol=1e-4, rtol=0)


def test_per_region_prompts_replace_the_template_instruction(world):
    """Bug caught: DAM's prompt augmentation (App. H.2) having no way into the model, or one region's
    prompt leaking into another's context: each region reads ``{visual} {its prompt}``, left-padded."""
    model = create_model("tiny-dam").eval()
    s = world[0]
    prompts = ["Describe the masked region in detail.", "Describe the masked region in one sentence."]
    batch = inputs(model, s.image, s.regions[:2], prompts=prompts)
    embeds, mask = model.contexts(batch)
    head = model.lm_head
    with torch.no_grad():
        prefix = model.prefix(batch)
        for i, text in enumerate(prompts):
            own = head.context([prefix[i], " " + text])
            assert torch.equal(embeds[i, embeds.shape[1] - own.shape[0]:], own)
            assert int(mask[i].sum()) == own.shape[0]
        default, _ = model.contexts({**batch, "prompts": None})  # the template says the first prompt
        torch.testing.assert_close(default[0], head.context([prefix[0], " " + prompts[0]]))
    assert len(model.generate(batch, max_new_tokens=3)) == 2
    with pytest.raises(ConfigError, match="one per region"):
        inputs(model, s.image, s.regions[:2], prompts=["only one"])


def test_a_mask_too_small_for_the_full_image_channel_is_warned_about(world):
    """Bug caught: masks of a few pixels vanishing from DAM's full-image mask channel without a word
    (the global pass then describes an unmarked image)."""
    model = create_model("tiny-dam").eval()
    s = world[0]
    tiny = np.zeros((1, *s.image.shape[:2]), dtype=bool)
    tiny[0, 100:102, 100:101] = True  # 2 px of a 256-px image, at a 64-px encoder input
    with pytest.warns(UserWarning, match="vanish from DAM's full-image mask channel"):
        inputs(model, s.image, Regions.from_masks(tiny))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inputs(model, s.image, s.regions)  # ordinary regions: no warning
