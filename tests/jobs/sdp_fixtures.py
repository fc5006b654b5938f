"""Tiny real-format checkpoints for DLC-SDP stage 2 tests, built here (no downloads): an OWLv2
(``Owlv2ForObjectDetection`` + ``Owlv2Processor`` with a CLIP tokenizer), a CLIP model directory
and a SAM ``.pth`` state dict, plus a folder of generated photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def clip_tokenizer():
    """A byte-level CLIP tokenizer with the 256 byte symbols (and their end-of-word forms) as its vocabulary."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[])


def _text_config(tok, max_positions: int) -> dict:
    return {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": max_positions, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}


def save_tiny_owlv2(path: Path, *, box_size_logit: float = 0.5, seed: int = 0) -> Path:
    """A 64-px, 1-layer OWLv2 whose box head predicts each patch's own box, enlarged by ``box_size_logit``
    (its last box layer zeroed: random box weights give degenerate boxes); random class scores."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tok = clip_tokenizer()
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(Owlv2Config(
        text_config=_text_config(tok, 16),
        vision_config={"image_size": 64, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=32)).eval()
    with torch.no_grad():
        last = model.box_head.dense2
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, box_size_logit, box_size_logit]))
    model.save_pretrained(path)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok).save_pretrained(path)
    return path


def save_tiny_clip(path: Path, *, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = clip_tokenizer()
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=_text_config(tok, 64),
                                 vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                                                "intermediate_size": 64, "num_hidden_layers": 1,
                                                "num_attention_heads": 2},
                                 projection_dim=16))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def save_tiny_sam(path: Path, *, seed: int = 0) -> Path:
    from regionlib.sam import build_sam

    torch.save(build_sam("tiny", seed=seed).state_dict(), path)
    return path


def write_photo_folder(root: Path, n: int = 3, *, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` RegionWorld 'unlabeled' images (scikit-image photographs behind the objects) as PNG files."""
    from PIL import Image

    from regionlib.data.regionworld import generate_regionworld

    root.mkdir(parents=True, exist_ok=True)
    images = {}
    for k, s in enumerate(generate_regionworld(n, seed=seed, split="unlabeled")):
        name = f"photo{k}"
        Image.fromarray(s.image).save(root / f"{name}.png")
        images[name] = s.image
    return images
