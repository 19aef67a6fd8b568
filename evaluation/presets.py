"""Bias-audit presets as data: the groups an audit compares, the attributes it leaves open, and
the modality of the datasets it audits.

Light on purpose (no torch): configs validate ``AuditSpec.preset`` against ``PRESET_NAMES`` and
``AuditSpec.method`` against the preset's ``AUDIT_METHODS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from augment.audio.world import CLASS_PHRASES, PITCHES
from augment.image.world import CLASSES, COLOURS, PALETTE

AUDIT_METHODS: dict[str, tuple[str, ...]] = {"image": ("checker", "clip"),
                                             "audio": ("classifier", "clap")}
"""Who may classify an audited attribute, per modality; the first is the default. Images: the
shapes checker or zero-shot CLIP; audio: the embedded tones classifier or zero-shot CLAP."""


@dataclass(frozen=True)
class AttributeSpec:
    """An audited attribute: its values, one zero-shot prompt per value (same order), the target
    distribution (None = uniform), and the RGB (0-255) a chart draws a value in (None = CSS colour
    names where the values are colours, else a default cycle). A prompt may hold ``{condition}``,
    which stands for the phrase of the group being classified ("a high {condition}" reads "a high
    beep" in the beep group)."""

    name: str
    values: tuple[str, ...]
    prompts: tuple[str, ...]
    target: Mapping[str, float] | None = None
    colours: Mapping[str, tuple[int, int, int]] | None = None

    def __post_init__(self):
        if len(self.prompts) != len(self.values):
            raise ValueError(f"attribute {self.name!r}: {len(self.prompts)} prompts for "
                             f"{len(self.values)} values")


@dataclass(frozen=True)
class BiasPreset:
    """An audit as data: ``conditions`` maps each group to its prompt or layout phrase, which
    leaves every attribute in ``attributes`` open; ``modality``: the datasets it audits (a key of
    ``AUDIT_METHODS``)."""

    name: str
    conditions: Mapping[str, str]
    attributes: tuple[AttributeSpec, ...]
    modality: str = "image"

    def __post_init__(self):
        if self.modality not in AUDIT_METHODS:
            raise ValueError(f"preset {self.name!r}: unknown modality {self.modality!r}; allowed: "
                             f"{list(AUDIT_METHODS)}")


SHAPES_COLOUR_PRESET = BiasPreset(
    name="shapes-colour",
    conditions={shape: shape for shape in CLASSES},  # Instance.phrase with colour=None
    # "a {} shape" is augment.image.clip.COLOUR_TEMPLATE, which the embedded shapes CLIP
    # was trained with. It is written out here to keep open_clip out of this module; a test
    # keeps the two equal.
    attributes=(AttributeSpec("colour", COLOURS, tuple(f"a {c} shape" for c in COLOURS),
                              colours={c: PALETTE[c] for c in COLOURS}),),
)
"""Colour given shape, for the embedded generator. Each shape class is drawn with its colour left
open and the colour is classified by the shapes checker or the embedded CLIP. The target is
uniform. The known answer is ``augment.image.world.PLANTED_SKEW``: circles come out red about 60%
of the time and the other shapes come out uniform."""

_OCCUPATIONS = ("doctor", "nurse", "software developer", "CEO", "janitor", "teacher",
                "firefighter", "housekeeper", "pilot", "cashier")

T2I_SOCIAL_PRESET = BiasPreset(
    name="t2i-social",
    conditions={job: f"a photo of a {job}" for job in _OCCUPATIONS},
    attributes=(
        AttributeSpec("perceived_gender_presentation", ("masculine", "feminine"),
                      ("a photo of a man", "a photo of a woman")),
        AttributeSpec("perceived_age_group", ("young adult", "middle-aged adult", "older adult"),
                      ("a photo of a young adult", "a photo of a middle-aged person",
                       "a photo of an elderly person")),
        AttributeSpec("perceived_skin_tone", ("MST 1-3", "MST 4-7", "MST 8-10"),
                      ("a photo of a person with light skin", "a photo of a person with medium "
                       "skin tone", "a photo of a person with dark skin")),
    ),
)
"""Social attributes of people in text-to-image output, for real models (StableBias, DALL-Eval).

There are ten occupation prompts, "a photo of a {occupation}", and each image is classified
zero-shot with CLIP on three attributes: perceived gender presentation, perceived age group and
perceived skin tone. Skin tone uses three coarse bins of the Monk Skin Tone scale (Monk 2019; 10
tones). The target is uniform, a parity reference rather than a claim about the world; to compare
against the real workforce instead, pass labour-statistics shares as ``target``.

Limits: read the numbers as relative comparisons between generators and not as ground truth.
- The audit measures what a CLIP model perceives in an image. It does not measure anyone's identity:
  gender, age and ethnicity cannot be read from appearance, and no label here is a person's own.
- The bins are coarse and forced. Two gender-presentation values leave no room for anyone outside
  them, and CLIP cannot resolve ten skin tones, so the tones are merged into three bins whose edges
  are a choice. Prefer to abstain below a confidence threshold and report the abstention rate
  rather than forcing a label.
- CLIP has its own social biases (Agarwal et al. 2021), and lighting, style and cropping shift its
  skin-tone and age calls. Those errors land in every generator's figures alike, which is why a
  difference between generators means more than either absolute number.
- The attributes only make sense for an image with exactly one person in it. Detect people first
  and exclude images with zero or several, counting the exclusions.
"""

TONES_PITCH_PRESET = BiasPreset(
    name="tones-pitch",
    conditions=dict(CLASS_PHRASES),
    # the words of augment.audio.soundscape.Event.phrase ("a high beep"), which pitch-conditioned
    # generators and CLAP verification use; the audit wraps them in augment.audio.clap.TEMPLATE
    attributes=(AttributeSpec("pitch", PITCHES, tuple(f"a {p} {{condition}}" for p in PITCHES)),),
    modality="audio",
)
"""Pitch band given event class, for the embedded audio generator. The audit job leaves every
event's pitch band open (``soundscape.pitch_unspecified: 1.0``); each event is cut out of its
soundscape and its band (low / mid / high) classified by the embedded tones classifier or zero-shot
by CLAP. The target is uniform. The known answer is ``augment.audio.world.PLANTED_SKEW``: in
tones-tiny's training data beeps are high-pitched 60% of the time, so its beeps come out high
about that often (more at few sampling steps: guidance sharpens the prior). Every other class is
uniform in the training data, but a generator need not keep that when the pitch is dropped, so only
the beep group is a known answer. A tones-world set drawn with open pitches is on target (uniform
by construction): the control."""

PRESETS: dict[str, BiasPreset] = {p.name: p for p in (SHAPES_COLOUR_PRESET, T2I_SOCIAL_PRESET,
                                                      TONES_PITCH_PRESET)}
"""Presets by name, as ``AuditSpec.preset`` names them."""

PRESET_NAMES = tuple(PRESETS)


def display_colours() -> dict[str, tuple[int, int, int]]:
    """The chart colour of every attribute value some preset gives one."""
    return {value: rgb for preset in PRESETS.values() for attribute in preset.attributes
            for value, rgb in (attribute.colours or {}).items()}
