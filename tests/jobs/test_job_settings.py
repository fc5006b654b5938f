"""The jobs' settings (`regionlib.config`): a wrong value stops the driver before Ray or any work starts."""

import json

import pytest

from regionlib.errors import ConfigError


class RayStarted(Exception):
    """Raised by the recording `init_ray`: the job got as far as starting Ray."""


@pytest.fixture
def ray_starts(monkeypatch):
    """The calls to `regionlib.runtime.distributed.init_ray`; the first one stops the job (`RayStarted`)."""
    from regionlib.runtime import distributed

    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise RayStarted

    monkeypatch.setattr(distributed, "init_ray", record)
    return calls


@pytest.fixture
def preds(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps({"0": "a red circle"}))
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (["--regionworld", "0"], "--regionworld: must be >= 1, got 0"),
    (["--concurrency", "0"], "--concurrency: must be >= 1, got 0"),
    (["--concurrency", "2.5"], "--concurrency: expected an integer, got 2.5"),
    (["--max-retries", "-1"], "--max-retries: must be >= 0"),
    (["--timeout", "0"], "--timeout: must be > 0"),
    (["--backoff", "soon"], "--backoff: expected a finite number, got 'soon'"),
    (["--max-tokens", "0"], "--max-tokens: must be >= 1"),
    (["--chunk-size", "0"], "--chunk-size: must be >= 1"),
    (["--workers", "0"], "--workers: must be >= 1"),
    (["--world-seed", "-1"], "--world-seed: must be >= 0"),
    (["--tasks", "dlc,clare"], "--tasks.1: must be one of ['dlc', 'amber', 'clair'], got 'clare'; did you mean "
                               "'clair'?"),
    (["--judge", "opnai"], "did you mean 'openai'?"),
    (["--api-key-file", "{tmp}"], "--api-key-file: {tmp} is a directory, not a file"),
    (["--api-key-file", "{tmp}/judge.key"], "--api-key-file: {tmp}/judge.key does not exist"),
    (["--dlc-bench", "{tmp}/DLC-Bench"], "--dlc-bench: {tmp}/DLC-Bench does not exist"),
    (["--regionworld", "1", "--dlc-bench", "{tmp}"], "give one of --regionworld N or --dlc-bench DIR"),
])
def test_judge_eval_refuses_a_wrong_setting_before_ray_starts(ray_starts, preds, tmp_path, extra, message):
    """Bugs caught: ``--regionworld 0`` read as "no RegionWorld" and failing on a missing DLC-Bench; a zero or
    negative count, an unknown task or a missing key file found by the Ray actors (or never: an unknown task
    was scored as nothing)."""
    from ray_jobs import judge_eval

    base = ["--predictions", preds, "--out", str(tmp_path / "out")]
    if "--dlc-bench" not in extra and "--regionworld" not in extra:
        base += ["--regionworld", "1"]
    with pytest.raises(ConfigError) as info:
        judge_eval.main(base + [a.replace("{tmp}", str(tmp_path)) for a in extra])
    assert message.replace("{tmp}", str(tmp_path)) in str(info.value)
    assert not ray_starts and not (tmp_path / "out").exists()


def test_judge_eval_checks_its_input_files_and_starts_ray_with_valid_settings(ray_starts, preds, tmp_path):
    """Bug caught: a missing predictions file or a DLC-Bench path that is a file found after the benchmark
    was loaded; and the refusals above proven meaningful: valid settings do reach `init_ray`."""
    from ray_jobs import judge_eval

    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="--predictions: .*missing.json does not exist"):
        judge_eval.main(["--predictions", str(tmp_path / "missing.json"), "--regionworld", "1", *out])
    with pytest.raises(ConfigError, match="--dlc-bench: .*preds.json is not a directory"):
        judge_eval.main(["--predictions", preds, "--dlc-bench", preds, *out])
    assert not ray_starts
    with pytest.raises(RayStarted):
        judge_eval.main(["--predictions", preds, "--regionworld", "1", "--tasks", "dlc", "amber", "--address", "x:1",
                         *out])
    assert ray_starts == [(("x:1",), {})]
    s = judge_eval.parse_settings(["--predictions", preds, "--regionworld", "2", "--retry-unparsed", *out])
    assert (s.tasks, s.retry_unparsed, s.concurrency, s.timeout) == (("dlc", "amber", "clair"), True, 8, 60.0)


