"""GLIGEN text-box generation with each sample's own boxes and phrases.

GLIGEN (Li et al., "GLIGEN: Open-Set Grounded Text-to-Image Generation", CVPR 2023) adds gated
self-attention layers that read (box, phrase embedding) tokens. diffusers'
``StableDiffusionGLIGENPipeline`` grounds every image of a batch on one set of boxes; a dataset
needs each sample's own, which the UNet accepts as (B, 30, 4) boxes, (B, 30, D) phrase
embeddings and a (B, 30) mask. This pipeline is that pipeline's text-box ``__call__`` with the
grounding built per sample; it loads the same folders.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionGLIGENPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

MAX_OBJECTS = 30  # the grounding tokens GLIGEN was trained with


class BatchedGLIGENPipeline(StableDiffusionGLIGENPipeline):
    """``pipe(prompt, gligen_phrases, gligen_boxes, ...)`` with one list of phrases and one list
    of normalised xyxy boxes per prompt. Images come back as (B, 3, H, W) in [0, 1] ("pt"),
    (B, H, W, 3) numpy ("np"), PIL, or latents ("latent")."""

    def check_batched_inputs(self, prompt, gligen_phrases, gligen_boxes, height, width, generator):
        if not isinstance(prompt, list) or not all(isinstance(p, str) for p in prompt):
            raise ValueError("`prompt` must be a list of strings, one per sample")
        if len(gligen_phrases) != len(prompt) or len(gligen_boxes) != len(prompt):
            raise ValueError(f"got {len(prompt)} prompts, {len(gligen_phrases)} phrase lists and "
                             f"{len(gligen_boxes)} box lists; pass one of each per sample")
        for i, (phrases, boxes) in enumerate(zip(gligen_phrases, gligen_boxes)):
            if len(phrases) != len(boxes):
                raise ValueError(f"sample {i}: {len(phrases)} phrases for {len(boxes)} boxes")
            if len(boxes) > MAX_OBJECTS:
                raise ValueError(f"sample {i}: {len(boxes)} boxes; GLIGEN grounds at most "
                                 f"{MAX_OBJECTS}")
            for x1, y1, x2, y2 in boxes:
                if not 0.0 <= x1 < x2 <= 1.0 or not 0.0 <= y1 < y2 <= 1.0:
                    raise ValueError(f"sample {i}: box {[x1, y1, x2, y2]} is not a normalised "
                                     "xyxy box inside [0, 1]")
        if height % 8 or width % 8:
            raise ValueError(f"height and width must be divisible by 8, got {height}x{width}")
        if isinstance(generator, list) and len(generator) != len(prompt):
            raise ValueError(f"got {len(generator)} generators for {len(prompt)} prompts; pass "
                             "one per sample")

    def ground(self, gligen_phrases: list[list[str]], gligen_boxes: list[list[list[float]]],
               device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Grounding tokens: boxes (B, 30, 4), phrase embeddings (B, 30, D), mask (B, 30)."""
        batch, dim = len(gligen_boxes), self.unet.config.cross_attention_dim
        boxes = torch.zeros(batch, MAX_OBJECTS, 4, device=device, dtype=dtype)
        embeddings = torch.zeros(batch, MAX_OBJECTS, dim, device=device, dtype=dtype)
        masks = torch.zeros(batch, MAX_OBJECTS, device=device, dtype=dtype)
        flat = [p for phrases in gligen_phrases for p in phrases]
        if flat:  # the pooled text feature of each phrase, as GLIGEN was trained
            tokens = self.tokenizer(flat, padding=True, return_tensors="pt").to(device)
            pooled = self.text_encoder(**tokens).pooler_output.to(dtype)  # (N, D)
            start = 0
            for i, sample_boxes in enumerate(gligen_boxes):
                n = len(sample_boxes)
                if n:
                    boxes[i, :n] = torch.tensor(sample_boxes, device=device, dtype=dtype)
                    embeddings[i, :n] = pooled[start:start + n]
                    masks[i, :n] = 1
                start += n
        return {"boxes": boxes, "positive_embeddings": embeddings, "masks": masks}

    @torch.no_grad()
    def __call__(self, prompt: list[str], gligen_phrases: list[list[str]],
                 gligen_boxes: list[list[list[float]]], height: int, width: int,
                 num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 gligen_scheduled_sampling_beta: float = 0.3,
                 negative_prompt: list[str] | None = None, eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil",
                 return_dict: bool = True):
        # 1. Check inputs
        self.check_batched_inputs(prompt, gligen_phrases, gligen_boxes, height, width, generator)
        device, batch = self._execution_device, len(prompt)
        do_cfg = guidance_scale > 1.0

        # 2. Encode the prompts: (2B, L, D) with the negative half first under guidance
        prompt_embeds, negative_embeds = self.encode_prompt(prompt, device, 1, do_cfg,
                                                            negative_prompt)
        if do_cfg:
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds])

        # 3. Prepare timesteps and the initial noise (one generator per sample)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(batch, self.unet.config.in_channels, height, width,
                                       prompt_embeds.dtype, device, generator, latents)

        # 4. Ground every sample on its own boxes; the unconditional half sees no box
        grounding = self.ground(gligen_phrases, gligen_boxes, device, prompt_embeds.dtype)
        if do_cfg:
            grounding = {k: torch.cat([v, v]) for k, v in grounding.items()}
            grounding["masks"][:batch] = 0
        num_grounding_steps = int(gligen_scheduled_sampling_beta * len(timesteps))
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 5. Denoise; grounding only for the first steps (GLIGEN's scheduled sampling)
        self.enable_fuser(True)
        for i, t in enumerate(self.progress_bar(timesteps)):
            if i == num_grounding_steps:
                self.enable_fuser(False)
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            noise_pred = self.unet(model_in, t, encoder_hidden_states=prompt_embeds,
                                   cross_attention_kwargs={"gligen": dict(grounding)}).sample
            if do_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        self.enable_fuser(True)

        # 6. Decode
        if output_type == "latent":
            images = latents
        else:
            images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
            images = self.image_processor.postprocess(images, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

