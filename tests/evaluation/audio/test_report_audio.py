"""The report of an audio dataset: its spectrogram grid, event statistics and class balance as
pictures, and inline players whose base64 WAVs decode to the dataset's own samples; summary.md
names the clips it cannot play."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
import soundfile as sf

import augment.core.shards as shards
from augment.audio.world import SAMPLE_RATE
from augment.config.audio import AudioJob
from evaluation.audio.pictures import event_players, spectrogram_grid
from evaluation.figures import COLUMNS
from evaluation.report import Section, write_report


class Media(HTMLParser):
    """The src of every <img> and <audio>, and the <h3> headings."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images, self.audio, self.headings, self._h3 = [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "audio":
            assert "controls" in attrs
            self.audio.append(attrs["src"])
        self._h3 = tag == "h3"

    def handle_data(self, data):
        if self._h3:
            self.headings.append(data)
            self._h3 = False


def wav_of(src: str) -> bytes:
    prefix = "data:audio/wav;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    job = AudioJob.model_validate(dict(
        name="tones", num_samples=6, shard_size=6, seed=2, model={"backend": "tones-world"},
        verify={"enabled": False},
        soundscape={"duration": 2.0, "classes": ["beep", "click_train"], "events_per_scape": (1, 3)}))
    root, _ = shards.generate_dataset(job, out)
    metrics = pd.DataFrame([{"dataset": "tones", "reference": "", "metric": "fad", "value": 1.5,
                             "ci_low": 1.0, "ci_high": 2.0, "n": 6, "extractor": "tones-classifier",
                             "group": "all", "details": ""}], columns=COLUMNS)
    sound = event_players(root, 1)[0]
    sections = [Section("Closest pairs <audio>", images=[sound], columns=2)]
    paths = write_report(out / "report", metrics, [root], sections=sections, samples_per_class=2)
    media = Media()
    html = paths["html"].read_text()
    media.feed(html)
    return {"root": root, "html": html, "media": media, "summary": paths["summary"].read_text()}


def test_the_html_shows_the_spectrogram_grid_and_statistics(report):
    grid = base64.b64encode(spectrogram_grid(report["root"], 2)).decode("ascii")
    assert f"data:image/png;base64,{grid}" in report["media"].images
    assert "Samples and class balance" in report["media"].headings
    assert "event duration" not in report["html"]  # plots are pictures, not text
    assert "kept soundscapes per class (log-mel" in report["html"]
    assert "events of the 6 kept soundscapes" in report["html"]


def test_players_are_wavs_of_the_datasets_own_samples(report):
    players = event_players(report["root"], 2)
    # the dataset's players, then the section's; each under its spectrogram
    assert len(report["media"].audio) == len(players) + 1
    assert len(report["media"].images) == 3 + len(players) + 1 + 1  # + the fad chart
    assert "Listen: samples per class" in report["media"].headings
    for src, player in zip(report["media"].audio, players):
        data = wav_of(src)
        assert data == player.audio  # samples checked against the files in test_pictures_audio
        wave, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert rate == SAMPLE_RATE and len(wave) > 0.2 * SAMPLE_RATE


def test_summary_names_the_clips_it_cannot_play(report):
    players = event_players(report["root"], 2)
    assert f"{len(players)} audio player(s) in report.html" in report["summary"]
    files = [re.search(r"audio/\S+\.wav", p.caption).group() for p in players]
    assert all(f in report["summary"] for f in files)
    assert "(1 figure(s), 1 with an audio player, in report.html)" in report["summary"]
    assert "Closest pairs &lt;audio&gt;" in report["summary"]
