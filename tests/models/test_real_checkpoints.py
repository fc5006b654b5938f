"""Real-format checkpoints, written by the libraries' own save functions, load through `create_model`.

Every source here is made by the test itself (tiny sizes, nothing downloaded): transformers'
``save_pretrained`` for SigLIP / CLIP (vision-only and a full CLIPModel dir) / DINOv2 (with and
without registers) / ViT vision models with their image processors, GPT-2 and Llama causal LMs with
byte-level BPE tokenizers trained by ``tokenizers`` (one with BOS and a chat template), and a SAM
made by segment-anything's own builder saved with ``torch.save(state_dict)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from regionlib.errors import CheckpointError, ConfigError
from regionlib.models import RegionModel, create_model, list_presets
from regionlib.models.lm_head import default_lora_targets
from regionlib.models.tokenizer import builtin_tokenizer
from regionlib.models.vision import VisionConfig, build_image_processor
from regionlib.regions import Regions
from regionlib.sam import SAM_PRESETS, SamConfig

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
SENTENCES = ["a red circle on the left of the image", "a small blue square with a dark outline",
             "Describe the masked region in detail.", "the striped green triangle below the dotted star",
             "select the masks that match the description", "user assistant system hello world"]
CHAT = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|eot|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
VISION = ("siglip", "siglipfull", "clip", "clipfull", "dinov2", "dinov2reg", "vit")


# ---------------------------------------------------------------------------------------------- sources
def _tokenizer(bos: bool, chat: bool, texts=SENTENCES):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<pad>", "<|eot|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:  # Llama-style: BOS added to plain text
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=["<|eot|>", "<|user|>", "<|assistant|>"])
    if chat:
        fast.chat_template = CHAT
    return fast


def _make_sources(root: Path) -> dict[str, Path]:
    import transformers as tf
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    vit = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=32,
               patch_size=8)
    out = {}

    def save(name, model, processor=None):
        d = root / name
        model.save_pretrained(str(d))
        if processor is not None:
            processor.save_pretrained(str(d))
        out[name] = d

    save("siglip", tf.SiglipVisionModel(tf.SiglipVisionConfig(**vit)),
         tf.SiglipImageProcessor(size={"height": 32, "width": 32}))
    save("siglipfull", tf.SiglipModel(tf.SiglipConfig(
        vision_config=vit, text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=64, vocab_size=99))),
         tf.SiglipImageProcessor(size={"height": 32, "width": 32}))
    clip_proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    save("clip", tf.CLIPVisionModel(tf.CLIPVisionConfig(**vit)), clip_proc)
    save("clipfull", tf.CLIPModel(tf.CLIPConfig(
        vision_config=vit, text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=64, vocab_size=99, bos_token_id=0, eos_token_id=1,
                                            pad_token_id=1), projection_dim=16)), clip_proc)
    dino = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=28, patch_size=7)
    dino_proc = tf.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                     image_mean=IMAGENET[0], image_std=IMAGENET[1])
    save("dinov2", tf.Dinov2Model(tf.Dinov2Config(**dino)), dino_proc)
    save("dinov2reg", tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**dino, num_register_tokens=2)),
         dino_proc)
    save("vit", tf.ViTModel(tf.ViTConfig(**vit)), tf.ViTImageProcessor(size={"height": 32, "width": 32}))
    save("bert", tf.BertModel(tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=64, vocab_size=99)))
    for name, bos, chat in (("gpt2", False, False), ("llama", True, True), ("llama_plain", True, False)):
        tok = _tokenizer(bos, chat)
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        if name == "gpt2":
            lm = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                                  **ids))
        else:
            lm = tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=256, tie_word_embeddings=False, **ids))
            lm.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|eot|>")]
        save(name, lm)
        tok.save_pretrained(str(root / name))
    # SAM from segment-anything's own builder (ViT-B/H layout at 1024 px, a 64-d 2-block encoder), as a .pth
    sam = _build_sam(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])
    torch.save(sam.state_dict(), root / "sam_tiny.pth")
    out["sam"] = root / "sam_tiny.pth"
    return out


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return _make_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture()
def sam_preset(monkeypatch):
    """segment-anything's `_build_sam` architecture with a 64-d 2-block encoder, as a regionlib SAM preset."""
    monkeypatch.setitem(SAM_PRESETS, "test-sa-builder", SamConfig(64, 2, 2, (1,)))
    return "test-sa-builder"


