"""The run config: a list of jobs of any modality, with roles, ``extends``, audits; errors name the
job and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from augment.config.base import ConfigError, load_config, validate
from augment.config.audio import AudioJob
from augment.config.image import ImageJob
from flows.cli_common import apply_overrides
from flows.config import RunConfig

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path, RunConfig)
    assert config.jobs and all(isinstance(job, (ImageJob, AudioJob)) for job in config.jobs)
    assert {job.modality for job in config.jobs} <= {"image", "audio"}


def test_extends_merges_over_an_earlier_job_and_roles_are_kept():
    config = validate(RunConfig, {"jobs": [
        {"name": "a", "sampler": {"steps": 7, "guidance": 2.0}, "layout": {"height": 32}},
        {"name": "b", "extends": "a", "sampler": {"guidance": 1.0}},
        {"name": "r", "role": "reference", "model": {"backend": "shapes-world"}},
        {"name": "c", "role": "audit", "extends": "a", "layout": {"colour_unspecified": 1.0}}],
        "audits": [{"dataset": "c"}]}, "run")
    a, b, r, c = config.jobs
    assert (b.sampler.steps, b.sampler.guidance, b.layout.height) == (7, 1.0, 32)
    assert c.layout.height == 32 and c.layout.colour_unspecified == 1.0
    assert [j.name for j in config.named("compare")] == ["a", "b"]
    assert config.named("reference", "image") == [r] and config.role(c) == "audit"
    again = RunConfig.model_validate(config.model_dump(mode="json"))
    assert again == config


@pytest.mark.parametrize("jobs, audits, message", [
    ([{"name": "a"}, {"name": "a"}], [], "dataset names must differ"),
    ([{"name": "b", "extends": "a"}], [], "jobs.0.extends: no earlier job is named 'a'"),
    ([{"name": "a"}], [{"dataset": "a"}], "audits.0.dataset: 'a' is not a job with role: audit"),
    ([{"name": "a", "role": "audit", "modality": "audio"}], [{"dataset": "a"}],
     "audits.0.preset: 'shapes-colour' audits image datasets, not audio ones like a"),
    ([{"name": "a", "role": "audit"}], [{"dataset": "a", "preset": "tones-pitch"}],
     "audits.0.preset: 'tones-pitch' audits audio datasets, not image ones like a"),
    ([{"name": "a", "role": "reference"}, {"name": "b", "role": "reference"}], [],
     "has 2 reference jobs"),
    ([{"name": "a", "modality": "video"}], [], "jobs.0: unknown modality 'video'"),
    ([{"name": "a", "role": "judge"}], [], "roles.a: Input should be 'compare', 'reference'"),
    ([{"name": "a", "sampler": {"steps": 0}}], [], r"jobs.0.sampler.steps: Input should be"),
])
def test_inconsistent_runs_are_refused_naming_what(jobs, audits, message):
    with pytest.raises(ConfigError, match=message):
        validate(RunConfig, {"jobs": jobs, "audits": audits}, "run")


def test_overrides_reach_a_job_by_index_or_name_and_name_the_source():
    config = load_config(CONFIGS[[p.name for p in CONFIGS].index("demo.yaml")], RunConfig)
    changed = apply_overrides(config, ["jobs.demo-shapes.num_samples=8", "jobs.1.sampler.steps=3"],
                              "--set")
    assert changed.jobs[0].num_samples == 8 and changed.jobs[1].sampler.steps == 3
    with pytest.raises(ConfigError, match=r"--set: jobs.0.num_samples: Input should be greater"):
        apply_overrides(config, ["jobs.0.num_samples=-5"], "--set")
    n = len(config.jobs)
    with pytest.raises(ConfigError, match=rf"jobs.nope is a list of {n}; give an index \(0..{n - 1}\)"):
        apply_overrides(config, ["jobs.nope.seed=1"], "--set")


TRAINING_RECIPES = sorted(CONFIGS[0].parent.joinpath("train").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=lambda p: p.name)
def test_shipped_training_recipes_are_valid(path):
    from flows.train_cli import TRAINERS

    trainer = next(t for t in TRAINERS if path.name.startswith(t.out.split("/")[-1]))
    recipe = load_config(path, trainer.spec)
    assert recipe.model_fields_set  # it says something beyond the defaults


@pytest.mark.parametrize("schedule, message", [
    ({}, "run.yaml: schedule: give exactly one of cron and interval"),
    ({"cron": "0 3 * * *", "interval": 60}, "give exactly one of cron and interval"),
    ({"cron": "0 25 * * *"}, "schedule: cron / timezone: Invalid cron string"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "Invalid timezone"),
    ({"interval": 0}, "schedule.interval: Input should be greater than 0"),
    ({"interval": 60, "jobs": ["nope"]}, "schedule.jobs: no job is named ['nope']"),
    ({"interval": 60, "flow": "pipeline"}, "schedule.flow: pipeline needs an evaluate: section"),
])
def test_a_bad_schedule_is_refused_naming_its_field(schedule, message):
    with pytest.raises(ConfigError) as err:
        validate(RunConfig, {"jobs": [{"name": "a"}], "schedule": schedule}, "run.yaml")
    assert message in str(err.value)


def test_a_schedule_becomes_a_deployment_of_its_flow_with_the_whole_config():
    from flows.schedule import deployment

    config = validate(RunConfig, {"jobs": [{"name": "a"}], "evaluate": {},
                                  "schedule": {"cron": "30 2 * * 1", "timezone": "Europe/Paris",
                                               "flow": "pipeline"}}, "run.yaml")
    made = deployment(config, Path("configs/weekly.yaml"))
    assert made.name == "weekly" and made.flow_name == "scheduled-pipeline"
    assert made.parameters["config"] == config.model_dump(mode="json")
    assert RunConfig.model_validate(made.parameters["config"]) == config  # round trip
    (schedule,) = made.schedules
    assert schedule.schedule.cron == "30 2 * * 1" and schedule.schedule.timezone == "Europe/Paris"
    assert made.concurrency_limit == 1
