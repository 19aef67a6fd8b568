"""Soundscapes: exact strong labels by construction, checked from the audio itself and by a DCASE
evaluation peer (sed_eval); mixing never clips; frame maps, JAMS and the Dataset agree with
events.tsv; same seed same bytes; a killed run resumes to the same dataset."""

from __future__ import annotations

import io
import json

import dcase_util
import jams
import numpy as np
import pandas as pd
import pytest
import sed_eval
import soundfile as sf

import augment.core.shards as shards
from augment.audio.backends.tones_world import TonesWorldBackend
from augment.audio.dataset import AudioDataset
from augment.audio.mixing import PEAK, mix
from augment.audio.soundscape import Event, Soundscape, sample_soundscape
from augment.audio.world import CLASSES, PITCH_BANDS, SAMPLE_RATE
from augment.config.audio import AudioJob, AudioSamplerSpec, SoundscapeSpec
from augment.core.records import replay

HOP = 256 / SAMPLE_RATE  # one STFT hop of the tones world's spectrograms


def world_job(**kw) -> AudioJob:
    base = dict(name="scapes", num_samples=8, shard_size=3, seed=4,
                model={"backend": "tones-world"}, verify={"enabled": False},
                soundscape={"duration": 3.0, "events_per_scape": (1, 4), "max_polyphony": 2})
    return AudioJob.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    job = world_job()
    root, summary = shards.generate_dataset(job, tmp_path_factory.mktemp("out"))
    return job, root, pd.read_parquet(root / "manifest.parquet")


def events_table(root) -> pd.DataFrame:
    return pd.read_csv(root / "annotations" / "events.tsv", sep="\t")


def test_sampling_is_deterministic_on_the_sample_grid_and_respects_the_spec():
    spec = SoundscapeSpec(duration=5.0, events_per_scape=(2, 6), max_polyphony=2,
                          event_duration=(0.3, 1.2), class_frequencies={"beep": 3, "am_tone": 1},
                          classes=["beep", "am_tone"], pitch_unspecified=0.5)
    scapes = [sample_soundscape(spec, 1, i) for i in range(60)]
    assert scapes == [sample_soundscape(spec, 1, i) for i in range(60)]
    for scape in scapes:
        assert Soundscape.from_json(scape.to_json()) == scape
        for e in scape.events:
            assert 0.3 - 1e-9 <= e.duration <= 1.2 + 1e-9 and 0 <= e.onset and e.offset <= 5.0
            for t in (e.onset, e.duration):
                assert abs(t * SAMPLE_RATE - round(t * SAMPLE_RATE)) < 1e-6
            if e.pitch is not None:
                lo, hi = PITCH_BANDS[e.pitch]
                assert lo <= e.frequency <= hi
        instants = sorted({e.onset for e in scape.events})
        assert all(sum(e.onset <= t < e.offset for e in scape.events) <= 2 for t in instants)
    labels = [e.label for s in scapes for e in s.events]
    assert 0.6 < labels.count("beep") / len(labels) < 0.9
    assert any(e.pitch is None for s in scapes for e in s.events)


def test_every_label_lies_where_the_energy_of_its_event_is():
    scape = Soundscape(3.0, SAMPLE_RATE, "pink", -60.0, 5, (
        Event("beep", "mid", 880.0, 0.5, 0.7, 30.0, 1),
        Event("noise_burst", "high", 2500.0, 1.6, 1.2, 30.0, 2)))
    clips = TonesWorldBackend().render(list(scape.events), AudioSamplerSpec(), [0, 0])
    wave, gains, scale = mix(scape, clips)
    background, _, _ = mix(Soundscape(3.0, SAMPLE_RATE, "pink", -60.0, 5, ()), clips[:0])
    events_only = wave - background * scale
    active = np.zeros(len(wave), bool)
    for e in scape.events:
        active[round(e.onset * SAMPLE_RATE):round(e.offset * SAMPLE_RATE)] = True
    assert np.abs(events_only[~active]).max() < 1e-6  # nothing outside the labels
    # from the audio alone: the short-time energy envelope rises and falls within one hop
    hop = int(HOP * SAMPLE_RATE)
    energy = np.convolve(wave.astype(np.float64) ** 2, np.ones(hop) / hop, mode="same")
    loud = energy > 10 * np.percentile(energy, 10)  # 10x (10 dB) over the background
    edges = np.flatnonzero(np.diff(loud.astype(int)))
    expected = [round(t * SAMPLE_RATE) for e in scape.events for t in (e.onset, e.offset)]
    assert len(edges) == len(expected)
    assert np.abs(edges - np.asarray(expected)).max() <= hop


def test_mixing_never_clips_and_keeps_every_snr():
    loud = tuple(Event("click_train", "high", 3000.0, 0.1 * k, 0.8, 40.0, k) for k in range(3))
    scape = Soundscape(2.0, SAMPLE_RATE, "brown", -10.0, 3, loud)
    clips = TonesWorldBackend().render(list(loud), AudioSamplerSpec(), [0, 0, 0])
    wave, gains, scale = mix(scape, clips)
    assert np.abs(wave).max() <= PEAK + 1e-6 and scale < 1.0
    assert all(g > 0 for g in gains)