def _source_vision(name: str, path: Path):
    import transformers as tf

    cls = {"siglip": tf.SiglipVisionModel, "clip": tf.CLIPVisionModel, "dinov2": tf.Dinov2Model,
           "dinov2reg": tf.Dinov2WithRegistersModel, "vit": tf.ViTModel}
    if name in ("clipfull", "siglipfull"):
        full = (tf.CLIPModel if name == "clipfull" else tf.SiglipModel).from_pretrained(str(path)).eval()
        return None, full.vision_model.state_dict(), full
    model = cls[name].from_pretrained(str(path)).eval()
    return model, model.state_dict(), model


def _images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.randint(0, 256, (3, 45, 71), generator=g, dtype=torch.uint8),
            torch.randint(0, 256, (3, 83, 38), generator=g, dtype=torch.uint8)]
    yy, xx = torch.meshgrid(torch.arange(45), torch.arange(71), indexing="ij")
    mask = ((yy - 20) ** 2 + (xx - 30) ** 2) < 15 ** 2
    return imgs, mask


# ---------------------------------------------------------------------------------------------- vision
@pytest.mark.parametrize("name", VISION)
def test_vision_encoder_loads_every_weight_of_the_checkpoint(src, name):
    """Bug: a `vision__path` built the preset's ViTModel whatever config.json said, so ~1.6 % of a
    SigLIP / CLIP checkpoint's weights loaded and the rest stayed random, silently."""
    model = create_model("tiny-dam", vision__path=str(src[name]))
    enc = model.backbone.vision
    _, ref, _ = _source_vision(name, src[name])
    ref = {k: v for k, v in ref.items() if not k.startswith("pooler.")}  # regionlib's ViT has no pooler
    got = enc.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


@pytest.mark.parametrize("name", VISION)
def test_zero_init_backbone_equals_the_source_encoder(src, name):
    """Bug: DAM's backbone could not run on DINOv2 (layer list, register prefix tokens) and its inputs
    came from a hard-coded mean/std table; with E_M = 0 and zero adapter gates the localized backbone
    must reproduce the source encoder's hidden states exactly, on inputs from the checkpoint's processor."""
    model = create_model("tiny-dam", vision__path=str(src[name])).eval()
    bb = model.backbone
    assert float(bb.mask_embed.weight.detach().abs().sum()) == 0.0
    proc = bb.vision.regionlib_processor
    imgs, mask = _images()
    full, crop = proc(imgs[:1]), proc(imgs[1:])
    m = proc.masks([mask])
    crop_mask = proc.masks([torch.ones(83, 38, dtype=torch.bool)])
    source = _source_vision(name, src[name])[2].eval()
    with torch.no_grad():
        out = bb(full_image=full, full_mask=m, crop_image=crop, crop_mask=crop_mask)
        if name in ("clipfull", "siglipfull"):
            hidden = source.vision_model(pixel_values=crop, output_hidden_states=True).hidden_states
        else:
            hidden = source(pixel_values=crop, output_hidden_states=True).hidden_states
    assert torch.equal(out, hidden[bb.depth])  # feature layer -2 of the crop, global context gated off


