"""The released SCA (xk-huang/segment-caption-anything, ``ScaMultitaskV2Model``) opened by regionlib.

The fixture (``shared/reference-data/released/sca``, README "sca/") holds a tiny random-weight released
checkpoint and the released code's outputs at every stage for three box prompts. Each test names the
plausible bug it catches. Tolerances: 1e-5 (logits, token log-probabilities: 1e-4); ids and text exact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from regionlib.errors import CheckpointError
from regionlib.models.checkpoint import RegionModel
from regionlib.models.released import released_kind
from regionlib.models.released_sca import load_released_sca
from regionlib.predictor import RegionPredictor
from regionlib.prompts import Prompt

from ..conftest import missing_shared_data

CASES = ("case0", "case1", "case2")
GREEDY = {"num_beams": 1, "max_new_tokens": 16}  # the fixture's decoding (the demo's 3 beams are not stored)
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "preprocessor_config.json", "generation_config.json")


@pytest.fixture(scope="module")
def released(reference_data) -> Path:
    root = reference_data / "released" / "sca"
    if not (root / "checkpoint" / "config.json").is_file():
        missing_shared_data(f"the released SCA fixture is not at {root} (shared/reference-data/released/sca)")
    return root


@pytest.fixture(scope="module")
def model(released):
    return load_released_sca(released / "checkpoint")


def _case(released: Path, name: str):
    from PIL import Image
    from safetensors.torch import load_file

    d = released / "cases" / name
    image = np.asarray(Image.open(d / "image.png").convert("RGB"))
    return image, load_file(str(d / "reference.safetensors")), json.loads((d / "reference.json").read_text())


@pytest.fixture(scope="module")
def outputs(model, released) -> dict:
    """Per case: regionlib's outputs at every stage, through `RegionPredictor` where it is the public path."""
    result = {}
    with torch.no_grad():
        for name in CASES:
            image, ref, meta = _case(released, name)
            predictor = RegionPredictor(model)
            predictor.set_image(image)
            emb = predictor.state.tensors["image_embeddings"]
            prompt = Prompt(box_xyxy=np.array(meta["box_xyxy_original"]))
            batch = model.prompt_batch([prompt], image.shape[:2])
            index = torch.zeros(1, dtype=torch.long)
            pe, dec = model.sam.prompt_encoder, model.sam.mask_decoder
            sparse, dense = pe(points=None, boxes=batch["boxes"], masks=None)
            masks, iou = dec(image_embeddings=emb, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
                             dense_prompt_embeddings=dense, multimask_output=True)
            input_size = model.transform.get_preprocess_shape(*image.shape[:2], model.transform.target_length)
            state = model.decode(emb, index, boxes=batch["boxes"])
            mixed, _ = model.mixer(state.image_out, state.pe, torch.cat([model.queries[None], state.tokens_out], 1))
            prefix = model.run(emb, index, boxes=batch["boxes"]).prefix
            contexts = model.lm_head.contexts(prefix)
            ids = model.lm_head.generate_ids(contexts, **GREEDY)[0]
            generated = ids + [model.lm_head.tokenizer.eos_token_id] * (len(ids) < GREEDY["max_new_tokens"])
            lm_out, labels = model.lm_head.teacher_forced(contexts, None, [meta["caption"]], all_positions=True)
            full = torch.cat([contexts, model.lm_head.embed_ids([generated])], 1)
            logp = model.lm_head.forward_embeds(full).logits[0, contexts.shape[1] - 1: -1].float().log_softmax(-1)
            targets_batch = dict(batch, image_embeddings=emb, image_index=index, targets=[meta["caption"]])
            result[name] = {
                "ref": ref, "meta": meta, "image": image,
                "pixels": model.preprocess(image), "image_embeddings": emb, "boxes": batch["boxes"],
                "pred_masks": masks, "iou_scores": iou,
                "masks_postprocessed": model.sam.postprocess_masks(masks, input_size, image.shape[:2]) > 0,
                "caption_query_outputs": mixed[:, : model.config.num_queries], "lm_prefix_embeds": prefix,
                "caption_logits_full": lm_out.logits, "caption_input_ids": labels[0, contexts.shape[1]:].tolist(),
                "caption_loss": model(targets_batch).loss,
                "greedy_ids": generated, "token_logprobs": logp.gather(-1, torch.tensor(generated)[:, None])[:, 0],
                "predicted": predictor.segment_and_caption([prompt], **GREEDY),
            }
    return result


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), tuple(b.shape))
    return float((a.double() - b.double()).abs().max())


