"""Fixtures for the model tests: 8 RegionWorld regions, a training loop with early stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def world():
    """RegionWorld images (256 px) holding at least 8 regions in all."""
    from regionlib.data.regionworld import generate_regionworld

    samples = generate_regionworld(4, seed=3)
    assert sum(len(s.regions) for s in samples[:3]) >= 8
    return samples


@pytest.fixture(scope="session")
def eight(world):
    """8 regions as (image index, image, mask, caption) rows, from the first images of ``world``."""
    rows = []
    for k, s in enumerate(world):
        for i in range(len(s.regions)):
            if len(rows) < 8:
                rows.append((k, s.image, s.regions.masks[i], s.regions.captions[i]))
    return rows


def per_image(rows):
    """Group rows by image: list of (image, `Regions` with masks and captions)."""
    from regionlib.regions import Regions

    out = {}
    for k, image, mask, caption in rows:
        out.setdefault(k, (image, [], []))
        out[k][1].append(mask)
        out[k][2].append(caption)
    return [(img, Regions.from_masks(np.stack(m), captions=c)) for img, m, c in out.values()]


def inputs(model, image, regions, **kwargs) -> dict:
    """The model's inputs for ``regions`` of ``image`` through its interface (encode, then region inputs)."""
    return model.region_inputs(model.encode_image(image), regions, **kwargs)


def batch_of(model, groups) -> dict:
    """One batch over several images: `per_image` groups collated by the model."""
    return model.collate([inputs(model, image, regions) for image, regions in groups])


def fit(model, loss_fn, done_fn, *, max_steps: int, lr: float = 3e-3, check_every: int = 25) -> int:
    """AdamW on the trainable parameters until ``done_fn()`` or ``max_steps``; returns the steps taken."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    for step in range(1, max_steps + 1):
        model.train()
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % check_every == 0:
            model.eval()
            if done_fn():
                return step
    model.eval()
    return max_steps
