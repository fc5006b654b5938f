"""The shipped pretrained bases (regionlib/models/pretrained/regionworld) and ``create_model(..., base=)``.

Bugs these catch: a broken or stale shipped checkpoint (quality floors), a part copied from the
wrong module or not at all (weights and outputs compared with the base), zero-init parts that are
no longer zero, a pretraining script that drifted from the shipped architecture (short mode), and
silent fall-back to random init when a base does not fit (typed errors).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from regionlib.errors import CheckpointError, ConfigError
from regionlib.models import create_model
from regionlib.models.bases import BASES, base_manifest, load_base_captioner, load_base_sam
from regionlib.training import pretrain

SHIPPED = BASES["regionworld"]
# Floors well under the shipped bases' measured quality (manifest.json) and far above random init
# (a random tiny SAM gives mIoU ~0.01; a random captioner names the right colour ~1/12 of the time).
# Shipped (manifest, 40 test images): mIoU 0.56 (point) / 0.56 (box); colour 1.0 (tight crop) / 0.83 (focal crop),
# shape 0.95 (tight crop). On this test's 6 / 8 images: 0.61 / 0.59; 1.0 / 0.91, 0.9.
SAM_FLOOR = {"mIoU (point prompt)": 0.45, "mIoU (box prompt)": 0.45}
VL_FLOOR = {"crop: color": 0.8, "focal_crop: color": 0.6, "crop: shape": 0.6}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_manifest_matches_shipped_files():
    """The manifest names the command that made the bases and the hashes of the files shipped now."""
    import hashlib

    m = base_manifest("regionworld")
    assert m["command"].startswith("python -m regionlib.training.pretrain")
    for rel, digest in m["sha256"].items():
        assert hashlib.sha256((SHIPPED / rel).read_bytes()).hexdigest() == digest, rel


def test_shipped_sam_segments_regionworld():
    """A point or box prompt on held-out RegionWorld images gives the object's mask (random init: ~0.01)."""
    quality = pretrain.evaluate_sam(load_base_sam("regionworld"), 6, seed=7)
    for key, floor in SAM_FLOOR.items():
        assert quality[key] > floor, quality


def test_shipped_captioner_names_colour_and_shape():
    quality = pretrain.evaluate_vl(load_base_captioner("regionworld"), 8, seed=7)
    for key, floor in VL_FLOOR.items():
        assert quality[key] > floor, quality


def test_dam_from_base_takes_the_pretrained_parts_and_keeps_new_ones_zero():
    base = load_base_captioner("regionworld")
    dam = create_model("tiny-dam", base="regionworld")
    assert _same(dam.backbone.vision, base.backbone.vision)
    assert _same(dam.projector, base.projector)
    assert _same(dam.lm_head, base.lm_head)
    assert dam.lm_head.tokenizer.get_vocab() == base.lm_head.tokenizer.get_vocab()
    assert not dam.backbone.mask_embed.weight.any() and not dam.backbone.mask_embed.bias.any()
    assert all(a.gamma.item() == 0 and a.beta.item() == 0 for a in dam.backbone.adapters)


def test_full_variant_from_base_reproduces_the_base_captioner():
    """With the mask embedding at zero, tiny-dam-full from the base *is* the base: same loss on the same
    batch (a part copied from the wrong module, or left random, changes it)."""
    from regionlib.data.regionworld import generate_regionworld

    base = load_base_captioner("regionworld")
    full = create_model("tiny-dam-full", base="regionworld").eval()
    s = generate_regionworld(1, seed=3, split="test")[0]
    batch = full.region_inputs(full.encode_image(s.image), s.regions)
    with torch.no_grad():
        assert torch.allclose(full(batch).loss, base(batch).loss, atol=1e-6)
        other = create_model("tiny-dam-full", tokenizer_texts=list(s.regions.captions))  # random init
        other_batch = other.region_inputs(other.encode_image(s.image), s.regions)
        assert not torch.allclose(other(other_batch).loss, base(batch).loss, atol=1e-3)


def test_sca_from_base_uses_the_pretrained_frozen_sam_and_lm():
    sam, base = load_base_sam("regionworld"), load_base_captioner("regionworld")
    sca = create_model("tiny-sca", base="regionworld")
    assert _same(sca.sam, sam)
    assert _same(sca.lm_head, base.lm_head)
    assert not any(p.requires_grad for p in sca.sam.parameters())


@pytest.mark.parametrize("kwargs, error, words", [
    ({"vision__path": "/ckpt/siglip"}, ConfigError, "exclusive"),
    ({"sam_checkpoint": "/ckpt/sam.pth"}, ConfigError, "exclusive"),
])
def test_base_and_a_path_are_exclusive(kwargs, error, words):
    preset = "tiny-sca" if "sam_checkpoint" in kwargs else "tiny-dam"
    with pytest.raises(error, match=words):
        create_model(preset, base="regionworld", **kwargs)


def test_base_that_does_not_fit_is_an_error_not_a_random_init():
    with pytest.raises(CheckpointError, match="vision encoder"):
        create_model("tiny-dam-siglip", base="regionworld")
    with pytest.raises(CheckpointError, match="LM"):
        create_model("tiny-dam", base="regionworld", lm__depth=3)
    with pytest.raises(ConfigError, match="DAM and SCA"):
        create_model("tiny-pooled", base="regionworld")


def test_bad_base_names_and_directories(tmp_path):
    with pytest.raises(ConfigError, match="base must be one of"):
        create_model("tiny-dam", base="imagenet")
    partial = tmp_path / "partial"
    shutil.copytree(SHIPPED, partial)
    (partial / "sam.safetensors").unlink()
    with pytest.raises(CheckpointError, match="sam.safetensors"):
        create_model("tiny-dam", base=str(partial))


def test_tokenizer_must_match_the_base():
    from regionlib.models import builtin_tokenizer

    with pytest.raises(CheckpointError, match="tokenizer"):
        create_model("tiny-dam", base="regionworld", tokenizer=builtin_tokenizer())
    with pytest.raises(ConfigError, match="lacks words"):
        create_model("tiny-dam", base="regionworld", tokenizer_texts=["a zebra"])


@pytest.mark.slow
def test_short_pretraining_reproduces_the_shipped_architecture(tmp_path):
    """``make pretrain``'s script, in short mode, writes bases with the shipped config and tensor layout
    (a script that drifted from what is shipped fails here), and they load."""
    from safetensors import safe_open

    manifest = pretrain.write_bases(tmp_path, pretrain.SHORT, command="test")
    ours, shipped = (json.loads((d / "vl" / "config.json").read_text()) for d in (tmp_path, SHIPPED))
    assert ours["kind"] == shipped["kind"] and ours["config"] == shipped["config"]
    for name in ("sam.safetensors", "vl/model.safetensors"):
        with safe_open(str(tmp_path / name), "pt") as a, safe_open(str(SHIPPED / name), "pt") as b:
            assert sorted(a.keys()) == sorted(b.keys())
            assert all(a.get_slice(k).get_shape() == b.get_slice(k).get_shape() for k in a.keys())
    assert set(manifest["sha256"]) == set(base_manifest("regionworld")["sha256"])
    dam = create_model("tiny-dam", base=str(tmp_path))
    assert np.isfinite(float(dam.backbone.vision.embeddings.patch_embeddings.projection.weight.sum()))
