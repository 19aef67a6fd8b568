"""Settings of an audio dataset job: soundscapes of generated sound events on backgrounds.

A sample is a soundscape (the Scaper recipe, Salamon et al. 2017): events drawn from the tones
world's classes at sampled onsets, durations and SNRs over a background, at most
``max_polyphony`` sounding at once. Each event clip is made by the backend (``model:``), checked
by the verifier, then mixed; the labels (onset, offset, class) are exact by construction.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from augment.audio.world import BACKGROUNDS, CLASSES, DURATION_RANGE, PITCHES, SAMPLE_RATE
from augment.config.base import (BackendSpec, Fraction, JobBase, SamplerSpec, Strict, backend_spec,
                                 known)
from augment.core.registry import BACKENDS


class TonesTinySpec(BackendSpec):
    """``tones-tiny``: the embedded log-mel diffusion model of the tones world."""

    backend: Literal["tones-tiny"] = "tones-tiny"


class TonesWorldSpec(BackendSpec):
    """``tones-world``: real procedural event clips (a reference set)."""

    backend: Literal["tones-world"] = "tones-world"


class TextToAudioSpec(BackendSpec):
    """The pretrained text-to-audio backends: a hub id or a local diffusers folder (safetensors
    only). Each event clip is generated from a prompt naming its class and pitch."""

    path: str = Field(..., description="Hub id (e.g. cvssp/audioldm2) or a local diffusers folder.")
    cpu_offload: bool = Field(
        False, description="Keep models on the CPU and move each to the GPU while it runs.")

    @model_validator(mode="after")
    def _offload(self) -> "TextToAudioSpec":
        if self.cpu_offload and self.device == "cpu":
            raise ValueError("cpu_offload: needs a GPU device (device: cuda or auto)")
        return self


class AudioLDM2Spec(TextToAudioSpec):
    """``audioldm2``: ``AudioLDM2Pipeline`` (Liu et al. 2023)."""

    backend: Literal["audioldm2"] = "audioldm2"


class StableAudioSpec(TextToAudioSpec):
    """``stable-audio``: ``StableAudioPipeline`` (Evans et al. 2024)."""

    backend: Literal["stable-audio"] = "stable-audio"
    schedulers: ClassVar[tuple[str, ...]] = ("dpmsolver++",)  # its own DPM-Solver++ only


class AudioSamplerSpec(SamplerSpec):
    """How the reverse diffusion is run, and the prompts of the text-to-audio backends."""

    prompt_template: str = Field(
        "{caption}", description="Prompt of an event for the text-to-audio backends; {caption} is "
                                 "the event's phrase, e.g. 'a high beep'.")
    negative_prompt: str = Field("low quality, speech, music",
                                 description="Negative prompt of the text-to-audio backends.")

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{caption}" not in value or value.replace("{caption}", "").count("{"):
            raise ValueError("must contain {caption} and no other placeholder")
        return value


class SoundscapeSpec(Strict):
    """What the soundscape sampler draws: the labels exist before the audio."""

    duration: float = Field(4.0, ge=0.5, le=60.0, description="Seconds per soundscape.")
    sample_rate: Literal[SAMPLE_RATE] = SAMPLE_RATE
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=1)
    class_frequencies: dict[str, float] | None = Field(
        None, description="Target share of each class among events (normalised); None = uniform.")
    events_per_scape: tuple[int, int] = (1, 3)
    max_polyphony: int = Field(2, ge=1, le=8, description="Most events sounding at one time.")
    event_duration: tuple[float, float] = Field(
        (0.3, 1.5), description=f"Event length range in seconds, within {DURATION_RANGE}.")
    snr_db: tuple[float, float] = Field(
        (6.0, 20.0), description="Event level over the background (RMS over the event), dB.")
    pitches: list[str] = Field(default_factory=lambda: list(PITCHES), min_length=1)
    pitch_bias: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="P(pitch band | class) for listed pairs; rest uniform.")
    pitch_unspecified: Fraction = Field(
        0.0, description="Share of events whose pitch band is left to the generator.")
    backgrounds: list[str] = Field(default_factory=lambda: list(BACKGROUNDS), min_length=1)
    background_db: tuple[float, float] = Field(
        (-45.0, -30.0), description="Background RMS level, dBFS.")
    frame_hop: float = Field(0.02, gt=0.0, le=0.5,
                             description="Hop of the frame activity maps, seconds.")

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        return known("class", value, CLASSES)

    @field_validator("pitches")
    @classmethod
    def _pitches(cls, value: list[str]) -> list[str]:
        return known("pitch band", value, PITCHES)

    @field_validator("backgrounds")
    @classmethod
    def _backgrounds(cls, value: list[str]) -> list[str]:
        return known("background", value, BACKGROUNDS)

    @model_validator(mode="after")
    def _consistent(self) -> "SoundscapeSpec":
        lo, hi = self.events_per_scape
        if not 0 <= lo <= hi <= 16:
            raise ValueError("events_per_scape must satisfy 0 <= min <= max <= 16")
        a, b = self.event_duration
        if not DURATION_RANGE[0] <= a <= b <= min(DURATION_RANGE[1], self.duration):
            raise ValueError(f"event_duration must lie within {DURATION_RANGE} s and the "
                             f"soundscape's duration, got ({a}, {b})")
        for name in ("snr_db", "background_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must satisfy min <= max, got ({low}, {high})")
        if self.class_frequencies is not None:
            unknown = set(self.class_frequencies) - set(self.classes)
            if unknown:
                raise ValueError(f"class_frequencies names classes not in classes: {sorted(unknown)}")
            if any(v < 0 for v in self.class_frequencies.values()) or not any(
                    self.class_frequencies.values()):
                raise ValueError("class_frequencies must be >= 0 with a positive total")
        for label, dist in self.pitch_bias.items():
            known("class", [label], CLASSES)
            known("pitch band", list(dist), PITCHES)
            if sum(dist.values()) > 1.0 + 1e-9 or any(v < 0 for v in dist.values()):
                raise ValueError(f"pitch_bias[{label}] must be probabilities summing to <= 1")
        return self

    def class_probabilities(self) -> dict[str, float]:
        """Normalised target frequency of each class (uniform when none are given)."""
        raw = self.class_frequencies or {c: 1.0 for c in self.classes}
        weights = {c: float(raw.get(c, 0.0)) for c in self.classes}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


class AudioVerifySpec(Strict):
    """Check of every generated event clip before it is mixed, by a model that is not the generator.

    ``classifier``: the embedded tones classifier, score = probability of the clip's class (and
    its pitch band is checked when the condition names one). ``clap``: CLAP zero-shot
    classification of the clip against every class's phrase (local weights). ``auto``: what the
    backend's registry entry says.
    """

    enabled: bool = Field(True, description="False is the same as method: none.")
    method: Literal["auto", "classifier", "clap", "none"] = "auto"
    min_score: Fraction = Field(
        0.5, description="Keep a soundscape only if every event scores at least this.")
    clap_model: str | None = Field(
        None, description="clap: local folder of a CLAP checkpoint (transformers ClapModel).")

    def resolved_method(self, backend: str) -> str:
        """The method actually used for ``backend``: "classifier", "clap" or "none"."""
        if not self.enabled:
            return "none"
        if self.method == "auto":
            return BACKENDS.get(backend).verify
        return self.method


class AudioJob(JobBase):
    """One labeled audio dataset of soundscapes."""

    modality: Literal["audio"] = "audio"
    name: str = Field("tones", description="Dataset folder name under the output folder.")
    model: Annotated[SerializeAsAny[BackendSpec], backend_spec("audio", "tones-tiny")] = Field(
        default_factory=TonesTinySpec, description="The event-clip generator and its settings.")
    sampler: AudioSamplerSpec = Field(default_factory=AudioSamplerSpec)
    soundscape: SoundscapeSpec = Field(default_factory=SoundscapeSpec)
    verify: AudioVerifySpec = Field(default_factory=AudioVerifySpec)

    @model_validator(mode="after")
    def _verifier(self) -> "AudioJob":
        if self.verify.resolved_method(self.model.backend) == "clap" and not self.verify.clap_model:
            raise ValueError(f"verify.clap_model: verification of backend {self.model.backend!r} "
                             "uses CLAP and needs a local checkpoint folder; set it, or set "
                             "verify.method: classifier or none")
        return self
