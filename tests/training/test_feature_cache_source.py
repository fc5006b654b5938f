"""The feature cache as the source of SCA's frozen SAM (``task.feature_cache``): training from cached
embeddings equals training through SAM's image encoder; a missing or mismatched image is a typed error
naming it; pixel augmentation is refused."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regionlib.errors import ConfigError, DataFormatError
from regionlib.runtime.feature_cache import write_feature_shard
from regionlib.runtime.shards import ShardedWriter, plan_shards
from regionlib.training.loop import load_config, train_local
from regionlib.training.tasks import create_task

pytestmark = pytest.mark.slow


def _cfg(tmp: Path, name: str, *extra: str):
    return load_config(None, ["task.preset=tiny-sca", "task.n_images=4", "task.n_val=0", "recipe.lr=0.003",
                              "recipe.warmup_steps=1", "train.batch_size=4", "train.max_steps=2",
                              "train.checkpoint_every=2", f"run.storage={tmp}", f"run.name={name}", *extra])


def _write_cache(root: Path, cfg, *, skip: str | None = None, transform=lambda e: e) -> list[str]:
    """Embeddings of the training images by the training model's own (frozen) SAM, written the way
    ``ray_jobs/cache_features.py`` writes them (shards + manifest), keyed by the items' image ids."""
    torch.manual_seed(0)
    task = create_task(cfg.task, seed=0)
    model = task.build_model()
    task.epoch_samples(0)
    items = {str(it.image_id): it for src in task._sources for it in src.items}
    ids = sorted(i for i in items if i != skip)
    writer = ShardedWriter(root, kind="sam_image_embeddings", config={"encoder": "sam"}, suffix=".safetensors")
    for spec in plan_shards(ids, 3):
        with torch.no_grad():
            feats = {i: transform(model.encode_image(items[i].load()).tensors["image_embeddings"][0]) for i in spec.ids}
        write_feature_shard(writer.shard_path(spec), spec, feats)
        writer.record(spec, count=len(feats))
    writer.compact()
    return sorted(items)


def _weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def test_training_from_the_feature_cache_equals_training_through_sam(tmp_path):
    """Bugs caught: cached embeddings looked up under the wrong image (another image's features), the
    wrong layout ((C, g, g) not given its image axis, or transposed), or the cache silently unused (the
    perturbed cache below would then train the same weights)."""
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    ids = _write_cache(cache, _cfg(tmp_path, "x"))
    assert len(ids) == 4
    plain = _weights(train_local(_cfg(tmp_path, "plain"), str(tmp_path / "plain")))
    cached = _weights(train_local(_cfg(tmp_path, "cached", f"task.feature_cache={cache}"), str(tmp_path / "cached")))
    assert plain.keys() == cached.keys()
    for k in plain:
        torch.testing.assert_close(cached[k], plain[k], atol=1e-6, rtol=0, msg=k)
    # not vacuous: a cache holding other features trains other weights
    other = tmp_path / "other"
    _write_cache(other, _cfg(tmp_path, "x"), transform=lambda e: e.flip(-1))
    moved = _weights(train_local(_cfg(tmp_path, "other", f"task.feature_cache={other}"), str(tmp_path / "other_run")))
    assert any(not torch.allclose(moved[k], plain[k], atol=1e-6) for k in plain)


def test_a_missing_or_mismatched_image_is_a_typed_error_naming_it(tmp_path):
    """Bugs caught: a bare KeyError (or a silent fallback to SAM) for an image the cache lacks, and a cache
    of another SAM (another embedding shape) failing deep inside the decoder."""
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, "x")
    missing = _write_cache(tmp_path / "partial", cfg, skip=None)[1]
    _write_cache(tmp_path / "partial2", cfg, skip=missing)
    with pytest.raises(DataFormatError, match=missing):
        train_local(_cfg(tmp_path, "m", f"task.feature_cache={tmp_path / 'partial2'}"), str(tmp_path / "m"))
    _write_cache(tmp_path / "small", cfg, transform=lambda e: e[:, :-1, :-1].contiguous())
    with pytest.raises(DataFormatError, match="embedding"):
        train_local(_cfg(tmp_path, "s", f"task.feature_cache={tmp_path / 'small'}"), str(tmp_path / "s"))


def test_pixel_augmentation_with_a_feature_cache_is_refused(tmp_path):
    """Bug caught: training on cached embeddings of the unaugmented image while the regions are jittered or
    flipped (boxes and features would disagree)."""
    with pytest.raises(ConfigError, match="augmentation"):
        _cfg(tmp_path, "x", f"task.feature_cache={tmp_path}", "task.augment.hflip=0.5")