@pytest.mark.parametrize("name", VISION)
def test_preprocessing_is_the_checkpoints_own_image_processor(src, name):
    """Bug: preprocessing used a mean/std table and squashed to a square, so a CLIP checkpoint got other
    values than its own CLIPImageProcessor (resize shortest edge + centre crop) on non-square images."""
    from transformers import AutoImageProcessor

    imgs, mask = _images(1)
    proc = build_image_processor(VisionConfig(path=str(src[name])))
    ref = AutoImageProcessor.from_pretrained(str(src[name]))
    want = ref(images=imgs, return_tensors="pt")["pixel_values"]
    got = proc(imgs)
    assert got.shape == want.shape and proc.size == tuple(want.shape[-2:])
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    # the mask channel: 0/255 through the same processor, channel 0 (DAM's released code)
    m255 = (mask.to(torch.uint8) * 255)[None].expand(3, -1, -1)
    want_m = ref(images=[m255], return_tensors="pt")["pixel_values"][:, :1]
    got_m = proc.masks([mask])
    assert got_m.shape == (1, 1, *proc.size) and torch.allclose(got_m, want_m, atol=1e-5, rtol=0)
    if name == "siglip":  # {-1, +1} inside / outside, away from the edge
        assert got_m.min() >= -1.0 - 1e-6 and got_m.max() <= 1.0 + 1e-6
        assert float(got_m[0, 0, 0, -1]) == pytest.approx(-1.0) and float(got_m[0, 0, 13, 13]) == pytest.approx(1.0)
    # the processor travels with a saved model
    model = create_model("tiny-pooled", vision__path=str(src[name]))
    assert torch.allclose(model.encoders.processors[0](imgs), want, atol=1e-5, rtol=0)


