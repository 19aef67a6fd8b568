"""Small real tones-world soundscape datasets shared by the audio evaluation tests (procedural,
so their labels are exact; a few seconds to make)."""

from __future__ import annotations

import pytest

import augment.core.shards as shards
from augment.config.audio import AudioJob
from evaluation.config import EvalSpec


def tones_world_dataset(out, name: str, n: int, seed: int, **soundscape):
    job = AudioJob.model_validate(dict(
        name=name, num_samples=n, shard_size=n, seed=seed, model={"backend": "tones-world"},
        verify={"enabled": False},
        soundscape={"duration": 4.0, "events_per_scape": (1, 3), "max_polyphony": 1,
                    **soundscape}))
    return shards.generate_dataset(job, out)[0]


@pytest.fixture(scope="session")
def tones_scapes(tmp_path_factory):
    """24 real soundscapes of 4 s, one event at a time (the evaluated set)."""
    return tones_world_dataset(tmp_path_factory.mktemp("scapes"), "scapes", 24, seed=1)


@pytest.fixture(scope="session")
def tones_reference(tmp_path_factory):
    """24 other real soundscapes of the same settings (the reference)."""
    return tones_world_dataset(tmp_path_factory.mktemp("reference"), "reference", 24, seed=2)


@pytest.fixture
def audio_spec(tmp_path):
    """``audio_spec(**fields)``: a fast spec (few bootstrap rounds, small groups and KID subsets)
    with its cache in the test's folder."""

    def make(**kw) -> EvalSpec:
        base = dict(cache_dir=str(tmp_path / "cache"), bootstrap_rounds=20, kid_subset_size=16,
                    kid_subsets=20, min_group_size=4)
        return EvalSpec(**{**base, **kw})

    return make
