"""Contrastive training (CLIP, Radford et al. 2021) of the embedded ``shapes-clip-tiny`` model.

Data: real scenes of the uniform-colour shapes world with their captions (``Layout.caption``), and
single-instance crops of the same scenes with short prompts drawn from ``CROP_TEMPLATES`` (shape
only, colour only, or both), so that "a photo of a star" or "a red shape" work zero-shot. A batch
mixes both kinds. Because many short prompts are true of several crops in one batch, the InfoNCE
targets are multi-positive: every text that is true of an image is a positive, weighted equally
(the target-normalised contrastive loss of UniCL, Yang et al. 2022); scene captions match scenes
with the identical caption only. Flips/transposes of the square, mild blur, noise and
brightness/contrast shifts change no caption (captions say nothing about position; no hue shift).

Held-out metrics come from scenes of another seed: image->text top-1 retrieval among the captions
of a chunk of scenes, CLIPScore of matching vs shuffled captions, and zero-shot shape and colour
accuracy of instance crops against ``TEMPLATE`` / ``COLOUR_TEMPLATE``, the prompts the
verification, alignment and bias-audit code use.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save
from torchvision.ops import roi_align

from augment.config.image import ShapesLayoutSpec
from augment.config.training import TrainClipSpec
from augment.core.devices import resolve_device
from augment.core.io import atomic_write_bytes
from augment.core.training import (Optimisation, Stats, Stopwatch, adamw_one_cycle, parameter_count,
                                   train_loop, write_report)
from augment.image.clip import (COLOUR_TEMPLATE, CONFIG_NAME, EMBEDDED_CLIP, EMBEDDED_NAME,
                                TEMPLATE, WEIGHTS_NAME, classify_crops, crop_boxes, encode_images,
                                encode_texts, input_size, load_clip, model_input,
                                register_shapes_clip)
from augment.image.layouts import sample_layout
from augment.image.training.augmentations import Photometric, augment
from augment.image.training.scenes import (SceneArrays, render_scenes_parallel,
                                           render_training_scenes, world_layout_spec)
from augment.image.world import CLASSES, COLOURS
from evaluation.image.clip_alignment import clip_score

log = logging.getLogger(__name__)

CROP_TEMPLATES: tuple[str, ...] = (
    "a photo of a {shape}", "a {shape}", "a {colour} {shape}", "a photo of a {colour} {shape}",
    "a {colour} shape",
)
"""Prompts paired with crops; ``{shape}`` / ``{colour}`` name the instance's class and colour.
Four of five name the shape: colour is learnt almost at once, shape is the slow part."""

_MARGIN = (0.05, 0.3)  # crop margin (share of the instance's longer side), uniform; eval uses 0.15
_SHIFT = 0.08  # crop centre jitter, share of the crop side
_SHIFTS = Photometric(max_blur_sigma=0.8, max_noise_std=0.02, brightness=0.05, contrast=0.1)
_MAX_LOGIT_SCALE = float(np.log(100.0))  # CLIP clamps the learned temperature at 100


def crop_text_table() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct crop prompt: ``texts`` (P,); ``shape`` and ``colour`` (P,) int64 indices into
    ``CLASSES`` / ``COLOURS``, -1 where the prompt does not name one; ``row`` (templates, shapes,
    colours) int64, the prompt of a template filled in for a crop of that shape and colour."""
    texts, shapes, colours = [], [], []
    row = np.zeros((len(CROP_TEMPLATES), len(CLASSES), len(COLOURS)), np.int64)
    for t, template in enumerate(CROP_TEMPLATES):
        for s, shape in enumerate(CLASSES):
            for c, colour in enumerate(COLOURS):
                text = template.format(shape=shape, colour=colour)
                if text not in texts:
                    texts.append(text)
                    shapes.append(s if "{shape}" in template else -1)
                    colours.append(c if "{colour}" in template else -1)
                row[t, s, c] = texts.index(text)
    return texts, np.array(shapes), np.array(colours), row


def _instance_table(instance: np.ndarray, classes: np.ndarray, colours: np.ndarray) -> dict[str, np.ndarray]:
    """One row per visible instance: ``scene`` index, tight ``box`` (K, 4) xyxy, ``shape`` and
    ``colour`` (K,) indices into CLASSES / COLOURS."""
    scene, box, shape, colour = [], [], [], []
    for i in range(len(instance)):
        count = int((classes[i] > 0).sum())
        tight = crop_boxes(instance[i], margin=0.0, num_instances=count)
        for k in np.flatnonzero(np.isfinite(tight[:, 0])):
            scene.append(i)
            box.append(tight[k])
            shape.append(classes[i, k] - 1)
            colour.append(colours[i, k] - 1)
    return {"scene": np.array(scene), "box": np.array(box, np.float32),
            "shape": np.array(shape, np.int64), "colour": np.array(colour, np.int64)}


