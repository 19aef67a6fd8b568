"""Report pictures of audio datasets (``evaluation.audio.pictures``) on a small real tones-world
set: event boxes where events.tsv puts them, mel rows where a sine's energy is, players holding
the file's own samples, event statistics equal to those computed from events.tsv."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

import augment.core.shards as shards
from augment.audio.dataset import SampleReadError
from augment.audio.soundscape import Soundscape
from augment.audio.world import PITCH_BANDS, SAMPLE_RATE
from augment.config.audio import AudioJob
from evaluation.audio.pictures import (CONTEXT_SECONDS, dataset_pictures, event_players,
                                       event_statistics, grid_soundscapes, mel_row,
                                       polyphony_time, spectrogram, spectrogram_figure,
                                       spectrogram_grid, spectrogram_png)


@pytest.fixture(scope="module")
def scapes(tmp_path_factory):
    """12 real soundscapes, up to 2 events at once, half the pitch bands left open; the verifier's
    bar is set so high that some soundscapes are dropped."""
    job = AudioJob.model_validate(dict(
        name="scapes", num_samples=12, shard_size=12, seed=3, model={"backend": "tones-world"},
        verify={"method": "classifier", "min_score": 0.99999},
        soundscape={"duration": 3.0, "classes": ["beep", "noise_burst", "chirp_up"],
                    "events_per_scape": (2, 4), "max_polyphony": 2, "pitch_unspecified": 0.5}))
    root, _ = shards.generate_dataset(job, tmp_path_factory.mktemp("out"))
    return root


def events_tsv(root) -> pd.DataFrame:
    return pd.read_csv(root / "annotations" / "events.tsv", sep="\t")


def test_a_sines_energy_lies_on_the_mel_row_of_its_frequency():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (300.0, 880.0, 2500.0, 5000.0):
        mel = spectrogram(0.5 * np.sin(2 * np.pi * hz * t))  # (64, T)
        assert abs(int(mel.mean(1).argmax()) - mel_row(hz)) <= 1.0


def test_grid_boxes_each_event_where_events_tsv_says(scapes):
    per_class = 2
    fig = spectrogram_figure(scapes, per_class=per_class)
    tsv = events_tsv(scapes)
    picked = grid_soundscapes(scapes, per_class=per_class)
    for r, (name, rows) in enumerate(picked.items()):
        for c, row in enumerate(rows):
            boxes = {p.get_gid(): p for p in fig.axes[r * per_class + c].patches}
            truth = tsv[tsv.filename == row["audio"].split("/")[-1]].sort_values("onset")
            events = json.loads(row["instances"])
            assert len(boxes) == len(truth) == len(events)
            for k, (onset, offset, event) in enumerate(zip(truth.onset, truth.offset, events)):
                box = boxes[f"{row['audio']}:{k}"]
                assert box.get_x() == pytest.approx(onset, abs=1e-6)
                assert box.get_x() + box.get_width() == pytest.approx(offset, abs=1e-6)
                # over its pitch band; the whole height when the band is unknown
                band = PITCH_BANDS.get(event["pitch"])
                y0, y1 = (mel_row(band[0]), mel_row(band[1])) if band else (-0.5, 63.5)
                assert box.get_y() == pytest.approx(y0, abs=1e-6)
                assert box.get_y() + box.get_height() == pytest.approx(y1, abs=1e-6)
                # the row's class stands out in yellow, the others are white
                white = tuple(box.get_edgecolor()[:3]) == (1.0, 1.0, 1.0)
                assert white == (event["category"] != name)


def test_grid_and_single_spectrogram_are_pngs(scapes, tmp_path):
    grid = Image.open(io.BytesIO(spectrogram_grid(scapes, per_class=1)))
    assert grid.format == "PNG" and min(grid.size) > 100
    one = Image.open(io.BytesIO(spectrogram_png(scapes / "audio" / "000000.wav", size=96)))
    assert one.format == "PNG" and max(one.size) == 96 and one.width > one.height
    (tmp_path / "bad.wav").write_bytes(b"RIFF not a wav")
    with pytest.raises(SampleReadError, match="bad.wav"):
        spectrogram_png(tmp_path / "bad.wav")


def test_players_hold_the_files_own_samples_around_an_event(scapes):
    players = event_players(scapes, per_class=1)
    tsv = events_tsv(scapes)
    picked = grid_soundscapes(scapes, per_class=1)
    assert len(players) == sum(len(rows) for rows in picked.values())
    for player, (name, rows) in zip(players, picked.items()):
        wave, rate = sf.read(io.BytesIO(player.audio), dtype="int16")
        assert rate == SAMPLE_RATE and sf.info(io.BytesIO(player.audio)).subtype == "PCM_16"
        audio = rows[0]["audio"]
        stored, _ = sf.read(scapes / audio, dtype="int16")
        event = tsv[(tsv.filename == audio.split("/")[-1]) & (tsv.event_label == name)].iloc[0]
        start = max(0, round((event.onset - CONTEXT_SECONDS) * SAMPLE_RATE))
        stop = min(len(stored), round((event.offset + CONTEXT_SECONDS) * SAMPLE_RATE))
        np.testing.assert_array_equal(wave, stored[start:stop])
        assert name in player.caption and audio in player.caption
        assert Image.open(io.BytesIO(player.png)).format == "PNG"


def test_polyphony_time_is_exact_on_a_known_layout():
    # 0-0.5: one; 0.5-1: two; 1-3: one (touching events do not overlap); 3-4: none
    time = polyphony_time([(0.0, 1.0), (0.5, 2.0), (2.0, 3.0)], 4.0)
    np.testing.assert_allclose(time, [1.0, 2.5, 0.5])
    np.testing.assert_allclose(polyphony_time([], 2.0), [2.0])


def test_event_statistics_equal_those_computed_from_events_tsv(scapes):
    stats = event_statistics(scapes)
    tsv = events_tsv(scapes)
    durations = pd.read_csv(scapes / "annotations" / "durations.tsv", sep="\t")
    assert stats.soundscapes == len(durations)
    assert dict(stats.kept) == tsv.event_label.value_counts().to_dict()
    for name, got in stats.durations.items():
        want = (tsv.offset - tsv.onset)[tsv.event_label == name]
        np.testing.assert_allclose(np.sort(got), np.sort(want), atol=1e-6)
    # polyphony on a 0.1 ms grid from the files' events
    hop = 1e-4
    counts = []
    for name, length in zip(durations.filename, durations.duration):
        t = (np.arange(int(round(length / hop))) + 0.5) * hop
        mine = tsv[tsv.filename == name]
        counts.append(((t[:, None] >= mine.onset.values) & (t[:, None] < mine.offset.values))
                      .sum(1))
    level = np.concatenate(counts)
    grid = np.bincount(level) / len(level)
    np.testing.assert_allclose(stats.polyphony, grid, atol=1e-3)
    assert len(stats.polyphony) == 3  # max_polyphony 2 was reached
    # SNRs as the conditions drew them; dropped soundscapes' events counted apart
    manifest = pd.read_parquet(scapes / "manifest.parquet")
    kept = manifest[manifest.kept]
    snrs = [e.snr_db for text in kept.sort_values("id").layout
            for e in Soundscape.from_json(text).events if e.label == "beep"]
    np.testing.assert_allclose(np.sort(stats.snr_db["beep"]), np.sort(snrs))
    dropped = manifest[~manifest.kept]
    assert len(dropped) > 0
    assert sum(stats.dropped.values()) == sum(len(json.loads(t)) for t in dropped.instances)


def test_dataset_pictures_draw_grid_statistics_balance_and_players(scapes):
    pictures, shown = dataset_pictures(scapes, per_class=2)
    stills = [p for p in pictures if p.audio is None]
    players = [p for p in pictures if p.audio is not None]
    assert len(stills) == 3 and "log-mel" in stills[0].caption
    assert len(players) == sum(len(r) for r in grid_soundscapes(scapes, 2).values())
    assert list(shown.columns) == ["id", "split", "caption"] and shown["id"].is_monotonic_increasing
    pictures, shown = dataset_pictures(scapes, per_class=0)
    assert shown is None and len(pictures) == 2 and all(p.audio is None for p in pictures)