def test_fixture_directory_is_recognised_as_released_sca(released, tmp_path):
    """Catches a detector that misses the released layout (RegionModel.from_pretrained would then refuse it
    as a pickle checkpoint) or claims regionlib's own directories."""
    assert released_kind(released / "checkpoint") == "sca"
    assert released_kind(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"format": "regionlib/2", "kind": "sca"}))
    assert released_kind(tmp_path) is None


def test_loaded_config_takes_every_size_from_config_json(model):
    """Catches sizes taken from a regionlib preset instead of config.json (mixer depth, queries, heads), the
    segment-anything LayerNorm eps kept in HF SAM's two-way blocks, or the wrong task-token rows' count."""
    from regionlib.sam import SAM_PRESETS

    c = model.config
    assert (c.num_queries, c.mixer_depth, c.mixer_heads, c.mixer_mlp_dim, c.num_task_tokens) == (8, 2, 2, 64, 6)
    assert c.mixer_block_norm_eps == 1e-6 and SAM_PRESETS[c.sam_preset].decoder_block_norm_eps == 1e-6
    block_eps = {m.eps for m in model.mixer.layers.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert block_eps == {1e-6} and model.mixer.norm_final_attn.eps == 1e-5  # HF: nn.LayerNorm default there
    assert (c.lm.arch, c.lm.width, c.lm.depth, c.lm.vocab_size, c.lm.max_positions) == ("gpt2", 64, 2, 400, 128)
    assert (c.lm.max_target_tokens, c.lm.label_smoothing, c.lm.bos_position, c.num_beams) == (18, 0.1, "target", 3)


@pytest.mark.parametrize("name", CASES)
def test_preprocessed_pixels_match_the_released_processor(outputs, name):
    """Catches a resize filter or rounding other than SamImageProcessor's (bilinear, int(x + 0.5)), a
    normalisation in the wrong range, or padding on the wrong side."""
    o = outputs[name]
    h, w = o["ref"]["pixel_values_unpadded"].shape[-2:]
    assert _max_diff(o["pixels"][..., :h, :w], o["ref"]["pixel_values_unpadded"]) < 1e-5
    assert float(o["pixels"][..., h:, :].abs().sum() + o["pixels"][..., :, w:].abs().sum()) == 0.0


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("stage,tol", [("image_embeddings", 1e-5), ("pred_masks", 1e-5), ("iou_scores", 1e-5),
                                       ("caption_query_outputs", 1e-5), ("lm_prefix_embeds", 1e-5),
                                       ("caption_logits_full", 1e-4), ("token_logprobs", 1e-4)])
def test_every_stage_matches_the_released_code(outputs, name, stage, tol):
    """Catches a SAM key mapped to the wrong module (e.g. neck convs swapped, hypernetwork MLP layers in the
    wrong order), the mixer's eps or input tokens (decoder outputs vs inputs) differing from the released
    decoder, the wrong task-token rows (recognition 0:6 instead of caption 6:12), a BOS or template text
    inserted before the prefix, or log-probabilities of the wrong positions."""
    o = outputs[name]
    ref = o["ref"][stage]
    got = o[stage]
    if stage == "pred_masks":
        ref = ref[0]  # (1, 3, 64, 64): multimask, masks 1-3
    elif stage == "iou_scores":
        ref = ref[0]
    elif stage == "caption_query_outputs":
        ref = ref[0, 0]  # (1, 8, 32): one region, one caption head
    assert _max_diff(got, ref) < tol


@pytest.mark.parametrize("name", CASES)
def test_boxes_and_postprocessed_masks_match(outputs, name):
    """Catches box scaling by the wrong size (height / width swapped) and mask post-processing that crops or
    resizes differently from SamProcessor.post_process_masks (upsample, crop the padding, resize, > 0)."""
    o = outputs[name]
    assert _max_diff(o["boxes"], o["ref"]["input_boxes"][0]) < 1e-5
    assert torch.equal(o["masks_postprocessed"][0], o["ref"]["masks_postprocessed"][0].bool())


@pytest.mark.parametrize("name", CASES)
def test_greedy_decoding_and_text_match(outputs, name):
    """Catches a decoding that feeds the LM the leading BOS id the released generate returns (never an LM
    input), stops at the wrong eos, or decodes text differently (special tokens kept, spaces)."""
    o = outputs[name]
    assert o["greedy_ids"] == o["meta"]["greedy_ids"]
    assert o["greedy_ids"] == o["ref"]["greedy_sequences"][0, 0, 0, 1:].tolist()[: len(o["greedy_ids"])]


@pytest.mark.parametrize("name", CASES)
def test_region_predictor_segments_and_captions_the_box_like_the_demo(outputs, name):
    """Catches the public path (RegionPredictor.segment_and_caption) diverging from the released demo's run():
    another mask than the one of highest predicted IoU, or a caption other than the released text."""
    o = outputs[name]
    regions = o["predicted"]
    best = o["meta"]["best_mask_index_by_iou"]
    assert regions.captions[0] == o["meta"]["text"]
    assert np.array_equal(regions.masks[0], o["ref"]["masks_postprocessed"][0, best].numpy().astype(bool))
    assert abs(float(regions.scores[0]) - float(o["ref"]["iou_scores"][0, 0, best])) < 1e-5


@pytest.mark.parametrize("name", CASES)
def test_teacher_forced_caption_loss_matches(outputs, name):
    """Catches captions encoded unlike the released SCADataTransform (no truncation to 18 + EOS, a BOS
    added), the loss over the wrong positions, or label smoothing other than 0.1."""
    o = outputs[name]
    assert o["caption_input_ids"] == o["meta"]["caption_input_ids"] == o["ref"]["caption_input_ids"][0, 0].tolist()
    assert _max_diff(o["caption_loss"].reshape(1), o["ref"]["caption_loss"]) < 1e-5


def test_captions_are_truncated_to_18_tokens_plus_eos(model):
    """Catches regionlib's default cap (20) or a cap that counts EOS, where the released encoding keeps
    ``model_max_length - 2`` = 18 tokens and then appends EOS."""
    tok = model.lm_head.tokenizer
    text = " ".join(["the red car on the street"] * 6)
    ids = model.lm_head.target_ids([text])[0]
    assert ids == tok(text, truncation=True, max_length=18)["input_ids"] + [tok.eos_token_id]
    assert len(ids) == 19


def test_default_generation_uses_the_demos_three_beams(model, released, monkeypatch):
    """Catches a loaded model that decodes greedily by default, unlike the released demo (num_beams=3)."""
    image, _, meta = _case(released, "case0")
    seen = []
    original = model.lm_head.generate_ids

    def spy(*args, **kwargs):
        seen.append(kwargs.get("num_beams"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model.lm_head, "generate_ids", spy)
    predictor = RegionPredictor(model)
    predictor.set_image(image)
    predictor.segment_and_caption([Prompt(box_xyxy=np.array(meta["box_xyxy_original"]))], max_new_tokens=4)
    predictor.segment_and_caption([Prompt(box_xyxy=np.array(meta["box_xyxy_original"]))], max_new_tokens=4,
                                  num_beams=1)
    assert seen == [3, 1]


def test_save_and_reopen_gives_identical_outputs(model, released, outputs, tmp_path):
    """Catches options lost in regionlib's checkpoint (block eps, 18-token cap, BOS position, 3 beams, the
    registered SAM architecture) or weights not saved, so that a converted model reopens differently."""
    model.save_pretrained(tmp_path / "ckpt")
    again = RegionModel.from_pretrained(tmp_path / "ckpt")
    assert again.config.num_beams == 3 and again.config.lm.bos_position == "target"
    o = outputs["case0"]
    with torch.no_grad():
        predictor = RegionPredictor(again)
        predictor.set_image(o["image"])
        batch = again.prompt_batch([Prompt(box_xyxy=np.array(o["meta"]["box_xyxy_original"]))], o["image"].shape[:2])
        prefix = again.run(predictor.state.tensors["image_embeddings"], torch.zeros(1, dtype=torch.long),
                           boxes=batch["boxes"]).prefix
        assert torch.equal(prefix, o["lm_prefix_embeds"])
        assert again.lm_head.generate_ids(again.lm_head.contexts(prefix), **GREEDY)[0] == o["greedy_ids"][:-1]
        assert np.array_equal(predictor.segment_and_caption([Prompt(box_xyxy=np.array(o["meta"]["box_xyxy_original"]))],
                                                         **GREEDY).masks, o["predicted"].masks)


# ---------------------------------------------------------------------------------------------- broken checkpoints
def _variant(released: Path, out: Path, *, state_edit=None, config_edit=None) -> Path:
    """A copy of the fixture checkpoint with its state dict (written as model.safetensors) and / or
    config.json edited."""
    from safetensors.torch import save_file

    src = released / "checkpoint"
    out.mkdir()
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, out / f)
    config = json.loads((src / "config.json").read_text())
    if config_edit:
        config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
    state = {k: v.clone().contiguous() for k, v in torch.load(src / "pytorch_model.bin", weights_only=True).items()}
    if state_edit:
        state_edit(state)
    save_file(state, str(out / "model.safetensors"))
    return out


def _set(path: str, value):
    def edit(config):
        *parents, key = path.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[key] = value
    return edit


def test_documented_duplicates_may_be_absent(released, tmp_path, outputs):
    """Catches a loader that demands the released model's second name of the positional buffer or the tied
    lm_head copy (a hub save may leave either out) — or that loads something else in their place."""
    def edit(state):
        del state["prompt_encoder.shared_embedding.positional_embedding"]
        del state["language_model.lm_head.weight"]

    again = load_released_sca(_variant(released, tmp_path / "dup", state_edit=edit))
    o = outputs["case1"]
    with torch.no_grad():
        prefix = again.run(o["image_embeddings"], torch.zeros(1, dtype=torch.long), boxes=o["boxes"]).prefix
        logits = again.lm_head.forward_embeds(again.lm_head.contexts(prefix)).logits
    assert torch.equal(prefix, o["lm_prefix_embeds"])
    assert _max_diff(logits, o["caption_logits_full"][:, : prefix.shape[1]]) < 1e-4


def test_sharded_weights_load_like_one_file(released, tmp_path, outputs):
    """Catches a loader that only knows a single weights file (hub saves of GPT2-large / OpenLLaMA SCAs are
    sharded with an index) or that loads only the first shard."""
    from safetensors.torch import load_file, save_file

    d = _variant(released, tmp_path / "sharded")
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(d / shard))
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    again = load_released_sca(d)
    o = outputs["case2"]
    with torch.no_grad():
        prefix = again.run(o["image_embeddings"], torch.zeros(1, dtype=torch.long), boxes=o["boxes"]).prefix
    assert torch.equal(prefix, o["lm_prefix_embeds"])


