"""DCASE-style strong labels: ``annotations/events.tsv`` (filename, onset, offset, event_label, one
row per event of every kept soundscape, as in DCASE task 4) and ``annotations/durations.tsv``
(filename, duration). Filenames are the WAV names in ``audio/``; times in seconds, exact to the
sample (7 decimals). The files hold no timestamp: the same samples give the same bytes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from augment.audio.dataset import audio_rows, events_of
from augment.audio.soundscape import Soundscape
from augment.core.io import atomic_write_text

HEADER = "filename\tonset\toffset\tevent_label"


def seconds(x: float) -> str:
    """Seconds with 7 decimals (1/16000 s = 0.0000625), trailing zeros dropped."""
    text = f"{x:.7f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def write_events_tsv(root: str | Path, manifest: pd.DataFrame, categories: list[str],
                     labels: str = "events") -> Path:
    """Write the strong labels and durations of the kept, ok soundscapes; returns events.tsv."""
    root = Path(root)
    events, durations = [HEADER], ["filename\tduration"]
    for row in audio_rows(manifest):
        name = Path(row["audio"]).name
        for event in events_of(row):
            if event["category"] not in categories:
                raise ValueError(f"sample {row['id']}: event class {event['category']!r} is not "
                                 f"one of the categories {categories}")
            events.append(f"{name}\t{seconds(event['onset'])}\t{seconds(event['offset'])}\t"
                          f"{event['category']}")
        durations.append(f"{name}\t{seconds(Soundscape.from_json(row['layout']).duration)}")
    atomic_write_text(root / "annotations" / "durations.tsv", "\n".join(durations) + "\n")
    return atomic_write_text(root / "annotations" / "events.tsv", "\n".join(events) + "\n")