def test_judge_eval_help_lists_every_setting_with_its_default(capsys):
    from ray_jobs import judge_eval

    with pytest.raises(SystemExit):
        judge_eval.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--concurrency N requests in flight per endpoint [int; min 1; default 8]",
                   "--chunk-size N [int; min 1; default 64]", "--predictions FILE", "--retry-unparsed"):
        assert option in text, option


@pytest.mark.parametrize("extra, message", [
    (["--shard-size", "0"], "--shard-size: must be >= 1, got 0"),
    (["--actors", "0"], "--actors: must be >= 1, got 0"),
    (["--actors", "two"], "--actors: expected an integer, got 'two'"),
    (["--cpus-per-actor", "-0.5"], "--cpus-per-actor: must be >= 0"),
    (["--sam-preset", "vit-h"], "did you mean 'vit_h'?"),
    (["--sam-checkpoint", "{tmp}/sam.pth"], "--sam-checkpoint: {tmp}/sam.pth does not exist"),
])
def test_cache_features_refuses_a_wrong_setting_before_ray_starts(ray_starts, sample_images, tmp_path, extra,
                                                                  message):
    """Bugs caught: ``--shard-size 0`` or ``--actors 0`` failing inside Ray Data, a misspelt SAM preset or a
    missing checkpoint found by each actor as it builds SAM."""
    from ray_jobs import cache_features

    with pytest.raises(ConfigError) as info:
        cache_features.main(["--images", str(sample_images), "--out", str(tmp_path / "cache"),
                             *[a.replace("{tmp}", str(tmp_path)) for a in extra]])
    assert message.replace("{tmp}", str(tmp_path)) in str(info.value)
    assert not ray_starts and not (tmp_path / "cache").exists()


def test_cache_features_checks_its_image_directory_and_starts_ray_with_valid_settings(ray_starts, sample_images,
                                                                                      tmp_path):
    """Bug caught: a missing ``--images`` directory found by the image listing; valid settings reach `init_ray`."""
    from ray_jobs import cache_features

    with pytest.raises(ConfigError, match="--images: .*nowhere does not exist"):
        cache_features.main(["--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cache")])
    assert not ray_starts
    with pytest.raises(RayStarted):
        cache_features.main(["--images", str(sample_images), "--out", str(tmp_path / "cache"), "--gpus-per-actor", "0"])
    assert len(ray_starts) == 1


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps: must be >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size: must be >= 1"),
    (["--parallel", "1.5"], "--parallel: expected an integer, got 1.5"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--gate-lr", "fast"], "--gate-lr: expected a finite number, got 'fast'"),
    (["--seeds", "0,-1"], "--seeds: at least one, none negative"),
    (["--seeds", "0,one"], "--seeds.1: expected an integer, got 'one'"),
    (["--image-size", "32"], "--image-size: must be >= 64"),
    (["--n-boot", "0"], "--n-boot: must be >= 1"),
    (["--n-small", "13"], "n_small (13) is the first part of the train split: at most n_train (12)"),
])
def test_replicate_refuses_a_wrong_setting_before_ray_or_any_work(ray_starts, tmp_path, extra, message):
    """Bugs caught: a zero or negative budget, a negative seed or a fractional ``--parallel`` found in the
    training tasks after the data was generated and Ray started (a seed < 0: after the stage-1 models)."""
    from regionlib import replication

    with pytest.raises(ConfigError) as info:
        replication.main(["--quick", "--out", str(tmp_path / "run"), *extra])
    assert message in str(info.value)
    assert not ray_starts and not (tmp_path / "run").exists()


def test_replicate_presets_and_options_build_the_settings_and_valid_ones_start_ray(ray_starts, tmp_path):
    """Bug caught: an option given on the command line ignored over ``--quick`` / ``--study`` (or the other way
    round); the refusals above proven meaningful: valid settings do reach `init_ray`."""
    from regionlib import replication

    def settings(*argv):
        return replication.settings_from(replication.parse_args(list(argv)))

    assert settings() == replication.Settings() and settings("--quick") == replication.QUICK
    study = settings("--study", "--seeds", "3,4", "--lr", "1e-4", "--base", "none")
    assert (study.seeds, study.lr, study.base, study.steps) == ((3, 4), 1e-4, "none", replication.STUDY.steps)
    with pytest.raises(ConfigError, match="Settings.steps: must be >= 1"):
        replication.Settings(steps=0)  # built in Python: the same rules
    with pytest.raises(RayStarted):
        replication.main(["--quick", "--out", str(tmp_path / "run"), "--n-test", "1", "--n-unlabeled", "1"])
    assert len(ray_starts) == 1