def _jittered_crops(images: torch.Tensor, boxes: torch.Tensor, size: int,
                    gen: torch.Generator) -> torch.Tensor:
    """Random square crops around tight boxes: images (B, 3, H, W) float, boxes (B, 4) -> (B, 3, S, S)."""
    b, _, height, width = images.shape
    rand = torch.rand(3, b, generator=gen).to(boxes.device)  # drawn on the CPU: same on any device
    margin = _MARGIN[0] + (_MARGIN[1] - _MARGIN[0]) * rand[0]
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)
    rois = [torch.arange(b, dtype=boxes.dtype, device=boxes.device)]
    for lo, hi, limit, r in ((0, 2, width, rand[1]), (1, 3, height, rand[2])):
        centre = (boxes[:, lo] + boxes[:, hi]) / 2 + (2 * r - 1) * _SHIFT * side
        start = torch.minimum((centre - side / 2).clamp_min(0), (limit - side).clamp_min(0))
        rois += [start, (start + side).clamp_max(limit)]
    rois = torch.stack([rois[0], rois[1], rois[3], rois[2], rois[4]], dim=1)  # (b, x0, y0, x1, y1)
    return roi_align(images, rois, output_size=size, sampling_ratio=-1, aligned=True)


def multi_positive_clip_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives per row (UniCL, Yang et al. 2022).

    logits (N, N) = scale * image @ text.T; positives (N, N) bool, True where text j is true of
    image i (the diagonal at least). Each direction is a cross-entropy against the positives
    normalised to sum to one; with only the diagonal this is CLIP's loss.
    """
    targets = positives.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    targets = targets.T
    text_to_image = -(targets / targets.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def evaluate_shapes_clip(model, tokenizer, world: ShapesLayoutSpec, seed: int, num_scenes: int,
                         retrieval_chunk: int = 64, workers: int | None = None) -> dict:
    """Held-out metrics on real scenes ``0 .. num_scenes-1`` of ``world`` seeded with ``seed``.

    ``retrieval_top1``: share of scenes whose best-scoring caption, among the captions of its chunk
    of ``retrieval_chunk`` scenes, is its own (or an identical one; chance ~ 1 / chunk).
    ``clipscore_matched`` / ``clipscore_shuffled``: mean CLIPScore (w = 2.5) with the scene's own
    caption and with the next scene's, and ``clipscore_paired_win`` the share of scenes where the
    own caption scores higher. ``shape_accuracy`` / ``colour_accuracy``: zero-shot accuracy of
    instance crops (``crop_boxes`` defaults) against ``TEMPLATE`` / ``COLOUR_TEMPLATE``
    (chance 1/5 and 1/6), with ``shape_per_class`` accuracies.
    """
    scenes = render_scenes_parallel(world, seed, num_scenes, workers)
    captions = [sample_layout(world, seed, i).caption for i in range(num_scenes)]
    images = torch.from_numpy(scenes.images)  # (N, 3, 64, 64) uint8
    image_features = encode_images(model, images)
    text_features = encode_texts(model, tokenizer, captions)
    hits = []
    for start in range(0, num_scenes, retrieval_chunk):
        chunk = slice(start, start + retrieval_chunk)
        best = (image_features[chunk] @ text_features[chunk].T).argmax(1)
        hits += [captions[chunk][j] == captions[start + i] for i, j in enumerate(best)]
    matched = clip_score(image_features, text_features)
    shuffled = clip_score(image_features, np.roll(text_features, 1, axis=0))
    table = _instance_table(scenes.instance, scenes.classes, scenes.colours)
    boxes = [crop_boxes(scenes.instance[i], num_instances=int((scenes.classes[i] > 0).sum()))
             for i in range(num_scenes)]
    boxes = [b[np.isfinite(b[:, 0])] for b in boxes]  # the instances of ``table``: visible ones
    _, shape_pred = classify_crops(model, tokenizer, images, boxes, list(CLASSES), TEMPLATE)
    _, colour_pred = classify_crops(model, tokenizer, images, boxes, list(COLOURS), COLOUR_TEMPLATE)
    shape_ok = shape_pred == table["shape"]
    return {
        "retrieval_top1": float(np.mean(hits)),
        "retrieval_chunk": retrieval_chunk,
        "clipscore_matched": float(matched.mean()),
        "clipscore_shuffled": float(shuffled.mean()),
        "clipscore_paired_win": float((matched > shuffled).mean()),
        "shape_accuracy": float(shape_ok.mean()),
        "shape_per_class": {name: round(float(shape_ok[table["shape"] == k].mean()), 4)
                            for k, name in enumerate(CLASSES)},
        "colour_accuracy": float((colour_pred == table["colour"]).mean()),
        "shape_template": TEMPLATE,
        "colour_template": COLOUR_TEMPLATE,
        "num_scenes": num_scenes,
        "num_crops": len(table["shape"]),
        "seed": seed,
    }


def _positives(is_crop: torch.Tensor, caption_id: torch.Tensor, shape: torch.Tensor,
               colour: torch.Tensor, text_shape: torch.Tensor, text_colour: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: text j is true of image i (see ``multi_positive_clip_loss``)."""
    same_caption = caption_id[:, None] == caption_id[None, :]
    fits = (((text_shape[None, :] < 0) | (text_shape[None, :] == shape[:, None]))
            & ((text_colour[None, :] < 0) | (text_colour[None, :] == colour[:, None])))
    both_crops = is_crop[:, None] & is_crop[None, :]
    both_scenes = ~is_crop[:, None] & ~is_crop[None, :]
    return (both_scenes & same_caption) | (both_crops & fits)


