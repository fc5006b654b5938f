"""The one config convention (`regionlib.config`) and the training job built with it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from regionlib.config import (Settings, add_options, apply_sets, build, describe, from_args, from_mapping, load_yaml,
                              setting, to_dict)
from regionlib.errors import ConfigError
from regionlib.training.config import TrainJob, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "ray_jobs" / "configs"


@dataclass(frozen=True)
class Inner(Settings):
    size: int = setting(4, min=1)
    rate: float = setting(0.5, gt=0, max=1)
    mode: str = setting("a", choices=("a", "b"))
    pair: tuple[float, float] = (1.0, 2.0)
    items: list[dict] | None = None


@dataclass(frozen=True)
class Outer(Settings):
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


@pytest.mark.parametrize("sets, message", [
    (["inner.sise=2"], "inner.sise: unknown setting; did you mean 'size'?"),
    (["iner.size=2"], "iner: unknown setting; did you mean 'inner'?"),
    (["inner.size=0"], "inner.size: must be >= 1, got 0"),
    (["inner.size=2.5"], "inner.size: expected an integer, got 2.5"),
    (["inner.size='2'"], "inner.size: expected an integer, got '2'"),
    (["inner.size=true"], "inner.size: expected an integer, got True"),
    (["inner.rate=0"], "inner.rate: must be > 0, got 0.0"),
    (["inner.rate=1.5"], "inner.rate: must be <= 1, got 1.5"),
    (["inner.rate=.nan"], "inner.rate: expected a finite number, got nan"),
    (["inner.rate=fast"], "inner.rate: expected a finite number, got 'fast'"),
    (["inner.mode=c"], "inner.mode: must be one of ['a', 'b'], got 'c'"),
    (["inner.pair=[1]"], "inner.pair: expected 2 values, got 1"),
    (["inner.items=3"], "inner.items: expected a list, got 3"),
    (["inner.items.0.x=1"], "inner.items is not set, so it has no item 0"),
    (["inner.items=[{x: 1}]", "inner.items.3.x=1"], "'3' is not an index of a list of 1 items"),
    (["inner=3"], "inner: expected a mapping of Inner settings, got 3"),
    (["path=[1]"], "path: expected a string, got [1]"),
    (["inner.size"], "--set expects key.sub=value"),
    (["inner.size=[1"], "the value is not valid YAML"),
])
def test_every_wrong_setting_is_a_config_error_naming_it(sets, message):
    """Bugs caught: a mistyped key silently ignored (``train.max_step``), a string or fraction where a count
    belongs accepted, an out-of-range value reaching the job."""
    with pytest.raises(ConfigError) as info:
        build(Outer, sets=sets)
    assert message in str(info.value)


def test_values_are_normalised_and_round_trip_through_json():
    cfg = build(Outer, sets=["inner.rate=1", "inner.pair=[3, 4]", "inner.items=[{x: 1}]", "inner.items.0.x=2"])
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float) and cfg.inner.pair == (3.0, 4.0)
    assert cfg.inner.items == [{"x": 2}]
    assert from_mapping(Outer, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_direct_construction_and_replace_are_checked_the_same_way():
    with pytest.raises(ConfigError, match="Inner.size: must be >= 1"):
        Inner(size=0)
    with pytest.raises(ConfigError, match="Inner.mode"):
        dataclasses.replace(Inner(), mode="z")


def test_yaml_files_that_are_not_settings(tmp_path):
    """Bugs caught: a YAML list, a Python tag or a parse error read as empty settings (the defaults run)."""
    cases = {"list.yaml": "- a\n- b\n", "bad.yaml": "a: [1\n", "tag.yaml": "a: !!python/object:os.system {}\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=name):
            load_yaml(tmp_path / name)
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_yaml(tmp_path)
    assert apply_sets({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_describe_lists_every_setting_with_its_default():
    text = describe(TrainJob)
    for key in ("train.max_steps = 20", "run.precision = 'fp32'", "recipe.lr", "task.preset = 'tiny-dam'",
                "task.augment.hflip", "resume_from = None"):
        assert key in text, key


@pytest.mark.parametrize("sets, message", [
    (["train.max_step=2"], "train.max_step: unknown setting; did you mean 'max_steps'?"),
    (["run.worker=2"], "run.worker: unknown setting; did you mean 'workers'?"),
    (["train.batchsize=2"], "did you mean 'batch_size'?"),
    (["recipe.lrr=0.1"], "recipe.lrr: unknown setting; did you mean 'lr'?"),
    (["train.max_steps=-3"], "train.max_steps: must be >= 1"),
    (["train.batch_size=0"], "train.batch_size: must be >= 1"),
    (["train.checkpoint_every=0"], "train.checkpoint_every: must be >= 1"),
    (["recipe.lr=fast"], "recipe.lr: expected a finite number"),
    (["recipe.lr=-1e-4"], "recipe.lr: must be > 0"),
    (["run.precision=fp16"], "run.precision: must be one of ['fp32', 'bf16']"),
    (["recipe.name=sac"], "recipe.name: must be one of ['dam', 'sca'], got 'sac'; did you mean 'sca'?"),
    (["task.n_image=3"], "task.n_image: unknown setting; did you mean 'n_images'?"),
    (["task.augment.hflip=2"], "task.augment.hflip: must be <= 1"),
    (["task.augment.lsj.scale_range=[2, 1]"], "scale_range: must be 0 < low <= high"),
])
def test_the_training_job_refuses_what_it_does_not_know(sets, message):
    """The settings the issue names (issue 21: accepted and ignored, or failing inside the Ray workers)."""
    with pytest.raises(ConfigError) as info:
        load_config(None, sets)
    assert message in str(info.value)


def test_a_recipe_name_brings_its_values_and_keys_override_them():
    """Also: ``3e-4`` (a string to YAML 1.1) is the number a user means."""
    sca = load_config(None, ["recipe.name=sca", "recipe.lr=3e-4"]).recipe
    assert (sca.lr, sca.warmup_steps, sca.label_smoothing, sca.lr_cap) == (3e-4, 200, 0.1, 4e-4)
    assert load_config(None).recipe.warmup_ratio == 0.03  # the default recipe is DAM's


def test_the_paper_configs_take_their_documented_overrides():
    """Bug caught: ``--set task.sources.0.path=...`` (documented in dam_paper.yaml) failing with "'sources' is
    not a mapping"."""
    cfg = load_config(CONFIGS / "dam_paper.yaml", ["task.sources.0.path=/data/mine", "task.overrides.lm__path=/l"])
    assert cfg.task.sources[0]["path"] == "/data/mine" and cfg.task.sources[1]["reader"] == "refcoco"
    assert cfg.task.overrides["lm__path"] == "/l" and cfg.task.augment.prompt_aug
    for name in ("dam_tiny", "sca_tiny", "sca_paper"):
        load_config(CONFIGS / f"{name}.yaml")