def test_events_tsv_lies_inside_each_file_and_matches_the_manifest(made):
    _, root, manifest = made
    table = events_table(root)
    durations = pd.read_csv(root / "annotations" / "durations.tsv", sep="\t").set_index("filename")
    kept = manifest[manifest["kept"]]
    assert set(table["filename"]) <= {f"{i:06d}.wav" for i in kept["id"]}
    for row in table.itertuples():
        info = sf.info(root / "audio" / row.filename)
        assert 0 <= row.onset < row.offset <= info.duration + 1e-9
        assert durations.loc[row.filename, "duration"] == pytest.approx(info.duration)
        assert row.event_label in CLASSES
    assert len(table) == sum(len(json.loads(t)) for t in kept["instances"])


def test_frame_maps_equal_events_tsv(made):
    job, root, manifest = made
    hop = job.soundscape.frame_hop
    table = events_table(root)
    for row in manifest.itertuples():
        frames = np.load(root / row.frames)
        expected = np.zeros_like(frames)
        for event in table[table.filename == f"{row.id:06d}.wav"].itertuples():
            first = int(np.floor(event.onset / hop + 1e-9))
            last = int(np.ceil(event.offset / hop - 1e-9))
            expected[first:last, CLASSES.index(event.event_label)] = 1
        assert frames.shape == (int(np.ceil(job.soundscape.duration / hop)), len(CLASSES))
        np.testing.assert_array_equal(frames, expected)


def test_a_dcase_peer_scores_the_labels_against_themselves_perfectly(made):
    _, root, _ = made
    rows = events_table(root).to_dict("records")
    shifted = [{**r, "onset": r["onset"] + 0.5, "offset": r["offset"] + 0.5} for r in rows]

    def f1(estimated):
        metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=list(CLASSES),
                                                        t_collar=0.2)
        for name in {r["filename"] for r in rows}:
            metric.evaluate(
                reference_event_list=dcase_util.containers.MetaDataContainer(
                    [r for r in rows if r["filename"] == name]),
                estimated_event_list=dcase_util.containers.MetaDataContainer(
                    [r for r in estimated if r["filename"] == name]))
        return metric.results_overall_metrics()["f_measure"]["f_measure"]

    assert f1(rows) == 1.0
    assert f1(shifted) < 0.5


def test_jams_files_are_valid_and_say_what_the_tsv_says(made):
    _, root, _ = made
    table = events_table(root)
    for path in sorted((root / "annotations" / "jams").glob("*.jams")):
        doc = jams.load(str(path))
        doc.validate()
        observations = doc.annotations[0].data
        assert observations[0].value["role"] == "background"
        foreground = [(o.time, o.time + o.duration, o.value["label"]) for o in observations[1:]]
        rows = table[table.filename == f"{path.stem}.wav"]
        np.testing.assert_allclose([f[:2] for f in foreground], rows[["onset", "offset"]],
                                   atol=1e-9)
        assert [f[2] for f in foreground] == list(rows["event_label"])


def test_the_dataset_reads_waveforms_events_and_frames(made):
    _, root, _ = made
    ds = AudioDataset(root)
    table = events_table(root)
    item = ds[0]
    assert item["waveform"].shape == (1, 3 * SAMPLE_RATE) and item["sample_rate"] == SAMPLE_RATE
    rows = table[table.filename == f"{item['id']:06d}.wav"]
    np.testing.assert_allclose(item["events"].numpy(), rows[["onset", "offset"]], atol=1e-6)
    assert [CLASSES[k - 1] for k in item["labels"]] == list(rows["event_label"])
    batch = AudioDataset.collate_fn([ds[0], ds[1]])
    assert batch["waveform"].shape == (2, 1, 3 * SAMPLE_RATE) and batch["frames"].shape[0] == 2


def test_same_seed_same_bytes_and_replay_remakes_a_soundscape(made, tmp_path):
    job, root, manifest = made
    again, _ = shards.generate_dataset(job, tmp_path)
    for row in manifest.itertuples():
        assert (root / row.audio).read_bytes() == (again / row.audio).read_bytes()
    row = manifest.iloc[2].to_dict()
    stored, _ = sf.read(io.BytesIO((root / row["audio"]).read_bytes()), dtype="int16")
    np.testing.assert_array_equal(replay(row), stored)


def test_a_killed_run_resumes_to_the_same_dataset(made, tmp_path, monkeypatch):
    job, root, manifest = made
    real, calls = shards.generate_shard, []

    def dies_after_one_shard(*args, **kw):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(shards, "generate_shard", dies_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        shards.generate_dataset(job, tmp_path)
    monkeypatch.setattr(shards, "generate_shard", real)
    resumed, _ = shards.generate_dataset(job, tmp_path)
    columns = [c for c in manifest.columns if c not in ("seconds", "model")]
    pd.testing.assert_frame_equal(manifest[columns],
                                  pd.read_parquet(resumed / "manifest.parquet")[columns])
    assert events_table(root).equals(events_table(resumed))


def test_bad_soundscape_settings_name_the_field():
    from augment.config.base import ConfigError, validate

    with pytest.raises(ConfigError, match=r"soundscape.classes: .*unknown class \['whistle'\]"):
        validate(AudioJob, {"soundscape": {"classes": ["whistle"]}}, "job")
    with pytest.raises(ConfigError, match="event_duration must lie within"):
        validate(AudioJob, {"soundscape": {"duration": 1.0, "event_duration": (0.5, 1.5)}}, "job")
    with pytest.raises(ConfigError, match=r"model: unknown backend 'shapes-tiny'; allowed"):
        validate(AudioJob, {"model": {"backend": "shapes-tiny"}}, "job")
