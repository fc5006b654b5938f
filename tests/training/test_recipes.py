"""Learning-rate groups of a recipe (``recipe.lr_multipliers``), as the main job gives DAM's new parts.

Bugs caught: a group's factor not applied (the gates learn at the base rate and barely open), the
first-match rule broken (the gates fall into the adapters' group), a mistyped pattern silently doing
nothing, and the scheduler overwriting the per-group rates.
"""

import pytest
import torch

from regionlib.errors import ConfigError
from regionlib.models import create_model
from regionlib.training.recipes import build_optimizer, build_scheduler, get_recipe


def _lr_of(optimizer, param):
    return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_new_parts_and_gates_get_their_own_learning_rates():
    model = create_model("tiny-dam")
    recipe = get_recipe("dam", lr=1e-3, warmup_steps=2, lr_multipliers={
        "backbone.adapters.*.gamma": 20.0, "backbone.adapters.*.beta": 20.0, "backbone.adapters.*": 2.0,
        "backbone.mask_embed.*": 2.0})
    opt = build_optimizer(model, recipe, batch_size=8)
    adapter = model.backbone.adapters[0]
    assert _lr_of(opt, adapter.gamma) == pytest.approx(2e-2)  # the first matching pattern wins
    assert _lr_of(opt, adapter.q_proj.weight) == pytest.approx(2e-3)
    assert _lr_of(opt, model.backbone.mask_embed.weight) == pytest.approx(2e-3)
    assert _lr_of(opt, model.lm_head.lm.get_input_embeddings().weight) == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    sched = build_scheduler(opt, recipe, total_steps=10)
    for _ in range(3):
        opt.step()
        sched.step()
    ratio = _lr_of(opt, adapter.gamma) / _lr_of(opt, model.lm_head.lm.get_input_embeddings().weight)
    assert ratio == pytest.approx(20.0)  # the schedule scales every group alike


def test_a_pattern_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match="match no trainable parameter"):
        build_optimizer(create_model("tiny-dam-full"), get_recipe("dam", lr_multipliers={"backbone.adapters.*": 2.0}),
                        batch_size=8)
    with pytest.raises(ConfigError, match="positive number"):
        build_optimizer(create_model("tiny-dam"), get_recipe("dam", lr_multipliers={"backbone.*": 0}), batch_size=8)


def test_without_multipliers_one_learning_rate():
    opt = build_optimizer(create_model("tiny-dam"), get_recipe("dam", lr=3e-4), batch_size=8)
    assert {g["lr"] for g in opt.param_groups} == {3e-4}
    assert torch.is_tensor(opt.param_groups[0]["params"][0])


def test_learning_rate_roles_come_from_the_parts_the_model_declares():
    """Bug caught: the job matching DAM's parameter names itself (a renamed module would silently train at the
    base rate), or a role no model declares accepted and ignored."""
    model = create_model("tiny-dam")
    recipe = get_recipe("dam", lr=1e-3, warmup_steps=2, lr_roles={"gates": 20.0, "new": 3.0})
    opt = build_optimizer(model, recipe, batch_size=8)
    adapter = model.backbone.adapters[0]
    assert _lr_of(opt, adapter.gamma) == pytest.approx(2e-2) and _lr_of(opt, adapter.beta) == pytest.approx(2e-2)
    assert _lr_of(opt, adapter.q_proj.weight) == pytest.approx(3e-3)
    assert _lr_of(opt, model.backbone.mask_embed.weight) == pytest.approx(3e-3)
    assert _lr_of(opt, model.lm_head.lm.get_input_embeddings().weight) == pytest.approx(1e-3)
    full = create_model("tiny-dam-full")  # no adapters: the gates role is empty, the mask embedding is new
    opt = build_optimizer(full, recipe, batch_size=8)
    assert _lr_of(opt, full.backbone.mask_embed.weight) == pytest.approx(3e-3)
    with pytest.raises(ConfigError, match=r"lr_roles \['gates'\]: a SCA declares the roles \[\]"):
        build_optimizer(create_model("tiny-sca"), get_recipe("sca", lr_roles={"gates": 2.0}), batch_size=8)
    with pytest.raises(ConfigError, match="positive number"):
        get_recipe("dam", lr_roles={"new": -1.0})