def test_the_train_job_stops_before_ray_starts(monkeypatch):
    """Bug caught: a bad setting found only inside the Ray workers, after Ray started (and three attempts)."""
    import importlib.util

    import regionlib.runtime.distributed as distributed

    started = []
    monkeypatch.setattr(distributed, "init_ray", lambda *a, **k: started.append(1))
    spec = importlib.util.spec_from_file_location("train_job", CONFIGS.parent / "train.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        job.main(["--set", "train.max_step=2"])
    assert not started


@dataclass(frozen=True)
class Job(Settings):
    path: str = setting(exists="file", help="an input file")
    count: int = setting(2, min=1, help="100% of them")
    rate: float | None = setting(None, gt=0)
    names: tuple[str, ...] = setting(("a",), choices=("a", "b"))
    flag: bool = False
    word: str = "x"


def job_options(argv, defaults=None) -> Job:
    parser = argparse.ArgumentParser()
    add_options(parser, Job)
    return from_args(Job, parser.parse_args(argv), defaults=defaults)


def test_argparse_options_of_a_settings_class(tmp_path, capsys):
    """One option per setting, read by the setting's type (a string kept as written: ``--word 1.0`` is not a
    number), lists by spaces or commas, bools as --flag / --no-flag; options not given take ``defaults`` (a
    preset), then the class defaults; ``--help`` shows each setting's range and default."""
    f = tmp_path / "in.json"
    f.write_text("{}")
    job = job_options(["--path", str(f), "--count", "3", "--rate", "1e-3", "--names", "a,b", "b", "--flag",
                       "--word", "1.0"])
    assert job == Job(path=str(f), count=3, rate=1e-3, names=("a", "b", "b"), flag=True, word="1.0")
    preset = job_options(["--path", str(f), "--no-flag"], defaults={"count": 5, "flag": True})
    assert (preset.count, preset.flag, preset.names) == (5, False, ("a",))
    with pytest.raises(SystemExit):
        job_options(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--count N 100% of them [int; min 1; default 2]" in text
    assert "--path FILE an input file [str; an existing file; required]" in text
    with pytest.raises(SystemExit):  # a required option: argparse's refusal
        job_options(["--count", "3"])
    with pytest.raises(TypeError, match="section"):
        add_options(argparse.ArgumentParser(), Outer)


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count: must be >= 1, got 0"),
    (["--count", "2.5"], "--count: expected an integer, got 2.5"),
    (["--count", "many"], "--count: expected an integer, got 'many'"),
    (["--rate", "0"], "--rate: must be > 0, got 0.0"),
    (["--rate", "[1"], "--rate: expected a finite number, got '[1'"),
    (["--names", "a,c"], "--names.1: must be one of ['a', 'b'], got 'c'"),
])
def test_a_wrong_option_is_a_config_error_naming_the_option(tmp_path, argv, message):
    """Bug caught: argparse's ``type=int`` accepting ``--count 0`` (or a job's own check naming no option)."""
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(ConfigError) as info:
        job_options(["--path", str(tmp_path / "in.json"), *argv])
    assert str(info.value).startswith(message)


def test_input_paths_are_checked_when_the_settings_are_made(tmp_path):
    """Bugs caught: a missing input file, or a directory where a file belongs, found only when the job reads
    it (after Ray started); a path check on the class holds for a dataclass built in Python too."""
    with pytest.raises(ConfigError, match="--path: .*missing.json does not exist"):
        job_options(["--path", str(tmp_path / "missing.json")])
    with pytest.raises(ConfigError, match="Job.path: .* is a directory, not a file"):
        Job(path=str(tmp_path))
    with pytest.raises(TypeError, match="exists"):
        setting(None, exists="folder")
