"""Text prompts of the Stable Diffusion backends, built from a layout and ``SamplerSpec``.

``prompt_template`` has two placeholders: ``{caption}`` (the layout's caption, e.g. "a red circle
and a person", or for one instance its phrase with an article) and ``{classes}`` (the class names,
comma-separated, each once).
"""

from __future__ import annotations

from augment.config import SamplerSpec
from augment.image.layout_types import Layout, with_article
from augment.image.world import BACKGROUND_PHRASES


def scene_prompt(layout: Layout, sampler: SamplerSpec) -> str:
    """The prompt of a whole layout."""
    classes = dict.fromkeys(inst.category for inst in layout.instances)
    return sampler.prompt_template.format(caption=layout.caption, classes=", ".join(classes))


def instance_prompt(instance, sampler: SamplerSpec) -> str:
    """The prompt of one instance (``Instance`` or ``MaskInstance``), e.g. for inpainting it."""
    return sampler.prompt_template.format(caption=with_article(instance.phrase),
                                          classes=instance.category)


def background_prompt(layout: Layout, sampler: SamplerSpec) -> str:
    """The layout's background phrase (shapes world), else ``sampler.background_prompt``."""
    if layout.background:
        return BACKGROUND_PHRASES[layout.background]
    return sampler.background_prompt