@pytest.mark.parametrize("edit,names", [
    (lambda s: s.pop("mask_decoder.additional_transformer.layers.1.mlp.lin2.bias"),
     ["missing", "mask_decoder.additional_transformer.layers.1.mlp.lin2.bias"]),
    (lambda s: s.__setitem__("language_projection.weight", s.pop("language_project.weight")),
     ["missing", "'language_project.weight'", "unexpected", "language_projection.weight"]),
    (lambda s: s.__setitem__("mask_decoder.caption_tokens.weight", torch.zeros(7, 32)),
     ["mask_decoder.caption_tokens.weight", "(7, 32)", "(8, 32)"]),
    (lambda s: s.__setitem__("task_tokens.weight", torch.zeros(6, 64)), ["task_tokens.weight", "(6, 64)", "(12, 64)"]),
    (lambda s: s.__setitem__("vision_encoder.neck.conv2.weight", torch.zeros(32, 32, 1, 1)),
     ["vision_encoder.neck.conv2.weight", "(32, 32, 1, 1)"]),
    (lambda s: s.__setitem__("language_model.lm_head.weight", s["language_model.lm_head.weight"] + 1),
     ["language_model.lm_head.weight", "ties"]),
    (lambda s: s.__setitem__("prompt_encoder.shared_embedding.positional_embedding", torch.zeros(2, 16)),
     ["shared_image_embedding.positional_embedding", "differ"]),
    (lambda s: s.__setitem__("mask_decoder.extra_token.weight", torch.zeros(1, 32)),
     ["unexpected", "mask_decoder.extra_token.weight"]),
], ids=["removed", "renamed", "caption-tokens-shape", "task-tokens-shape", "sam-shape", "untied-lm-head",
        "positional-copies-differ", "extra-key"])
