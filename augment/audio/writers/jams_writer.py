"""JAMS annotations (Humphrey et al. 2014) in Scaper's namespace, one file per kept soundscape
(``annotations/jams/<stem>.jams``), so Scaper users can read how each soundscape was made: the
background and every event (label, onset, duration, SNR, pitch band, clip seed, gain) as
``scaper`` observations, the whole soundscape condition in the annotation's sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import jams
import pandas as pd

from augment.audio.dataset import audio_rows, events_of
from augment.audio.soundscape import Soundscape
from augment.core.io import atomic_write_text


def soundscape_jams(scape: Soundscape, events: list[dict], source: str) -> jams.JAMS:
    """The JAMS of one soundscape (``events``: its manifest records, in onset order)."""
    doc = jams.JAMS()
    doc.file_metadata.duration = scape.duration
    ann = jams.Annotation(namespace="scaper", time=0, duration=scape.duration)
    ann.append(time=0.0, duration=scape.duration, confidence=1.0, value={
        "label": scape.background, "source_file": "", "source_time": 0.0, "event_time": 0.0,
        "event_duration": scape.duration, "snr": 0.0, "time_stretch": None, "pitch_shift": None,
        "role": "background"})
    for event in events:
        ann.append(time=event["onset"], duration=event["offset"] - event["onset"],
                   confidence=1.0, value={
                       "label": event["category"], "source_file": "", "source_time": 0.0,
                       "event_time": event["onset"], "event_duration": event["offset"] - event["onset"],
                       "snr": event["snr_db"], "time_stretch": None, "pitch_shift": None,
                       "role": "foreground"})
    ann.annotation_metadata.annotation_tools = "synthmill"
    ann.sandbox.synthmill = {"soundscape": json.loads(scape.to_json()), "events": events,
                             "audio": source}
    doc.annotations.append(ann)
    return doc


def write_jams(root: str | Path, manifest: pd.DataFrame, categories: list[str],
               labels: str = "events") -> Path:
    """Write one JAMS file per kept, ok soundscape; returns the folder."""
    folder = Path(root) / "annotations" / "jams"
    for row in audio_rows(manifest):
        doc = soundscape_jams(Soundscape.from_json(row["layout"]), events_of(row), row["audio"])
        atomic_write_text(folder / f"{Path(row['audio']).stem}.jams", doc.dumps(indent=1))
    return folder