def test_pooled_features_use_the_processor_and_prefix_tokens(src):
    """Bug: `FeatureEncoders` squashed every image to a square with a family mean/std and dropped one
    prefix token, so DINOv2's register tokens were read as patch features."""
    model = create_model("tiny-pooled", vision__path=str(src["dinov2reg"]))
    imgs, _ = _images(2)
    image = imgs[0].permute(1, 2, 0).numpy()
    feats = model.encoders(image)[0]
    source = _source_vision("dinov2reg", src["dinov2reg"])[2]
    from transformers import AutoImageProcessor

    x = AutoImageProcessor.from_pretrained(str(src["dinov2reg"]))(images=[imgs[0]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        last = source(pixel_values=x).last_hidden_state[0, 3:]  # CLS + 2 registers
    assert feats.shape == (32, 4, 4)
    assert torch.allclose(feats, last.transpose(0, 1).reshape(32, 4, 4), atol=1e-6)


def test_unsupported_or_broken_vision_checkpoints_are_errors(src, tmp_path):
    """Bug: a config.json naming another architecture, or a checkpoint with a renamed weight, became a
    randomly initialised encoder without a word."""
    with pytest.raises(CheckpointError, match=r"'bert'.*supported model_types.*siglip"):
        create_model("tiny-dam", vision__path=str(src["bert"]))
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "siglip_renamed"
    shutil.copytree(src["siglip"], bad)
    state = load_file(str(bad / "model.safetensors"))
    state["encoder.layers.1.mlp.fc9.weight"] = state.pop("encoder.layers.1.mlp.fc1.weight")
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.1\.mlp\.fc1\.weight.*encoder\.layers\.1\.mlp\.fc9"):
        create_model("tiny-dam", vision__path=str(bad))


# ---------------------------------------------------------------------------------------------- LMs
@pytest.mark.parametrize("name", ["gpt2", "llama", "llama_plain"])
def test_lm_and_its_tokenizer_load_with_bos_and_chat_template(src, name):
    """Bug: with `lm__path` the built-in 127-word tokenizer fed the LM wrong ids, it never saw BOS and
    chat templates were ignored; the context ids must be the LM's own tokenizer's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = create_model("tiny-dam", lm__path=str(src[name]))
    head = model.lm_head
    own = AutoTokenizer.from_pretrained(str(src[name]))
    assert head.tokenizer.get_vocab() == own.get_vocab()
    ref = AutoModelForCausalLM.from_pretrained(str(src[name])).state_dict()
    got = head.lm.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    template = model.config.lm.template
    before, after = head.template_ids()
    if name == "gpt2":  # no BOS for plain text, no chat template
        assert before == [] and after == own(template.split("{visual}")[1])["input_ids"]
    elif name == "llama_plain":  # BOS first, before the visual slot
        assert before == [own.bos_token_id]
        assert before + after == own(template.replace("{visual}", ""))["input_ids"]
    else:  # the chat template's user turn, generation prompt, one BOS (from the template's text)
        whole = own.apply_chat_template([{"role": "user", "content": template.replace("{visual}", "")}],
                                        tokenize=False, add_generation_prompt=True)
        rendered = own.apply_chat_template([{"role": "user", "content": template}], tokenize=False,
                                           add_generation_prompt=True)
        assert before == own(rendered.split("{visual}")[0], add_special_tokens=False)["input_ids"]
        assert before + after == own(whole, add_special_tokens=False)["input_ids"]
        assert before[0] == own.bos_token_id and before.count(own.bos_token_id) == 1
        assert own.convert_tokens_to_ids("<|assistant|>") in after
        assert head.eos_ids == [own.eos_token_id, own.convert_tokens_to_ids("<|eot|>")]
    prefix = torch.randn(2, 3, head.width)
    ctx = head.contexts(prefix)
    emb = head.lm.get_input_embeddings().weight
    assert ctx.shape == (2, len(before) + 3 + len(after), head.width)
    assert torch.equal(ctx[0, : len(before)], emb[before]) and torch.equal(ctx[1, len(before): len(before) + 3], prefix[1])
    assert torch.equal(ctx[0, len(before) + 3:], emb[after])


def test_a_real_lm_never_pairs_with_another_vocabulary(src):
    """Bug: `create_model(..., lm__path=...)` paired a real LM with the built-in word tokenizer (or any
    tokenizer passed), feeding it ids of another vocabulary."""
    with pytest.raises(CheckpointError, match="built-in word tokenizer"):
        create_model("tiny-dam", lm__path=str(src["gpt2"]), tokenizer=builtin_tokenizer())
    from transformers import AutoTokenizer

    other = _tokenizer(False, False, texts=["an entirely different corpus of words", "zebra quokka okapi"])
    with pytest.raises(CheckpointError, match="does not match the LM's own tokenizer"):
        create_model("tiny-dam", lm__path=str(src["gpt2"]), tokenizer=other)
    grown = AutoTokenizer.from_pretrained(str(src["gpt2"]))
    grown.add_tokens(["zebra", "quokka"])  # the LM's own ids, plus ids it has no embedding rows for
    with pytest.raises(CheckpointError, match="embedding rows"):
        create_model("tiny-dam", lm__path=str(src["gpt2"]), tokenizer=grown)
    assert create_model("tiny-dam", lm__path=str(src["gpt2"]), tokenizer=AutoTokenizer.from_pretrained(str(src["gpt2"])))
    # training code passes its caption words for the tiny presets' tokenizer; a real LM keeps its own
    words = ["quokka okapi"]
    assert "quokka" in create_model("tiny-dam", tokenizer_texts=words).lm_head.tokenizer.get_vocab()
    real = create_model("tiny-dam", lm__path=str(src["gpt2"]), tokenizer_texts=words).lm_head.tokenizer
    assert real.get_vocab() == AutoTokenizer.from_pretrained(str(src["gpt2"])).get_vocab()


def test_broken_lm_checkpoints_are_errors(src, tmp_path):
    """Bug: a causal LM with a renamed weight loaded with that weight random (only a log line said so)."""
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "llama_renamed"
    shutil.copytree(src["llama"], bad)
    state = load_file(str(bad / "model.safetensors"))
    state["model.layers.0.mlp.up_proj.weightX"] = state.pop("model.layers.0.mlp.up_proj.weight")
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.up_proj\.weight"):
        create_model("tiny-dam", lm__path=str(bad))
    with pytest.raises(CheckpointError, match="causal"):
        create_model("tiny-dam", lm__path=str(src["siglip"]), tokenizer=_own_tokenizer(src["gpt2"]))


def _own_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("name,targets", [("gpt2", ["c_attn"]), ("llama", ["q_proj", "v_proj"])])
def test_lora_uses_peft_default_targets(src, name, targets):
    """Bug: `lm__lora_r=8` (as the README shows) failed because the target list defaulted to empty."""
    model = create_model("tiny-dam", lm__path=str(src[name]), lm__lora_r=8)
    assert sorted(model.lm_head.lora["target_modules"]) == targets
    lora = [n for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    assert lora and all(any(t in n for t in targets) for n in lora)
    head = model.lm_head
    out, labels = head.teacher_forced(head.contexts(torch.randn(2, 3, head.width)), None,
                                      ["a red circle", "the striped green triangle"])
    head.token_loss(out.logits, labels).backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for n, p in head.lm.named_parameters() if "lora_" not in n)  # base weights frozen
    lm = head.lm.get_base_model()
    lm.config.model_type = "no-such-architecture"
    with pytest.raises(ConfigError, match="lora_targets"):
        default_lora_targets(lm)


# ---------------------------------------------------------------------------------------------- SAM
def test_sam_from_a_segment_anything_pth(src, sam_preset, tmp_path):
    """Bug: SAM's loader reported a renamed or missing key only as torch's raw RuntimeError text (not a
    CheckpointError naming it)."""
    from segment_anything.build_sam import _build_sam

    model = create_model("tiny-sca", sam_preset=sam_preset, sam_checkpoint=str(src["sam"]))
    ref = torch.load(src["sam"], weights_only=True)
    got = model.sam.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    bad = dict(ref)
    bad["mask_decoder.iou_head.layers.0.weightX"] = bad.pop("mask_decoder.iou_prediction_head.layers.0.weight")
    torch.save(bad, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"missing weights \['mask_decoder\.iou_prediction_head\.layers\.0\.weight'\]"):
        create_model("tiny-sca", sam_preset=sam_preset, sam_checkpoint=str(tmp_path / "renamed.pth"))
    torch.save({"model": _build_sam, "state": ref}, tmp_path / "pickled.pth")  # not plain tensors
    with pytest.raises(CheckpointError, match="weights_only"):
        create_model("tiny-sca", sam_preset=sam_preset, sam_checkpoint=str(tmp_path / "pickled.pth"))


# ---------------------------------------------------------------------------------------------- round trips
def _perturb(model):
    with torch.no_grad():  # move off the initialisation so zero-init parts are not trivially equal
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(0.01 * torch.randn(p.shape, generator=g))


def _world_image():
    from regionlib.data.regionworld import generate_regionworld

    s = generate_regionworld(1, seed=5)[0]
    return s.image, s.regions


def _outputs(model, image, regions):
    from regionlib.models import RAS

    torch.manual_seed(0)
    state = model.encode_image(image)
    with torch.no_grad():
        if isinstance(model, RAS):
            return model(model.region_inputs(state, regions, "every diamond")).logits
        return model.contexts(model.region_inputs(state, Regions.from_masks(regions.masks[:2])))[0]


def _equal_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("preset,paths", [
    ("tiny-dam", {"vision__path": "siglip", "lm__path": "llama"}),
    ("tiny-sca", {"sam_checkpoint": "sam", "lm__path": "gpt2"}),
    ("tiny-ras-2enc", {"encoders": ("clipfull", "dinov2reg"), "lm__path": "llama_plain"}),
    ("tiny-pooled", {"vision__path": "dinov2", "lm__path": "gpt2"}),
])
def test_saved_directory_opens_without_its_sources(src, sam_preset, tmp_path, preset, paths):
    """Bug: save_pretrained directories re-read the architecture from the original vision / LM paths, so
    after moving the checkpoint and deleting the sources loading failed with an unrelated "Repo id" error."""
    copies = tmp_path / "sources"
    shutil.copytree(src["siglip"].parent, copies)
    overrides = {}
    for key, name in paths.items():
        if key == "encoders":
            overrides[key] = tuple(VisionConfig(path=str(copies / n)) for n in name)
        elif key == "sam_checkpoint":
            overrides[key] = str(copies / src[name].name)
            overrides["sam_preset"] = sam_preset
        else:
            overrides[key] = str(copies / name)
    model = create_model(preset, **overrides).eval()
    _perturb(model)
    model.save_pretrained(tmp_path / "ckpt")
    shutil.move(str(tmp_path / "ckpt"), str(tmp_path / "moved"))
    shutil.rmtree(copies)
    loaded = RegionModel.from_pretrained(tmp_path / "moved")
    assert type(loaded) is type(model) and _equal_state(model, loaded)
    if preset == "tiny-sca":  # SAM's architecture travels with the checkpoint (here a preset made by the test)
        assert json.loads((tmp_path / "moved" / "config.json").read_text())["sam"][sam_preset]["encoder_embed_dim"] == 64
    image, regions = _world_image()
    assert torch.equal(_outputs(model, image, regions), _outputs(loaded, image, regions))
    meta = json.loads((tmp_path / "moved" / "config.json").read_text())
    assert meta["format"] == "regionlib/2" and (tmp_path / "moved" / "lm" / "config.json").is_file()
    # provenance: the original paths are recorded, and saving the loaded model again keeps them
    assert str(copies) in json.dumps(meta["config"])
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["config"] == meta["config"]
    assert _equal_state(loaded, RegionModel.from_pretrained(tmp_path / "again"))


def test_training_checkpoint_directory_opens(tmp_path):
    """Guards the one-format contract (ray_jobs/train.py used to write a second format): a training
    checkpoint is the model directory plus optimizer / RNG / step state beside it, and those extra
    files must not break `from_pretrained`."""
    from safetensors.torch import save_file

    model = create_model("tiny-dam").eval()
    _perturb(model)
    d = model.save_pretrained(tmp_path / "step_10")
    save_file({"state.0.exp_avg": torch.zeros(3)}, str(d / "optimizer.safetensors"))
    save_file({"torch": torch.zeros(4, dtype=torch.uint8)}, str(d / "rng.safetensors"))
    (d / "state.json").write_text(json.dumps({"step": 10, "epoch": 0}))
    assert _equal_state(model, RegionModel.from_pretrained(d))


def test_trainable_only_checkpoint_reads_frozen_parts_from_its_base(src, sam_preset, tmp_path):
    """Bug: every checkpoint stored the frozen SAM (2.5 GB at ViT-H); with trainable_only=True only the
    trained weights are stored, the frozen ones re-read from the base, which must then exist."""
    pth = tmp_path / "sam.pth"
    shutil.copy(src["sam"], pth)
    model = create_model("tiny-sca", sam_preset=sam_preset, sam_checkpoint=str(pth), lm__freeze=True).eval()
    _perturb(model)
    full = model.save_pretrained(tmp_path / "full")
    small = model.save_pretrained(tmp_path / "small", trainable_only=True)
    assert (small / "model.safetensors").stat().st_size < 0.5 * (full / "model.safetensors").stat().st_size
    from safetensors import safe_open

    with safe_open(str(small / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any(k.startswith("sam.") for k in keys) and any(k.startswith("mixer") or "task" in k for k in keys)
    assert _equal_state(model, RegionModel.from_pretrained(small))
    pth.unlink()
    with pytest.raises(CheckpointError, match="sam_checkpoint.*not available"):
        RegionModel.from_pretrained(small)
    assert _equal_state(model, RegionModel.from_pretrained(full))  # the full one needs no base


def test_safetensors_hygiene_and_invalid_sizes(tmp_path):
    """Bug: a tensor stored as I32 for an F32 weight loaded silently (cast), a corrupt header raised a bare
    SafetensorError, and `lm__depth=-1` built a model."""
    from safetensors.torch import load_file, save_file

    model = create_model("tiny-dam")
    d = model.save_pretrained(tmp_path / "ck")
    state = load_file(str(d / "model.safetensors"))
    key = "projector.0.weight"
    state[key] = state[key].to(torch.int32)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"dtype mismatch.*projector\.0\.weight: checkpoint I32 vs model F32"):
        RegionModel.from_pretrained(d)
    (d / "model.safetensors").write_bytes(b"\xff" * 8 + b"{not json" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        RegionModel.from_pretrained(d)
    for bad in ({"lm__depth": -1}, {"lm__width": 30, "lm__heads": 4}, {"vision__patch_size": 0},
                {"vision__depth": -2}):
        with pytest.raises(ConfigError):
            create_model("tiny-dam", **bad)


def test_every_cpu_sized_preset_round_trips(tmp_path):
    """Guard: every CPU-sized preset (several encoders, DINOv2, SAM, Llama) builds, saves and re-opens from
    its saved sub-configs with equal state dicts (a new preset whose part is not saved would fail here)."""
    names = [n for n in list_presets() if n.startswith("tiny-")]
    assert len(names) >= 15
    for name in names:
        model = create_model(name)
        _perturb(model)
        loaded = RegionModel.from_pretrained(model.save_pretrained(tmp_path / name))
        assert type(loaded) is type(model) and _equal_state(model, loaded), name


def test_sam_architecture_travels_with_the_checkpoint(tmp_path):
    """Bug: an SCA checkpoint named its SAM only by preset name, so a preset defined differently (or not at
    all) where it is opened silently rebuilt another SAM architecture (or failed with an unrelated error)."""
    model = create_model("tiny-sca")
    d = model.save_pretrained(tmp_path / "sca")
    meta = json.loads((d / "config.json").read_text())
    assert meta["sam"]["tiny"]["encoder_embed_dim"] == SAM_PRESETS["tiny"].encoder_embed_dim
    meta["sam"]["tiny"]["decoder_depth"] = 3
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="saved with SAM preset 'tiny'"):
        RegionModel.from_pretrained(d)
    meta["sam"] = {"elsewhere-tiny": {**meta["sam"].pop("tiny"), "decoder_depth": 2}}
    meta["config"]["sam_preset"] = "elsewhere-tiny"
    (d / "config.json").write_text(json.dumps(meta))
    try:
        assert _equal_state(model, RegionModel.from_pretrained(d))
    finally:
        SAM_PRESETS.pop("elsewhere-tiny", None)


def test_a_damaged_vision_or_sam_checkpoint_is_a_checkpoint_error(src, tmp_path):
    """Bugs caught: a vision path without preprocessor_config.json silently normalised with the family's default
    mean / std; a truncated model.safetensors (vision path, SAM checkpoint) raising a bare SafetensorError."""
    from regionlib.sam import load_state_dict

    no_proc = tmp_path / "no_proc"
    shutil.copytree(src["siglip"], no_proc)
    (no_proc / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="no preprocessor_config.json"):
        create_model("tiny-dam", vision__path=str(no_proc))
    cut = _truncated_copy(src["siglip"], tmp_path / "cut")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        create_model("tiny-dam", vision__path=str(cut))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state_dict(cut / "model.safetensors")


def _truncated_copy(source: Path, dest: Path) -> Path:
    """A copy of the checkpoint folder ``source`` whose model.safetensors lost its last 64 bytes."""
    shutil.copytree(source, dest)
    weights = dest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    return dest


def test_an_lm_directory_without_tokenizer_files_is_refused(tmp_path):
    """Bug caught: a GPT-2-type LM directory without tokenizer files: transformers returns a near-empty tokenizer,
    every caption became EOS, the loss fell, captions came out empty and the broken tokenizer was saved."""
    import transformers as tf

    d = tmp_path / "gpt2"
    tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=300, n_embd=32, n_layer=1, n_head=2)).save_pretrained(d)
    with pytest.raises(CheckpointError, match="has 1 tokens for an LM of 300 embedding rows"):
        create_model("tiny-dam", lm__path=str(d))


def test_a_dam_from_tower_paths_warns_that_its_projector_is_random(src):
    """Bug caught: ``dam-3b`` / ``dam_paper.yaml`` silently starting from a random projector between a pretrained
    SigLIP and a pretrained LM (the paper starts from VILA's trained one)."""
    with pytest.warns(UserWarning, match="projector starts from random weights"):
        create_model("tiny-dam", vision__path=str(src["siglip"]))


def test_a_truncated_lm_checkpoint_is_a_checkpoint_error(src, tmp_path):
    """Bug caught: a truncated ``lm__path`` model.safetensors raising a bare SafetensorError."""
    cut = _truncated_copy(src["gpt2"], tmp_path / "lm")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        create_model("tiny-dam", lm__path=str(cut))
