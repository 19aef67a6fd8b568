"""The audio modality's part of dataset generation (``augment.core.shards.ModalityHooks``): the
condition of a sample is its soundscape; the backend renders each event's clip, the verifier scores
the clips, and the mixer places them on the background. A sample is stored as a 16-bit PCM WAV
plus its frame activity map."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from augment.audio.mixing import mix
from augment.audio.soundscape import Event, Soundscape, sample_soundscape
from augment.audio.verify import SCORE_KEYS, is_kept, load_verifier
from augment.audio.world import CLASSES
from augment.config.audio import AudioJob, AudioSamplerSpec
from augment.core.backends import render_guarded
from augment.core.io import atomic_write_bytes
from augment.core.seeds import child_seed

_SEVERITY = {"ok": 0, "retried_fp32": 1, "failed": 2}


def to_pcm16(waves: np.ndarray) -> np.ndarray:
    """float waveforms in [-1, 1] -> int16 PCM (the mixer keeps peaks <= 0.99, so none clips)."""
    return np.clip(np.rint(np.asarray(waves) * 32767), -32768, 32767).astype(np.int16)


def event_seeds(seed: int, count: int) -> list[int]:
    """Noise seeds of a soundscape's ``count`` event clips, from its noise seed."""
    return [child_seed(seed, k + 1) for k in range(count)]


class AudioHooks:
    """Hooks of audio jobs (``AudioJob``)."""

    roles = ("audio", "frames")
    sampler_model = AudioSamplerSpec

    def condition(self, job: AudioJob, index: int) -> Soundscape:
        return sample_soundscape(job.soundscape, job.seed, index)

    def condition_from_json(self, text: str) -> Soundscape:
        return Soundscape.from_json(text)

    def verifier(self, job: AudioJob):
        return load_verifier(job)

    def produce(self, job, backend, verifier, scapes: list[Soundscape], seeds: list[int]):
        """Every event clip of the batch rendered in one call (NaN guard per clip), verified, then
        mixed per soundscape: (int16 (B, N), status per soundscape (its worst clip's), per
        soundscape a list of per-event records: verification scores, clip seed, gain)."""
        # 1. The batch's events, each with the noise seed of its clip
        events: list[Event] = [event for scape in scapes for event in scape.events]
        owner = [b for b, scape in enumerate(scapes) for _ in scape.events]
        clip_seeds = [s for scape, seed in zip(scapes, seeds)
                      for s in event_seeds(seed, len(scape.events))]
        # 2. Render and verify the clips
        if events:
            clips, clip_status = render_guarded(backend, events, job.sampler, clip_seeds)
        else:
            clips, clip_status = np.zeros((0, 0), np.float32), []
        scores = verifier(clips, events) if verifier and events else [{} for _ in events]
        # 3. Mix each soundscape
        waves, status, records = [], [], []
        for b, scape in enumerate(scapes):
            rows = [i for i, o in enumerate(owner) if o == b]
            wave, gains, _ = mix(scape, clips[rows] if rows else clips)
            waves.append(wave)
            status.append(max((clip_status[i] for i in rows), key=_SEVERITY.get, default="ok"))
            records.append([{**scores[i], "clip_seed": clip_seeds[i], "gain": gains[j]}
                            for j, i in enumerate(rows)])
        return to_pcm16(np.stack(waves)), status, records

    def encode(self, audio: np.ndarray, scape: Soundscape) -> tuple[bytes, str]:
        """int16 (N,) -> a 16-bit PCM WAV file."""
        wav = io.BytesIO()
        sf.write(wav, audio, scape.sample_rate, subtype="PCM_16", format="WAV")
        return wav.getvalue(), ".wav"

    def write_files(self, job: AudioJob, root: Path, stem: str, scape: Soundscape,
                    audio: np.ndarray) -> dict[str, str]:
        paths = {"audio": f"audio/{stem}.wav", "frames": f"annotations/frames/{stem}.npy"}
        atomic_write_bytes(root / paths["audio"], self.encode(audio, scape)[0])
        frames = io.BytesIO()
        np.save(frames, scape.frame_activity(job.soundscape.frame_hop, CLASSES),
                allow_pickle=False)
        atomic_write_bytes(root / paths["frames"], frames.getvalue())
        return paths

    def instances(self, job: AudioJob, scape: Soundscape,
                  scores: list[dict] | None) -> tuple[list[dict], dict[str, float | None]]:
        """Per event: class, pitch band (from the condition, or as the verifier heard it when the
        condition left it open), onset, offset, SNR, and its provenance and scores."""
        out = []
        for k, event in enumerate(scape.events):
            score = scores[k] if scores else {}
            pitch, source = event.pitch, "condition" if event.pitch else None
            if pitch is None and score.get("pitch_pred"):
                pitch, source = score["pitch_pred"], "verifier"
            out.append({"category": event.label, "category_id": event.category_id,
                        "pitch": pitch, "pitch_source": source, "onset": event.onset,
                        "offset": event.offset, "snr_db": event.snr_db, **score})
        summary = {}
        for name, key in (("class", SCORE_KEYS["classifier"]), ("clap", SCORE_KEYS["clap"])):
            values = [e[key] for e in out if e.get(key) is not None]
            summary[name] = min(values) if values else None
        return out, summary

    def is_kept(self, job: AudioJob, status: str, instances: list[dict]) -> bool:
        return is_kept(job, status, instances)

    def categories(self, job: AudioJob) -> list[str]:
        return list(CLASSES)


AUDIO = AudioHooks()
