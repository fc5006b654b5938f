"""SCA's text feature mixer over a frozen segment-anything SAM (seed 000 §3; REFERENCE §4).

SAM's image encoder, prompt encoder and mask decoder stay frozen. The decoder's two-way
transformer is run as in `MaskDecoder.predict_masks` to get its output tokens (IoU + mask tokens)
and the decoder-updated image embedding; the *text feature mixer* — another `TwoWayTransformer`
of ``mixer_depth`` layers — runs over ``[query tokens; decoder tokens]`` attending to that
updated embedding; the query outputs are projected to the LM width and prefixed by learned
*task tokens*. Ablations (seed 000 §I) via ``mixer_inputs``: ``"queries+sam"`` (default),
``"queries"`` (no SAM tokens), ``"sam"`` (decode SAM's mask tokens directly, no queries).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from segment_anything.modeling import Sam, TwoWayTransformer

from ..errors import ConfigError

__all__ = ["SCAMixer", "sca_trainable_parameters"]


class SCAMixer(nn.Module):
    """Frozen SAM + trainable mixer -> visual prefix ``(B, task + queries, lm_width)``.

    Args:
        sam: a segment-anything `Sam` (frozen here).
        lm_width: hidden size of the language model.
        num_queries / mixer_depth / num_task_tokens: the paper's 8 / 12 / 6 by default.
    """

    def __init__(self, sam: Sam, lm_width: int, *, num_queries: int = 8, mixer_depth: int = 12, num_task_tokens: int = 6,
                 mixer_heads: int = 8, mixer_mlp_dim: int = 2048, mixer_inputs: str = "queries+sam"):
        super().__init__()
        if mixer_inputs not in ("queries+sam", "queries", "sam"):
            raise ConfigError(f"mixer_inputs must be 'queries+sam', 'queries' or 'sam', got {mixer_inputs!r}")
        self.sam, self.mixer_inputs = sam, mixer_inputs
        for p in sam.parameters():
            p.requires_grad_(False)
        dim = sam.prompt_encoder.embed_dim
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02) if mixer_inputs != "sam" else None
        self.mixer = TwoWayTransformer(depth=mixer_depth, embedding_dim=dim, num_heads=mixer_heads, mlp_dim=mixer_mlp_dim)
        self.proj = nn.Linear(dim, lm_width)
        self.task_tokens = nn.Parameter(torch.randn(num_task_tokens, lm_width) * 0.02)

    @torch.no_grad()
    def decoder_tokens(self, image_embeddings: torch.Tensor, boxes: torch.Tensor | None = None,
                       points: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Frozen SAM decoder: (updated image embedding ``(B, HW, C)``, positional ``(B, HW, C)``, tokens ``(B, T, C)``).

        image_embeddings ``(B, C, h, w)`` (one per prompt); boxes ``(B, 4)`` and points in SAM's input frame.
        """
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        dec = self.sam.mask_decoder
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)[None].expand(sparse.shape[0], -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        src = image_embeddings + dense
        pos = self.sam.prompt_encoder.get_dense_pe().expand(src.shape[0], -1, -1, -1)
        hs, src = dec.transformer(src, pos, tokens)
        return src, pos.flatten(2).transpose(1, 2), hs[:, : out_tokens.shape[1]]

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor | None = None, points=None) -> torch.Tensor:
        src, pos, sam_tokens = self.decoder_tokens(image_embeddings, boxes, points)
        b = src.shape[0]
        parts = []
        if self.queries is not None:
            parts.append(self.queries[None].expand(b, -1, -1))
        if self.mixer_inputs != "queries":
            parts.append(sam_tokens)
        tokens = torch.cat(parts, dim=1)
        h = w = int(src.shape[1] ** 0.5)
        image = src.transpose(1, 2).reshape(b, -1, h, w)
        pe = pos.transpose(1, 2).reshape(b, -1, h, w)
        out, _ = self.mixer(image, pe, tokens)
        n_out = self.queries.shape[0] if self.queries is not None else sam_tokens.shape[1]
        visual = self.proj(out[:, :n_out])
        return torch.cat([self.task_tokens[None].expand(b, -1, -1).to(visual.dtype), visual], dim=1)


def sca_trainable_parameters(*, lm_width: int = 1280, num_queries: int = 8, mixer_depth: int = 12, num_task_tokens: int = 6,
                             dim: int = 256, heads: int = 8, mlp_dim: int = 2048) -> int:
    """Trainable parameters of SCA's paper configuration (mixer, queries, task tokens, projection)."""
    with torch.device("meta"):
        mixer = TwoWayTransformer(depth=mixer_depth, embedding_dim=dim, num_heads=heads, mlp_dim=mlp_dim)
    n = sum(p.numel() for p in mixer.parameters())
    return n + num_queries * dim + num_task_tokens * lm_width + dim * lm_width + lm_width