class _Batches:
    """Training scenes, their instance crops and all texts, tokenised once; ``draw`` makes a batch."""

    def __init__(self, scenes: SceneArrays, captions: list[str], batch_size: int, crop_fraction: float,
                 tokenizer, device: torch.device):
        table = _instance_table(scenes.instance, scenes.classes, scenes.colours)
        _, caption_id = np.unique(captions, return_inverse=True)
        crop_texts, text_shape, text_colour, text_row = crop_text_table()
        tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        self.images = tensor(scenes.images)  # (N, 3, 64, 64) uint8
        self.scene_tokens, self.caption_id = tokenizer(captions).to(device), tensor(caption_id)
        self.boxes, self.crop_scene = tensor(table["box"]), tensor(table["scene"])  # (K, 4), (K,)
        self.crop_shape, self.crop_colour = tensor(table["shape"]), tensor(table["colour"])
        self.crop_tokens, self.text_row = tokenizer(crop_texts).to(device), tensor(text_row)
        self.text_shape, self.text_colour = tensor(text_shape), tensor(text_colour)
        self.n_crops = int(round(batch_size * crop_fraction))
        self.n_scenes = batch_size - self.n_crops
        self.is_crop = torch.arange(batch_size, device=device) >= self.n_scenes
        self.scene_none = torch.full((self.n_scenes,), -1, device=device)  # no single shape/colour
        self.crop_none = torch.full((self.n_crops,), -1, device=device)  # no caption id

    def draw(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: images (B, 3, S, S) float 0..1 (scenes first, then crops), augmented;
        tokens (B, L) long, each image's text; positives (B, B) bool, text j is true of image i."""
        device = self.images.device
        scene_idx = torch.randint(len(self.images), (self.n_scenes,), generator=gen).to(device)
        crop_idx = torch.randint(len(self.boxes), (self.n_crops,), generator=gen).to(device)
        prompt = torch.randint(len(CROP_TEMPLATES), (self.n_crops,), generator=gen).to(device)
        crops = _jittered_crops(self.images[self.crop_scene[crop_idx]].float() / 255.0,
                                self.boxes[crop_idx], size, gen)
        x, _ = augment(torch.cat([self.images[scene_idx].float() / 255.0, crops]), _SHIFTS, gen)
        shape, colour = self.crop_shape[crop_idx], self.crop_colour[crop_idx]
        row = self.text_row[prompt, shape, colour]
        tokens = torch.cat([self.scene_tokens[scene_idx], self.crop_tokens[row]])
        positives = _positives(self.is_crop, torch.cat([self.caption_id[scene_idx], self.crop_none]),
                               torch.cat([self.scene_none, shape]), torch.cat([self.scene_none, colour]),
                               torch.cat([self.scene_none, self.text_shape[row]]),
                               torch.cat([self.scene_none, self.text_colour[row]]))
        return x, tokens, positives


def _model(spec: TrainClipSpec, device: torch.device) -> torch.nn.Module:
    """A fresh ``shapes-clip-tiny`` (seeded with ``spec.seed``) in training mode on ``device``."""
    torch.manual_seed(spec.seed)
    return open_clip.create_model(EMBEDDED_NAME, device=device).train()


def _fit(spec: TrainClipSpec, data: _Batches, model: torch.nn.Module, watch: Stopwatch) -> list:
    """Train ``model`` on batches of ``data``; returns the loss curve (with the temperature).

    Loss: ``multi_positive_clip_loss``; AdamW with CLIP's betas and eps (for stability), no decay
    on gains, biases, the class token and the temperature (all < 2-D), as in CLIP, and a
    one-cycle schedule; the temperature is clamped at 100 after each step.
    """
    gen = torch.Generator().manual_seed(spec.seed)  # on the CPU: the same batches on any device

    def loss(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Stats:
        x, tokens, positives = batch
        image_features = model.encode_image(model_input(model, x), normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        return {"loss": multi_positive_clip_loss(logits, positives)}

    @torch.no_grad()
    def clamp_temperature() -> None:
        model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)

    groups = [{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": spec.weight_decay},
              {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    optimizer, schedule = adamw_one_cycle(groups, spec.learning_rate, spec.steps, betas=(0.9, 0.98), eps=1e-6)
    return train_loop(lambda: data.draw(input_size(model), gen), loss,
                      Optimisation(optimizer, schedule, after_step=clamp_temperature),
                      spec.steps, spec.log_every, "train shapes CLIP",
                      lambda: {"logit_scale": round(float(model.logit_scale.detach().exp()), 3),
                               "seconds": watch.seconds()})


def train_shapes_clip(spec: TrainClipSpec, out_dir: str | Path, workers: int | None = None) -> dict:
    """Train ``shapes-clip-tiny`` from scratch and save it with its held-out metrics.

    Scenes ``0 .. num_scenes-1`` of ``world_layout_spec(64, skewed=False)`` seeded with
    ``spec.seed`` (and crops of their instances) are rendered once (``workers`` processes; None =
    one per CPU, same scenes whatever the number); each step draws ``batch_size`` images, a
    ``crop_fraction`` share of them crops, with a random prompt from ``CROP_TEMPLATES`` each.
    Held-out metrics: ``evaluate_shapes_clip`` on ``eval_scenes`` scenes of seed ``seed + 1``,
    computed on the weights as shipped (fp16). Writes ``out_dir/{open_clip_model.safetensors
    (fp16), shapes-clip-tiny.json, training.json}`` and returns training.json's dict. Same spec ->
    same data, initial weights and batches.
    """
    watch = Stopwatch()
    world = world_layout_spec(64, skewed=False)
    register_shapes_clip()
    tokenizer = open_clip.get_tokenizer(EMBEDDED_NAME)
    scenes = render_training_scenes(world, spec.seed, spec.num_scenes, workers)
    captions = [sample_layout(world, spec.seed, i).caption for i in range(spec.num_scenes)]
    device = resolve_device(spec.device)
    data = _Batches(scenes, captions, spec.batch_size, spec.crop_fraction, tokenizer, device)
    model = _model(spec, device)
    curve = _fit(spec, data, model, watch)
    watch.end_training()

    out_dir = _save(model.eval(), out_dir)
    shipped, _, _ = load_clip(EMBEDDED_NAME, out_dir / WEIGHTS_NAME, device)
    figures = {"model": EMBEDDED_NAME, "config": open_clip.get_model_config(EMBEDDED_NAME),
               "parameters": parameter_count(model), "num_crops": len(data.boxes),
               "held_out": evaluate_shapes_clip(shipped, tokenizer, world, spec.seed + 1, spec.eval_scenes,
                                                workers=workers),
               "loss_curve": curve, "open_clip": open_clip.__version__}
    report = write_report(out_dir, spec, watch, device, figures,
                          {"crop_templates": list(CROP_TEMPLATES), "world": world.model_dump(mode="json")})
    log.info("held-out: %s", {k: report["held_out"][k] for k in ("shape_accuracy", "colour_accuracy")})
    return report


def _save(model, out_dir: str | Path) -> Path:
    """Write the fp16 weights and the model config into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    # floats to fp16; integer buffers (BatchNorm's num_batches_tracked) stay as they are
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS_NAME, save(state))
    if out_dir.resolve() != EMBEDDED_CLIP:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EMBEDDED_CLIP / CONFIG_NAME, out_dir / CONFIG_NAME)
    return out_dir
