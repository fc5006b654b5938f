"""Registry, overrides, paper-size presets on the meta device, safetensors checkpoints."""

import json

import pytest
import torch

from regionlib.errors import CheckpointError, ConfigError
from regionlib.models import DAM, RAS, SCA, PooledCaptioner, RegionModel, create_model, list_presets, preset_config
from regionlib.regions import Regions


def test_registry_and_overrides():
    names = list_presets()
    assert {"tiny-dam", "tiny-sca", "tiny-ras", "tiny-pooled", "dam-3b", "sca-gpt2-large"} <= set(names)
    kind, cfg = preset_config("tiny-dam", variant="full", lm__freeze=True, vision__depth=2)
    assert kind == "dam" and cfg.variant == "full" and cfg.lm.freeze and cfg.vision.depth == 2
    with pytest.raises(ConfigError, match="unknown preset"):
        create_model("tiny-nope")
    with pytest.raises(ConfigError, match="unknown config field"):
        create_model("tiny-dam", colour="red")
    with pytest.raises(ConfigError, match="no sub-fields"):
        preset_config("tiny-dam", variant__x=1)


def test_paper_size_presets_build_on_the_meta_device():
    dam = create_model("dam-3b", device="meta")
    report = dam.parameter_report()
    # SigLIP so400m (~0.4 B) + a 2.7 B Llama (Sheared-LLaMA shape) + 26 cross-attention adapters
    assert 0.38e9 < report["trainable.backbone"] - sum(p.numel() for p in dam.backbone.adapters.parameters()) < 0.45e9
    assert 2.6e9 < report["trainable.lm_head"] < 2.8e9
    assert len(dam.backbone.adapters) == 26  # second-to-last of 27 blocks
    assert dam.lm_head.lm.config.hidden_size == 2560
    # the released DAM-3B architecture: released adapters, VILA's mlp_downsample (27x27 -> 196 tokens), v1 prompt
    from regionlib.models.projectors import DownsampleProjector

    assert dam.config.adapter == "released" and isinstance(dam.projector, DownsampleProjector)
    assert dam.config.conversation == "vila_v1" and dam.lm_head.template.startswith("A chat between")


def _outputs(model, world):
    """Prefix-model contexts (or RAS's selection logits) and greedy captions of two regions, through the interface."""
    s = world[0]
    torch.manual_seed(0)
    state = model.encode_image(s.image)
    if isinstance(model, RAS):
        return model(model.region_inputs(state, Regions.from_masks(s.regions.masks), "every diamond")).logits, None
    batch = model.region_inputs(state, Regions.from_masks(s.regions.masks[:2]))
    return model.contexts(batch)[0], model.generate(batch, max_new_tokens=5)


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca-roi", "tiny-ras", "tiny-pooled"])
def test_save_load_gives_identical_outputs(preset, tmp_path, world):
    model = create_model(preset, seed=3).eval()
    with torch.no_grad():  # move off the initialisation so zero-init parts are not trivially equal
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = RegionModel.from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model)
    with torch.no_grad():
        a, ga = _outputs(model, world)
        b, gb = _outputs(loaded, world)
    assert torch.equal(a, b) and ga == gb
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_save_load_with_lora(tmp_path, world):
    model = create_model("tiny-dam", lm__lora_r=4, lm__lora_targets=("c_attn",)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    model.save_pretrained(tmp_path / "lora")
    loaded = DAM.from_pretrained(tmp_path / "lora")
    with torch.no_grad():
        assert torch.equal(_outputs(model, world)[0], _outputs(loaded, world)[0])
    assert loaded.lm_head.lora["r"] == 4
    # adapters attached after building (not through the config) are restored too
    later = create_model("tiny-pooled").eval()
    later.lm_head.add_lora(target_modules=["c_attn"], r=2)
    with torch.no_grad():
        for n, p in later.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    later.save_pretrained(tmp_path / "later")
    again = PooledCaptioner.from_pretrained(tmp_path / "later")
    with torch.no_grad():
        assert torch.equal(_outputs(later, world)[0], _outputs(again, world)[0])


def test_checkpoint_errors(tmp_path):
    model = create_model("tiny-dam", vision__width=32, vision__heads=2)
    model.save_pretrained(tmp_path / "bad")
    # the architecture comes from the saved sub-configs: a vision config that disagrees with the weights
    vision = json.loads((tmp_path / "bad" / "vision" / "config.json").read_text())
    vision["hidden_size"] = 64
    (tmp_path / "bad" / "vision" / "config.json").write_text(json.dumps(vision))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        RegionModel.from_pretrained(tmp_path / "bad")
    with pytest.raises(CheckpointError, match="not a SCA"):
        SCA.from_pretrained(tmp_path / "bad")
    (tmp_path / "pkl").mkdir()
    torch.save(model.state_dict(), tmp_path / "pkl" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refusing pickle"):
        RegionModel.from_pretrained(tmp_path / "pkl")
    with pytest.raises(CheckpointError, match="not found"):
        PooledCaptioner.from_pretrained(tmp_path / "nowhere")
