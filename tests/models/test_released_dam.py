"""Released DAM checkpoints (NVlabs/describe-anything layout) open in regionlib and give the released code's
outputs at every stage (../shared/reference-data/released/dam_image, dam_video: made by the released code,
see their README), plus cases of our own built from the layout facts (REFERENCE §1b)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from regionlib.errors import CheckpointError, ConfigError, InvalidMaskError
from regionlib.models import RegionModel
from regionlib.models.dam import DAM, sample_frames
from regionlib.models.projectors import merge_2x2
from regionlib.predictor import RegionPredictor
from regionlib.regions import Regions

REPO = Path(__file__).resolve().parents[2]
TOL, LOGITS_TOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def released(reference_data):
    root = reference_data / "released"
    if not (root / "dam_image" / "checkpoint" / "config.json").is_file():
        from tests.conftest import missing_shared_data

        missing_shared_data(f"released-model fixtures not found under {root} (shared/reference-data/released)")
    return root


@pytest.fixture(scope="module")
def dam_image(released):
    return RegionModel.from_pretrained(released / "dam_image" / "checkpoint")


def _case(released, name):
    d = released / "dam_image" / "cases" / name
    ref = json.loads((d / "reference.json").read_text())
    image = np.asarray(Image.open(d / "image.png").convert("RGB"))
    mask = np.asarray(Image.open(d / "mask.png")) > 0
    return ref, load_file(str(d / "reference.safetensors")), image, mask


def _token_logprobs(model: DAM, contexts: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """log p(ids[i] | context, ids[:i]) from one teacher-forced pass (as the fixture's token_logprobs)."""
    head = model.lm_head
    embeds = torch.cat([contexts, head.embed_ids(ids)[None]], dim=1)
    logp = head.forward_embeds(embeds).logits[0, contexts.shape[1] - 1: -1].float().log_softmax(-1)
    return logp.gather(-1, torch.tensor(ids)[:, None])[:, 0]


@pytest.mark.parametrize("name", ["case0", "case1", "case2"])
def test_released_dam_image_parity_at_every_stage(released, dam_image, name):
    """Every stage equals the released code's: a wrong resize (torchvision vs PIL), a thresholded mask, a
    per-block z, a LayerNorm on the keys, exact instead of tanh GELU, a row-major 2x2 merge, a missing
    BOS or a vicuna-template typo each move one of these numbers far beyond 1e-5; case 1 (crop == full)
    catches adapters run where the released code skips them, case 2 a crop clipped at the border."""
    ref, r, image, mask = _case(released, name)
    model = dam_image
    batch = model.region_inputs(model.encode_image(image), Regions.from_masks(mask[None]))
    pv = r["pixel_values"][0]
    for key, rows in (("full_image", slice(0, 3)), ("full_mask", slice(3, 4)), ("crop_image", slice(4, 7)),
                      ("crop_mask", slice(7, 8))):
        assert (batch[key][0] - pv[rows]).abs().max() <= TOL, key
    with torch.no_grad():
        z = model.backbone.encode(batch["full_image"], batch["full_mask"], image_index=batch["image_index"])
        assert (z - r["global_features"]).abs().max() <= TOL
        feats = model.backbone(**{k: batch[k] for k in ("full_image", "full_mask", "crop_image", "crop_mask",
                                                         "image_index")})
        assert (feats - r["regional_features"]).abs().max() <= TOL
        if not ref["cimage_mask"][0]:
            assert torch.equal(feats, z)  # the released code skips the context provider when crop == full
        assert (model.projector(feats) - r["projected"]).abs().max() <= TOL
        contexts, mask_ = model.contexts(batch)
        assert mask_ is None and contexts.shape == r["inputs_embeds"].shape
        assert (contexts - r["inputs_embeds"]).abs().max() <= TOL
        assert (model.lm_head.forward_embeds(contexts).logits - r["logits"]).abs().max() <= LOGITS_TOL
        ids = ref["greedy_ids"]
        assert (_token_logprobs(model, contexts, ids) - r["token_logprobs"]).abs().max() <= LOGITS_TOL
    predictor = RegionPredictor(model)
    predictor.set_image(image)
    got = model.lm_head.generate_ids(contexts, max_new_tokens=24)[0]
    eos = model.lm_head.tokenizer.eos_token_id
    assert got + ([eos] if ref["ends_with_eos"] else []) == ref["greedy_ids"]
    assert predictor.caption(Regions.from_masks(mask[None]), max_new_tokens=24) == [ref["text"]]


def test_released_prompt_ids_equal_tokenizer_image_token(released, dam_image):
    """The v1 conversation's ids around the image equal the released ``tokenizer_image_token`` output
    (one BOS, the -200 at position 76): catches a doubled BOS, a dropped system prompt or a wrong split."""
    ref, r, _, _ = _case(released, "case0")
    before, after = dam_image.lm_head.template_ids()
    ids = r["input_ids"][0].tolist()
    pos = ref["image_token_positions"][0]
    assert before == ids[:pos] and after == ids[pos + 1:] and ids[pos] == -200
    assert dam_image.lm_head.render(dam_image.lm_head.template).replace("{visual}", "<image>") == ref["prompt"]


def test_released_dam_video_parity(released):
    """DAM-3B-Video usage: 8 frames each with its own focal crop, frames 3 and 4 skip the adapters, tokens
    spliced in frame order after ``Video: ``; catches a frame-order mix-up, one crop for all frames, the
    image prompt on a clip."""
    root = released / "dam_video"
    model = RegionModel.from_pretrained(root / "checkpoint")
    d = root / "cases" / "clip0"
    ref = json.loads((d / "reference.json").read_text())
    r = load_file(str(d / "reference.safetensors"))
    frames = [np.asarray(Image.open(d / "frames" / f"{i:02d}.png").convert("RGB")) for i in range(8)]
    masks = np.stack([np.asarray(Image.open(d / "masks" / f"{i:02d}.png")) > 0 for i in range(8)])
    predictor = RegionPredictor(model)
    predictor.set_video(frames)
    batch = predictor._video_batch(masks, None)
    pv = r["pixel_values"]
    for key, rows in (("full_image", slice(0, 3)), ("full_mask", slice(3, 4)), ("crop_image", slice(4, 7)),
                      ("crop_mask", slice(7, 8))):
        assert (batch[key][0] - pv[:, rows]).abs().max() <= TOL, key
    with torch.no_grad():
        contexts, _ = model.contexts(batch)
        assert contexts.shape == r["inputs_embeds"].shape
        assert (contexts - r["inputs_embeds"]).abs().max() <= TOL
        assert (model.lm_head.forward_embeds(contexts).logits[:, -1] - r["logits_last"]).abs().max() <= LOGITS_TOL
        assert (_token_logprobs(model, contexts, ref["greedy_ids"]) - r["token_logprobs"]).abs().max() <= LOGITS_TOL
    captions, _ = predictor.describe_video([masks], max_new_tokens=24)
    assert captions == [ref["text"]]
    assert len(predictor.frame_states) == 8  # one encode per frame, cached
    # a masklet mix-up (the object's masks shifted by one frame) changes the inputs
    shifted = predictor._video_batch(np.roll(masks, 1, axis=0), None)
    assert not torch.equal(shifted["crop_mask"], batch["crop_mask"])


def test_video_frames_are_sampled_like_the_released_demo():
    """Frames where the object is absent are dropped, then 8 are taken at linspace(0, n-1, 8) truncated:
    catches sampling over all frames (absent ones included) or rounding instead of truncation."""
    present = [True] * 20 + [False] * 5
    assert sample_frames(present, 8) == [int(k) for k in np.linspace(0, 19, 8).astype(int)]
    assert sample_frames([False, True, True], 8) == [1, 2]
    with pytest.raises(InvalidMaskError, match="empty in every frame"):
        sample_frames([False, False], 8)


def test_convert_writes_a_regionlib_checkpoint_that_reopens_identically(released, dam_image, tmp_path):
    """``python -m regionlib.models.convert`` (a real subprocess) writes regionlib's format once; reopened,
    it gives the same logits and refuses to overwrite: catches options lost in the saved config (template,
    adapter form, preprocessing) and a converter that writes over existing work."""
    dst = tmp_path / "dam"
    src = released / "dam_image" / "checkpoint"
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "regionlib.models.convert", str(src), str(dst)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    again = subprocess.run([sys.executable, "-m", "regionlib.models.convert", str(src), str(dst)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr
    reopened = RegionModel.from_pretrained(dst)
    assert json.loads((dst / "config.json").read_text())["format"].startswith("regionlib/")
    _, r, image, mask = _case(released, "case0")
    outs = []
    for model in (dam_image, reopened):
        batch = model.region_inputs(model.encode_image(image), Regions.from_masks(mask[None]))
        with torch.no_grad():
            outs.append(model.lm_head.forward_embeds(model.contexts(batch)[0]).logits)
    assert torch.equal(outs[0], outs[1])
    assert (outs[1] - r["logits"]).abs().max() <= LOGITS_TOL


# ------------------------------------------------------------------ cases of our own, from the layout facts
def _copy(released, tmp_path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(released / "dam_image" / "checkpoint", dst)
    return dst


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("where, field, value, match", [
    ("config.json", "mm_vision_select_feature", "patch", "mm_vision_select_feature"),
    ("config.json", "image_aspect_ratio", "anyres", "image_aspect_ratio"),
    ("config.json", "s2", True, "s2"),
    ("config.json", "some_new_switch", 3, "some_new_switch"),
    ("mm_projector/config.json", "mm_projector_type", "mlp3x_gelu", "mm_projector_type"),
    ("context_provider/config.json", "context_provider_type", "concat", "context_provider_type"),
    ("context_provider/config.json", "treat_image_as_cimage", True, "treat_image_as_cimage"),
    ("context_provider/config.json", "intermediate_size", 64, "intermediate_size"),
    ("vision_tower/config.json", "num_mask_channels", 0, "num_mask_channels"),
])
def test_unimplemented_config_values_are_refused_by_name(released, tmp_path, where, field, value, match):
    """A released option regionlib does not implement is a CheckpointError naming it, never a silent default."""
    d = _copy(released, tmp_path)
    _edit_json(d / where, **{field: value})
    with pytest.raises(CheckpointError, match=match):
        RegionModel.from_pretrained(d)


@pytest.mark.parametrize("edit", ["drop", "rename", "reshape", "extra_adapter_key"])
def test_weights_that_do_not_match_are_refused_by_name(released, tmp_path, edit):
    """Every released tensor is used exactly once: a missing, renamed or mis-shaped weight, or an unknown
    context-provider key, is a CheckpointError naming it (never a random init)."""
    d = _copy(released, tmp_path)
    part = "context_provider" if edit == "extra_adapter_key" else "mm_projector"
    f = d / part / "model.safetensors"
    state = load_file(str(f))
    if edit == "drop":
        del state["layers.2.weight"]
    elif edit == "rename":
        state["layers.3.weight"] = state.pop("layers.2.weight")
    elif edit == "reshape":
        state["layers.4.weight"] = state["layers.4.weight"][:, :-1].contiguous()
    else:
        state["context_provider_module.layers.0.cross_attn.rope.weight"] = torch.zeros(2)
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match=r"projector\.|layers\.|rope"):
        RegionModel.from_pretrained(d)


def test_missing_part_and_truncated_weights_are_typed_errors(released, tmp_path):
    """A released directory without its context provider, or with a truncated weight file, is a
    CheckpointError naming the file (not a bare SafetensorError)."""
    d = _copy(released, tmp_path)
    shutil.rmtree(d / "context_provider")
    with pytest.raises(CheckpointError, match="context_provider"):
        RegionModel.from_pretrained(d)
    d2 = tmp_path / "trunc"
    shutil.copytree(released / "dam_image" / "checkpoint", d2)
    blob = (d2 / "mm_projector" / "model.safetensors").read_bytes()
    (d2 / "mm_projector" / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="mm_projector"):
        RegionModel.from_pretrained(d2)


def _merge_by_loop(tokens: torch.Tensor) -> torch.Tensor:
    """The 2x2 merge written out block by block from its definition (REFERENCE §1b)."""
    b, n, c = tokens.shape
    g = int(round(n ** 0.5))
    grid = torch.zeros(b, g + g % 2, g + g % 2, c)
    grid[:, :g, :g] = tokens.reshape(b, g, g, c)
    h = grid.shape[1] // 2
    out = []
    for j in range(h):  # column-major block order
        for i in range(h):
            out.append(torch.cat([grid[:, 2 * i, 2 * j], grid[:, 2 * i, 2 * j + 1], grid[:, 2 * i + 1, 2 * j],
                                  grid[:, 2 * i + 1, 2 * j + 1]], dim=-1))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("grid", [4, 5, 27])
def test_mlp_downsample_merge_on_even_and_odd_grids(grid):
    """The merge on an even grid (no padding), the fixture's odd 5x5 and DAM-3B's 27x27 -> 196 tokens:
    catches row-major block order, a pad on the wrong side, or the 2x2 channels in the wrong order."""
    x = torch.randn(2, grid * grid, 3)
    got = merge_2x2(x)
    assert got.shape == (2, ((grid + 1) // 2) ** 2, 12)
    assert torch.equal(got, _merge_by_loop(x))


def test_masked_cross_attention_masks_the_global_tokens_outside_the_region(released, tmp_path):
    """``masked_cross_attn: true``: keys of global patches without a mask pixel get -inf (the released
    ``get_token_mask_bias`` recomputed here with a ones-kernel conv): the output changes, and equals the
    unmasked model's when every patch holds mask pixels. Catches an ignored flag or a bias on the wrong tokens."""
    d = _copy(released, tmp_path)
    _edit_json(d / "context_provider" / "config.json", masked_cross_attn=True)
    masked = RegionModel.from_pretrained(d)
    plain = RegionModel.from_pretrained(released / "dam_image" / "checkpoint")
    _, _, image, mask = _case(released, "case0")
    batch = masked.region_inputs(masked.encode_image(image), Regions.from_masks(mask[None]))
    m = (batch["full_mask"][:, 0] + 1) / 2
    counts = F.conv2d(m[:, None], torch.ones(1, 1, 14, 14), stride=14).flatten(1)
    want = torch.zeros_like(counts).masked_fill_(counts < 1e-5, float("-inf"))
    assert torch.equal(masked.backbone.key_bias(batch["full_mask"])[:, 0, 0], want)
    assert torch.isinf(want).any() and not torch.isinf(want).all()
    keys = ("full_image", "full_mask", "crop_image", "crop_mask", "image_index")
    with torch.no_grad():
        assert not torch.allclose(masked.backbone(**{k: batch[k] for k in keys}),
                                  plain.backbone(**{k: batch[k] for k in keys}))
        everywhere = {**{k: batch[k] for k in keys}, "full_mask": torch.ones_like(batch["full_mask"])}
        assert torch.equal(masked.backbone(**everywhere), plain.backbone(**everywhere))


def test_joint_checkpoint_prompts(released):
    """``image_video_joint=True`` (the released server's switch): single images get ``Image: `` before the
    image tokens, clips ``Video: ``; without it a single image gets neither. Catches the switch ignored or
    applied to the wrong medium."""
    joint = RegionModel.from_pretrained(released / "dam_image" / "checkpoint", image_video_joint=True)
    plain = RegionModel.from_pretrained(released / "dam_image" / "checkpoint")
    assert joint.lm_head.template.split("{visual}")[0].endswith("USER: Image: ")
    assert plain.lm_head.template.split("{visual}")[0].endswith("USER: ")
    assert joint.conversation(video=True)[0].endswith("USER: Video: ")
    assert joint.conversation()[1] == "\nDescribe the masked region in detail. ASSISTANT:"
    with pytest.raises(ConfigError, match="image_video_joint"):
        RegionModel.from_pretrained(REPO / "regionlib" / "models" / "pretrained" / "regionworld" / "vl",
                                    image_video_joint=True)


@pytest.mark.parametrize("lora", [False, True])
def test_fine_tuning_a_released_dam_with_the_training_loop(released, tmp_path, lora):
    """``task.init_from`` = a released DAM directory: regionlib's training loop (local, 3 steps on RegionWorld)
    fine-tunes it in full or with LoRA; the checkpoint reopens with the released architecture, the weights
    moved (the LM's base weights stay under LoRA) and the reopened model equals the trained one. Catches a
    loop that silently trains a preset instead, LoRA adapters lost on save, or the v1 template lost."""
    from regionlib.training.loop import load_config, train_local

    src = released / "dam_image" / "checkpoint"
    args = [f"task.init_from={src}", "task.n_images=2", "task.n_val=1", "recipe.lr=0.01", "recipe.warmup_steps=1",
            "train.batch_size=2", "train.max_steps=3", "train.checkpoint_every=3", "train.log_every=1",
            f"run.storage={tmp_path}", "run.name=ft"]
    if lora:
        args.append("task.init_lora={r: 4, alpha: 8}")
    ckpt = train_local(load_config(None, args), str(tmp_path / "ft"))
    tuned = RegionModel.from_pretrained(ckpt)
    start = RegionModel.from_pretrained(src)
    assert isinstance(tuned, DAM) and tuned.config.adapter == "released" and tuned.config.conversation == "vila_v1"
    assert (tuned.lm_head.lora is not None) == lora
    before = start.lm_head.lm.get_input_embeddings().weight
    after = tuned.lm_head.lm.get_input_embeddings().weight
    assert torch.equal(before, after) == lora  # LoRA leaves the base weights, full fine-tuning moves them
    assert not torch.equal(start.backbone.adapters[0].gamma, tuned.backbone.adapters[0].gamma)
    _, _, image, mask = _case(released, "case0")
    batch = tuned.region_inputs(tuned.encode_image(image), Regions.from_masks(mask[None]))
    again = RegionModel.from_pretrained(ckpt)
    with torch.no_grad():
        assert torch.equal(tuned.contexts(batch)[0], again.contexts(batch)[0])


def test_pad_aspect_ratio_centres_image_and_mask_on_the_mean_colour(released, tmp_path):
    """``image_aspect_ratio: pad`` (VILA's expand2square): the image and the mask image are centred on a
    square of the mean colour (127 for SigLIP, so the padded mask reads 127, not 0) before the resize;
    recomputed here with PIL from the definition. Catches padding with black, padding only the image, a
    resize that distorts the aspect ratio, or the option silently treated as 'resize'."""
    d = _copy(released, tmp_path)
    _edit_json(d / "config.json", image_aspect_ratio="pad")
    model = RegionModel.from_pretrained(d)
    assert model.config.preprocess == "pil_pad"
    _, _, image, mask = _case(released, "case0")  # 97 x 131 (W x H): padded left and right

    def expected(rgb: np.ndarray) -> torch.Tensor:
        h, w = rgb.shape[:2]
        side = max(h, w)
        canvas = Image.new("RGB", (side, side), (127, 127, 127))
        canvas.paste(Image.fromarray(rgb), ((side - w) // 2, (side - h) // 2))
        x = np.asarray(canvas.resize((70, 70), Image.Resampling.BICUBIC)).astype(np.float64) / 255
        return torch.from_numpy(((x.astype(np.float32) - 0.5) / 0.5).transpose(2, 0, 1).copy())

    batch = model.region_inputs(model.encode_image(image), Regions.from_masks(mask[None]))
    assert torch.equal(batch["full_image"][0], expected(image))
    mask_rgb = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    assert torch.equal(batch["full_mask"][0], expected(mask_rgb)[:1])
    assert batch["full_mask"][0, 0, 35, 0] == pytest.approx(127 / 255 * 2 - 1, abs=1e-6)  # the padded border


def test_even_feature_grid_checkpoint(released, tmp_path):
    """A released-layout DAM with an even feature grid (56 px / patch 14 -> 4x4, no padding in the merge):
    loads from its own configs (the fixture's weights with 16 position rows) and its projector tokens equal
    LayerNorm -> Linear -> GELU -> Linear of the block-by-block merge. Catches a size taken from a preset
    or the odd-grid padding applied to even grids."""
    d = _copy(released, tmp_path)
    for part in ("vision_tower", "context_provider"):
        _edit_json(d / part / "config.json", image_size=56)
    _edit_json(d / "vision_tower" / "preprocessor_config.json", size={"height": 56, "width": 56})
    f = d / "vision_tower" / "model.safetensors"
    state = load_file(str(f))
    key = "vision_model.embeddings.position_embedding.weight"
    state[key] = state[key][:16].contiguous()
    save_file(state, str(f))
    model = RegionModel.from_pretrained(d)
    _, _, image, mask = _case(released, "case0")
    batch = model.region_inputs(model.encode_image(image), Regions.from_masks(mask[None]))
    assert batch["crop_image"].shape[-2:] == (56, 56)
    keys = ("full_image", "full_mask", "crop_image", "crop_mask", "image_index")
    with torch.no_grad():
        feats = model.backbone(**{k: batch[k] for k in keys})
        assert feats.shape == (1, 16, 32)
        p = model.projector
        want = p.fc2(F.gelu(p.fc1(p.norm(_merge_by_loop(feats)))))
        got = model.prefix(batch)
    assert got.shape == (1, 4, 64) and torch.allclose(got, want, atol=1e-6)
    assert model.lm_head.generate_ids(model.contexts(batch)[0], max_new_tokens=3)


def test_sharded_and_bin_weight_folders_and_half_precision_give_the_same_model(released, dam_image, tmp_path):
    """The real DAM-3B ships its LM sharded (``model.safetensors.index.json``) and in 16-bit floats; a tower
    may come as ``pytorch_model.bin``: the same weights in those layouts give the same model (bf16 ->
    float32 is exact, so bf16-rounded weights load to exactly those values). Catches a shard left unread,
    an index ignored, or a float16 tensor rounded again."""
    d = _copy(released, tmp_path)
    llm = load_file(str(d / "llm" / "model.safetensors"))
    (d / "llm" / "model.safetensors").unlink()
    names = sorted(llm)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in halves.items():
        save_file({k: llm[k].to(torch.bfloat16) for k in keys}, str(d / "llm" / file))
    (d / "llm" / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in halves.items() for k in keys}}))
    tower = load_file(str(d / "vision_tower" / "model.safetensors"))
    (d / "vision_tower" / "model.safetensors").unlink()
    torch.save(tower, d / "vision_tower" / "pytorch_model.bin")
    model = RegionModel.from_pretrained(d)
    for key, value in llm.items():
        got = model.state_dict()["lm_head.lm." + key]
        assert got.dtype == torch.float32 and torch.equal(got, value.to(torch.bfloat16).float())
    assert torch.equal(model.backbone.mask_embed.weight, dam_image.backbone.mask_embed.weight)
    assert all(torch.equal(a, b) for a, b in zip(model.backbone.vision.parameters(),
                                                 dam_image.backbone.vision.parameters()))