def test_broken_weights_raise_checkpoint_error_naming_the_key(released, tmp_path, edit, names):
    """Catches a loader that silently keeps random init for a missing / renamed weight, loads a mis-shaped
    one, ignores a key it does not know, or trusts a 'tied' copy that is not equal."""
    with pytest.raises(CheckpointError) as err:
        load_released_sca(_variant(released, tmp_path / "bad", state_edit=edit))
    for n in names:
        assert n in str(err.value), (n, str(err.value))


@pytest.mark.parametrize("path,value", [
    ("mask_caption_decoder_config.num_caption_heads", 2),
    ("mask_caption_decoder_config.hidden_act", "gelu"),
    ("mask_caption_decoder_config.attention_downsample_rate", 1),
    ("vision_config.hidden_act", "relu"),
    ("architectures", ["ScaMultitaskSplitMixerModel"]),
    ("text_config.activation_function", "relu"),
    ("text_config.model_type", "opt"),
    ("text_config.layer_norm_epsilon", 1e-6),
])
def test_unsupported_config_values_raise_checkpoint_error_naming_the_field(released, tmp_path, path, value):
    """Catches a config option regionlib does not implement being ignored (built with a silent default)."""
    with pytest.raises(CheckpointError) as err:
        load_released_sca(_variant(released, tmp_path / "bad", config_edit=_set(path, value)))
    assert path in str(err.value) and repr(value) in str(err.value), str(err.value)


