import numpy as np
import pytest
import torch

from regionlib.errors import CheckpointError, ConfigError, RegionLibError
from regionlib.models import VARIANTS, RegionCaptioner, collate, create_model
from regionlib.models.examples import region_examples
from regionlib.models.sca import sca_trainable_parameters


@pytest.fixture(scope="module")
def world():
    from regionlib.data.regionworld import generate_regionworld

    return generate_regionworld(4, seed=3)


def examples_for(model, world, **kw):
    seg = None
    if model.config.kind == "sca":
        from regionlib.sam import SamSegmenter

        seg = SamSegmenter(model.encoder.sam)
    return region_examples([w.image for w in world], [w.regions for w in world], model.config, segmenter=seg, **kw)[:8]


def test_zero_init_backbone_equals_base_encoder(world):
    model = create_model("tiny-dam")
    batch = collate(examples_for(model, world))
    backbone = model.encoder
    with torch.no_grad():
        out = backbone(batch["full_image"], batch["full_mask"], batch["crop_image"], batch["crop_mask"])
        base = backbone.vision(batch["crop_image"], output_hidden_states=True).hidden_states[-2]
    assert torch.equal(out, base)
    ungated = create_model("tiny-dam", gated=False).encoder
    with torch.no_grad():
        out2 = ungated(batch["full_image"], batch["full_mask"], batch["crop_image"], batch["crop_mask"])
        base2 = ungated.vision(batch["crop_image"], output_hidden_states=True).hidden_states[-2]
    assert torch.equal(out2, base2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_backward_every_variant(variant, world):
    model = create_model("tiny-dam", variant=variant)
    loss = model.loss(collate(examples_for(model, world)[:3]), label_smoothing=0.1)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)
    if variant.endswith("xattn"):
        assert model.encoder.adapters[0].gamma.grad is not None


@pytest.mark.parametrize("preset,steps", [("tiny-dam", 150), ("tiny-sca", 400)])
def test_fits_a_batch_of_eight_regionworld_regions(preset, steps, world):
    torch.manual_seed(0)
    model = create_model(preset)
    batch = collate(examples_for(model, world))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        model.train()
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    generated = model.generate(batch, max_new_tokens=32)
    assert generated == [c.lower() for c in batch["captions"]]


def test_save_load_identical_and_safety(tmp_path, world):
    model = create_model("tiny-dam", variant="full+crop-concat")
    batch = collate(examples_for(model, world)[:2])
    model.save_pretrained(tmp_path / "m")
    loaded = RegionCaptioner.from_pretrained(tmp_path / "m")
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model.prefix(batch), loaded.prefix(batch))
    assert loaded.generate(batch, max_new_tokens=5) == model.generate(batch, max_new_tokens=5)
    other = create_model("tiny-dam", vision_width=32, vision_heads=2)
    other.save_pretrained(tmp_path / "bad")
    import json

    cfg = json.loads((tmp_path / "bad" / "config.json").read_text())
    cfg["vision_width"] = 64
    cfg["vision_heads"] = 4
    (tmp_path / "bad" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="disagree"):
        RegionCaptioner.from_pretrained(tmp_path / "bad")
    (tmp_path / "pkl").mkdir()
    torch.save(model.state_dict(), tmp_path / "pkl" / "model.pt")
    with pytest.raises(CheckpointError, match="refusing pickle"):
        RegionCaptioner.from_pretrained(tmp_path / "pkl")


def test_generation_streaming_lora_and_errors(world):
    model = create_model("tiny-dam")
    batch = collate(examples_for(model, world)[:1])
    prefix = model.prefix(batch)
    streamed = "".join(t if t in ",." else " " + t for t in model.lm_head.stream(prefix, max_new_tokens=6)).strip()
    greedy = model.lm_head.generate(prefix, max_new_tokens=6)[0]
    assert streamed.replace(" ,", ",").replace(" .", ".") == greedy
    assert len(model.lm_head.generate(prefix, max_new_tokens=6, num_beams=2)) == 1
    with pytest.raises(RegionLibError, match="max_new_tokens"):
        model.lm_head.generate(prefix, max_new_tokens=0)
    with pytest.raises(RegionLibError, match="targets"):
        model.lm_head.loss(prefix, ["a", "b"])
    with pytest.raises(ConfigError, match="unknown preset"):
        create_model("tiny-nope")
    base = {k: v.clone() for k, v in model.lm_head.lm.state_dict().items()}
    model.lm_head.add_lora(target_modules=["c_attn"], r=4)
    opt = torch.optim.AdamW([p for p in model.lm_head.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    merged_names = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in model.lm_head.lm.state_dict().items() if "lora_" not in k}
    for k, v in base.items():
        assert torch.equal(merged_names[k], v), k  # LoRA leaves the base weights unchanged


def test_sca_paper_config_trainable_parameters():
    assert sca_trainable_parameters() == pytest.approx(19.4e6, rel=0.005)  # seed 000: 19.4 M with GPT2-large


def test_sca_prompt_types(world):
    model = create_model("tiny-sca")
    for kind in ("box", "cpb", "rpb", "rpm"):
        batch = collate(examples_for(model, world, prompt_type=kind)[:2])
        assert model.prefix(batch).shape == (2, 6 + 8, 64)
