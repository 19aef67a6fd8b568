"""Bias audit of an audio dataset whose pitch bands were left to the generator.

Preset ``tones-pitch`` ("pitch band given class"): the audit job leaves every event's pitch band
open (``soundscape.pitch_unspecified: 1.0``). Each such event is cut out of its soundscape as
shipped (its samples from onset to offset: the event over its background, and whatever else sounds
then, so an audit set is best made with ``max_polyphony: 1``) and its band is classified:

- ``classifier``: the pitch head of the embedded tones classifier (``augment.audio.classifier``),
  trained on real tones-world clips only;
- ``clap``: zero-shot CLAP against "the sound of a low / mid / high <class>" (the preset's prompts
  in ``augment.audio.clap.TEMPLATE``), from the local checkpoint in ``AuditSpec.clap_model``.

The distribution per class is then compared with the target (uniform) by ``evaluation.bias``, the
same Monte Carlo + Bonferroni test as the image audits. The band the verifier heard during
generation (``pitch_source == "verifier"`` in the manifest) is not reused: it was read from the
clean clip before mixing, and only when verification ran; the audit reads the dataset as shipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from augment.audio.dataset import SampleReadError, audio_rows, events_of, read_audio
from evaluation.bias import GroupAudit, audit_attribute, bias_figures, distribution_frame
from evaluation.config import AuditSpec, EvalSpec
from evaluation.figures import Figure
from evaluation.presets import PRESETS, AttributeSpec, BiasPreset

log = logging.getLogger(__name__)


def unspecified_events(dataset: str | Path) -> pd.DataFrame:
    """Events whose pitch band the generator chose, in every generated soundscape (kept or dropped
    by verification: dropping must not bias the audit): columns id, audio (the soundscape's file),
    event (index in the soundscape), group (its class), onset, offset (seconds)."""
    manifest = pd.read_parquet(Path(dataset) / "manifest.parquet")
    rows = [{"id": row["id"], "audio": row["audio"], "event": k, "group": e["category"],
             "onset": e["onset"], "offset": e["offset"]}
            for row in audio_rows(manifest, kept_only=False)
            for k, e in enumerate(events_of(row)) if e.get("pitch_source") in ("verifier", None)]
    return pd.DataFrame(rows, columns=["id", "audio", "event", "group", "onset", "offset"])


def event_excerpts(dataset: Path, events: pd.DataFrame) -> list[np.ndarray | None]:
    """Each event's samples (rows of ``unspecified_events``) cut out of its soundscape: float32
    (round(offset * sr) - round(onset * sr),), or None where the file cannot be read (logged)."""
    events = events.reset_index(drop=True)
    out: list[np.ndarray | None] = [None] * len(events)
    for (sample_id, audio), part in events.groupby(["id", "audio"], sort=False):
        try:
            wave, rate = read_audio(dataset, {"id": sample_id, "audio": audio})
        except SampleReadError as exc:
            log.warning("audit of %s: %s; its %d event(s) are left out", dataset, exc, len(part))
            continue
        for i, onset, offset in zip(part.index, part["onset"], part["offset"]):
            out[i] = wave[int(round(onset * rate)):int(round(offset * rate))]
    return out


def _classifier_pitches(excerpts: list[np.ndarray], eval_spec: EvalSpec) -> list[str]:
    """Pitch band of each excerpt by the embedded tones classifier's pitch head."""
    # torch is imported only when an audio audit runs
    from augment.audio.classifier import PITCHES, classify, load_classifier

    model = load_classifier(None, eval_spec.device)
    waves = np.zeros((len(excerpts), model.window), dtype=np.float32)  # zero-padded, as trained
    for row, wave in enumerate(excerpts):
        wave = wave[:model.window]
        waves[row, :len(wave)] = wave
    probs = classify(model, waves, eval_spec.batch_size)["pitch_probs"]  # (E, len(PITCHES))
    return [PITCHES[i] for i in probs.argmax(1)]


def _clap_pitches(excerpts: list[np.ndarray], groups: list[str], preset: BiasPreset,
                  attribute: AttributeSpec, spec: AuditSpec, eval_spec: EvalSpec) -> list[str]:
    """Zero-shot value of each excerpt among its group's prompts ("the sound of a high beep")."""
    from augment.audio.clap import TEMPLATE, embed_audio, embed_text, load_clap, zero_shot

    clap = load_clap(spec.clap_model, eval_spec.device, field="clap_model")
    prompts = {g: [TEMPLATE.format(phrase=p.format(condition=preset.conditions[g]))
                   for p in attribute.prompts] for g in dict.fromkeys(groups)}
    text = {g: embed_text(clap, texts) for g, texts in prompts.items()}  # (K, D) per group
    audio = embed_audio(clap, excerpts, batch_size=eval_spec.batch_size)  # (E, D)
    return [attribute.values[int(zero_shot(clap, a[None], text[g])[0].argmax())]
            for a, g in zip(audio, groups)]


def run_audit(dataset: str | Path, spec: AuditSpec,
              eval_spec: EvalSpec) -> tuple[list[Figure], pd.DataFrame, list[GroupAudit]]:
    """(figures, distribution DataFrame, audits) of the preset's attribute within each group."""
    # 1. Check inputs
    dataset = Path(dataset)
    spec.check_modality("audio", str(dataset))
    preset = PRESETS[spec.preset]
    attribute = preset.attributes[0]
    events = unspecified_events(dataset)
    unknown = sorted(set(events["group"]) - set(preset.conditions))
    if unknown:
        raise ValueError(f"{dataset}: event classes {unknown} are not groups of preset "
                         f"{spec.preset!r} ({list(preset.conditions)})")
    # 2. Cut each event out of its soundscape
    excerpts = event_excerpts(dataset, events)
    readable = [i for i, x in enumerate(excerpts) if x is not None and len(x)]
    left_out = len(events) - len(readable)
    events = events.iloc[readable].reset_index(drop=True)
    excerpts = [excerpts[i] for i in readable]
    if events.empty:
        raise ValueError(f"{dataset}: no readable event with an unspecified {attribute.name} to "
                         "audit; generate the audit set with soundscape.pitch_unspecified: 1.0")
    # 3. Classify the attribute the generator chose
    if spec.method == "clap":
        values = _clap_pitches(excerpts, events["group"].tolist(), preset, attribute, spec,
                               eval_spec)
    else:
        values = _classifier_pitches(excerpts, eval_spec)
    # 4. Test each group against the target
    audits = audit_attribute(events["group"].tolist(), values, attribute.values, spec.target,
                             attribute.name, confidence=eval_spec.confidence, seed=eval_spec.seed)
    figures = bias_figures(audits)
    for f in figures:
        f.details += f"; classified by {spec.method} on the event cut from its soundscape"
        if left_out:
            f.details += f"; WARNING: {left_out} event(s) in unreadable files left out"
    return figures, distribution_frame(audits), audits
