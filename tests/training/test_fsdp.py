"""FSDP2 (``run.strategy=fsdp``) is data parallelism like DDP: 2 gloo ranks stay in sync (checked on the full,
gathered parameters) and equal a 1-rank run with the same global batch; its sharded checkpoints resume on
another worker count and equal the uninterrupted run; the consolidated weights open with
`RegionModel.from_pretrained`. (FSDP under Ray Train, a worker killed and restarted, is tested beside DDP's
in tests/jobs/test_train.py, on the shared local Ray.)"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from regionlib.errors import ConfigError
from regionlib.training.loop import fsdp_blocks, load_config, train_local
from tests.training.launch import train_ranks
from tests.training.launch import weights as _weights

pytestmark = pytest.mark.slow

def _cfg(tmp: Path, name: str, *, batch_size: int, preset: str = "tiny-dam", steps: int = 3, strategy: str = "fsdp",
         extra: tuple = ()) -> dict:
    # eps = 1: Adam's step is linear in the gradient, so reduction order (rank splits) is not amplified
    return load_config(None, [
        f"task.preset={preset}", "task.n_images=6", "task.n_val=0", "recipe.lr=0.003", "recipe.warmup_steps=1",
        "recipe.eps=1.0", f"train.batch_size={batch_size}", f"train.max_steps={steps}", "train.checkpoint_every=2",
        "train.check_sync_every=1", f"run.storage={tmp}", f"run.name={name}", f"run.strategy={strategy}", *extra])


def _assert_same(a: dict, b: dict, atol: float) -> None:
    common = a.keys() & b.keys()  # tied weights may be stored under either name
    assert len(common) >= len(a) - 1 and len(common) >= len(b) - 1, (sorted(a.keys() ^ b.keys()))
    for k in common:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_the_layers_sharded_are_the_trainable_transformer_blocks():
    """Bug caught: frozen SAM blocks sharded (``encode_image`` would meet DTensors outside forward) or the
    LM / mixer / vision blocks left unsharded (the whole model in one FSDP group: no memory saved)."""
    from regionlib.models import create_model

    sca = create_model("tiny-sca", seed=0)
    names = {n for n, m in sca.named_modules() if any(m is b for b in fsdp_blocks(sca))}
    assert names == {"lm_head.lm.transformer.h.0", "lm_head.lm.transformer.h.1", "mixer.layers.0", "mixer.layers.1"}
    dam = create_model("tiny-dam", seed=0)
    kinds = sorted({type(b).__name__ for b in fsdp_blocks(dam)})
    assert kinds == ["GPT2Block", "ReleasedAdapter", "ViTLayer"], kinds


def test_fsdp_needs_a_process_group(tmp_path):
    """Bug caught: ``run.strategy=fsdp`` silently training unsharded (or crashing in init_device_mesh) in one
    plain process."""
    with pytest.raises(ConfigError, match="torchrun"):
        train_local(_cfg(tmp_path, "x", batch_size=2), str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="run.strategy: must be one of"):
        _cfg(tmp_path, "y", batch_size=2, strategy="zero3")


@pytest.mark.parametrize("preset", ["tiny-dam", "tiny-sca"])
def test_two_fsdp_ranks_stay_in_sync_and_equal_one_rank_with_the_same_global_batch(tmp_path, preset):
    """Bugs caught: gradients not reduce-scattered (sharded grads of one rank's data only), the loss not
    scaled by the global token count, the optimizer built over the unsharded parameters (FSDP's DTensors
    never stepped: the weights would not move), the sync check on local shards only (it would raise, the
    shards differ) — and a consolidated checkpoint that is not the full, gathered model."""
    torch.set_num_threads(1)
    one = train_local(_cfg(tmp_path, "one", batch_size=4, preset=preset, strategy="ddp"), str(tmp_path / "one"))
    two = tmp_path / "two"
    train_ranks(tmp_path, _cfg(tmp_path, "two", batch_size=2, preset=preset), two, nproc=2)
    ref, got = _weights(one), _weights(two / one.name)
    _assert_same(ref, got, atol=1e-6)
    from regionlib.training.tasks import create_task

    torch.manual_seed(0)
    start = create_task(_cfg(tmp_path, "x", batch_size=4, preset=preset).task, seed=0).build_model().state_dict()
    assert any(not torch.equal(start[k], got[k]) for k in got if k in start)  # training moved them: not vacuous
    assert (two / one.name / "sharded" / ".metadata").is_file()
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 3

    from regionlib.models import RegionModel

    loaded = RegionModel.from_pretrained(two / one.name)  # the consolidated checkpoint opens as a model
    _assert_same(ref, {k: v for k, v in loaded.state_dict().items()}, atol=1e-6)


def _resume(tmp: Path, name: str, ckpt: Path, *, nproc: int) -> Path:
    cfg = dataclasses.replace(_cfg(tmp, name, batch_size=4 // nproc, steps=4), resume_from=str(ckpt))
    train_ranks(tmp, cfg, tmp / name, nproc=nproc)
    steps = [json.loads(line)["step"] for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 4]  # resumed at step 2, not retrained from scratch
    return tmp / name / "checkpoint_000004"


def test_sharded_checkpoint_resumes_on_another_worker_count(tmp_path):
    """Bugs caught: DCP shards that only load on the world size that wrote them, a shard missing from the
    merged checkpoint, optimizer state (Adam moments, step) or scheduler lost on resume (the resumed
    weights would differ from the uninterrupted run), a resume that restarts from step 0 (metrics would
    repeat steps 1-2). Global batch 4 throughout: 2 ranks x 2 or 1 rank x 4."""
    torch.set_num_threads(1)
    whole = _weights(train_local(_cfg(tmp_path, "whole", batch_size=4, steps=4, strategy="ddp"),
                                 str(tmp_path / "whole")))
    for first_ranks, then_ranks in ((2, 1), (1, 2)):
        first = tmp_path / f"first{first_ranks}"
        train_ranks(tmp_path, _cfg(tmp_path, first.name, batch_size=4 // first_ranks, steps=4), first, nproc=first_ranks)
        ckpt = first / "checkpoint_000002"
        assert (ckpt / "sharded" / f"__{first_ranks - 1}_0.distcp").is_file()  # the last rank's shard is there
        _assert_same(whole, _weights(first / "checkpoint_000004"), atol=1e-6)  # uninterrupted FSDP == reference
        resumed = _resume(tmp_path, f"resumed{first_ranks}to{then_ranks}", ckpt, nproc=then_ranks)
        _assert_same(whole, _weights(resumed), atol=1e-6)


def test_fsdp_checkpoint_refused_by_ddp_resume(tmp_path):
    """Bug caught: a DDP resume from an FSDP checkpoint silently restarting the optimizer (no
    optimizer.safetensors there: its state lives in the shards)."""
    from regionlib.errors import CheckpointError

    first = tmp_path / "f"
    train_ranks(tmp_path, _cfg(tmp_path, "f", batch_size=2, steps=2), first, nproc=1)
    cfg = dataclasses.replace(_cfg(tmp_path, "d", batch_size=2, steps=4, strategy="ddp"),
                              resume_from=str(first / "checkpoint_000002"))
    with pytest.raises(CheckpointError, match="strategy=fsdp"):
        train_local(cfg, str(tmp_path / "d"))


def test_validation_under_fsdp_runs_on_the_gathered_weights(tmp_path):
    """Bug caught: validation on rank 0's sharded parameters (``generate`` runs outside ``forward``: DTensors
    meet plain tensors and it crashes) or only on some ranks (the gather would hang). That the gathered copy
    *is* the trained model is shown by the consolidated checkpoint test (the same `gather_full_model`); the
    CIDEr of a 3-step tiny model is ~0, so the equality below is weak evidence on its own."""
    torch.set_num_threads(1)
    extra = ("task.n_val=1", "task.max_new_tokens=8", "train.validate_every=3")
    one = _cfg(tmp_path, "one", batch_size=4, strategy="ddp", extra=extra)
    train_local(one, str(tmp_path / "one"))
    train_ranks(tmp_path, _cfg(tmp_path, "two", batch_size=2, extra=extra), tmp_path / "two", nproc=2)

    def val(name):
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r.get("val/CIDEr") for r in rows]

    ref, got = val("one"), val("two")
    assert ref[:2] == got[:2] == [None, None] and ref[2] is not None
    assert got[2] == pytest.approx(ref[2], abs=1e-9)