def test_missing_config_size_raises_checkpoint_error(released, tmp_path):
    """Catches a size read with a fallback (e.g. 1 caption token) when config.json does not give it."""
    def edit(config):
        del config["mask_caption_decoder_config"]["num_caption_tokens"]

    with pytest.raises(CheckpointError, match="mask_caption_decoder_config.num_caption_tokens is missing"):
        load_released_sca(_variant(released, tmp_path / "bad", config_edit=edit))


# ---------------------------------------------------------------------------------------------- a Llama SCA
def _llama_sca(released: Path, out: Path) -> Path:
    """The fixture's SAM and mixer with a tiny random LlamaForCausalLM (width 48) and a BPE tokenizer trained
    here that adds BOS like Llama's, saved in the released layout (released key names, text_config as
    transformers 4.36 writes a LlamaConfig)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = ["a red car parked on the street", "a man riding a brown horse", "two dogs playing in the grass",
             "the sky above the old town"] * 5
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"]))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    out.mkdir()
    tokenizer.save_pretrained(str(out))
    text_config = {"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 48, "intermediate_size": 96,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
                   "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
                   "attention_bias": False, "attention_dropout": 0.0, "pretraining_tp": 1, "tie_word_embeddings": False,
                   "bos_token_id": 1, "eos_token_id": 2}
    torch.manual_seed(7)
    lm = LlamaForCausalLM(LlamaConfig(**text_config))
    config = json.loads((released / "checkpoint" / "config.json").read_text())
    config["text_config"] = text_config
    (out / "config.json").write_text(json.dumps(config))
    shutil.copy(released / "checkpoint" / "preprocessor_config.json", out / "preprocessor_config.json")
    state = {k: v for k, v in torch.load(released / "checkpoint" / "pytorch_model.bin", weights_only=True).items()
             if not k.startswith("language_model.")}
    state.update({f"language_model.{k}": v.clone() for k, v in lm.state_dict().items()})
    state["language_project.weight"] = torch.randn(48, 32) * 0.3
    state["language_project.bias"] = torch.randn(48) * 0.1
    state["task_tokens.weight"] = torch.randn(12, 48) * 0.2
    torch.save(state, out / "pytorch_model.bin")
    return out


def test_llama_sca_puts_bos_after_the_visual_prefix_like_the_released_code(released, tmp_path):
    """Catches regionlib's usual BOS-first context with a Llama tokenizer: the released SCADataTransform
    encodes each caption with the tokenizer's special tokens (BOS first, counted in the 18 tokens, EOS
    appended), the released forward puts it after ``[task tokens; projected queries]`` and learns BOS as the
    first target; generation starts from the prefix alone (the leading BOS id transformers 4.36 returns is
    never fed)."""
    model = load_released_sca(_llama_sca(released, tmp_path / "llama"))
    head, tok = model.lm_head, model.lm_head.tokenizer
    assert head.template_ids() == ([], [])  # nothing, BOS included, before the task tokens
    caption = " ".join(["a red car parked on the street"] * 4)
    released_ids = tok(caption, truncation=True, max_length=18)["input_ids"] + [tok.eos_token_id]
    assert released_ids[0] == tok.bos_token_id and len(released_ids) == 19
    assert head.target_ids([caption]) == [released_ids]

    task_rows = torch.load(tmp_path / "llama" / "pytorch_model.bin", weights_only=True)["task_tokens.weight"][6:12]
    torch.manual_seed(0)
    emb = torch.randn(1, 32, 16, 16)
    batch = {"image_embeddings": emb, "image_index": torch.zeros(1, dtype=torch.long),
             "boxes": torch.tensor([[30.0, 40.0, 150.0, 200.0]]), "targets": [caption]}
    with torch.no_grad():
        prefix = model.run(emb, batch["image_index"], boxes=batch["boxes"]).prefix
        assert torch.equal(prefix[0, :6], task_rows)
        assert torch.equal(head.contexts(prefix), prefix)
        loss = model(batch).loss
        # the released train-mode forward, step by step: [prefix ; BOS caption EOS], labels = [-100] + ids,
        # logits of the last L + 1 positions, shifted, cross-entropy with label smoothing 0.1
        ids = torch.tensor([released_ids])
        logits = head.lm(inputs_embeds=torch.cat([prefix, head.lm.get_input_embeddings()(ids)], 1)).logits
        labels = torch.cat([torch.tensor([[-100]]), ids], 1)
        logits = logits[:, -labels.shape[1]:]
        want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), label_smoothing=0.1)
        assert abs(float(loss) - float(want)) < 1e-5
        # greedy decoding from the prefix alone, as the released generate(inputs_embeds=prefix)
        got = head.generate_ids(head.contexts(prefix), num_beams=1, max_new_tokens=6)[0]
        seq, step = prefix, []
        for _ in range(6):
            nxt = int(head.lm(inputs_embeds=seq).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            step.append(nxt)
            seq = torch.cat([seq, head.lm.get_input_embeddings()(torch.tensor([[nxt]]))], 1)
    assert got == step
