"""Stable Diffusion backends end to end on tiny random-weight components saved to a temp folder and
loaded back through the loader a user calls: datasets, determinism, the NaN retry, offline errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import augment.core.shards as gen
from augment.config.image import (CocoLayoutSpec, ImageJob, ImageSamplerSpec, ShapesLayoutSpec,
                                  StableDiffusionSpec, VerifySpec)
from augment.core.backends import load_backend, render_guarded
from augment.core.registry import BACKENDS as REGISTERED
from augment.image.backends.controlnet_seg import control_images
from augment.image.backends.gligen import grounding
from augment.image.backends.gligen import render as render_gligen
from augment.image.backends.stable_diffusion import SDBackend, build_pipeline, decode_guarded
from augment.image.dataset import SynthDataset
from augment.image.layout_types import Layout
from augment.image.layouts import sample_layout
from augment.image.palettes import ADE20K
from augment.testing.tiny_sd import save_sd_folder, save_tiny_open_clip

BACKENDS = ("controlnet-seg", "gligen", "inpaint-paste")
SHAPES_PALETTE = {"circle": "ball", "square": "box", "triangle": "tent", "star": "flag",
                  "cross": (10, 20, 30)}
SIZE = 32
SAMPLER = ImageSamplerSpec(scheduler="dpmsolver++", steps=2, guidance=2.0, batch_size=3,
                      negative_prompt="blurry")
ONE_OBJECT = ShapesLayoutSpec(height=SIZE, width=SIZE, objects_per_image=(1, 1))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Random-weight folders of every backend, and a tiny open_clip (config, weights)."""
    root = tmp_path_factory.mktemp("tiny-sd")
    folders = {backend: save_sd_folder(root, backend) for backend in BACKENDS}
    return folders, save_tiny_open_clip(root / "clip")


def model_spec(tiny_models, backend: str, **kw) -> StableDiffusionSpec:
    folder, controlnet = tiny_models[0][backend]
    extra = {"controlnet": str(controlnet), "palette": SHAPES_PALETTE} if controlnet else {}
    return REGISTERED.get(backend).spec_model()(path=str(folder), **extra, **kw)


def make_job(tiny_models, backend: str, **kw) -> ImageJob:
    config, weights = tiny_models[1]
    base = dict(name=backend, num_samples=3, shard_size=3, seed=5, val_fraction=0.5,
                model=model_spec(tiny_models, backend), sampler=SAMPLER,
                layout=ShapesLayoutSpec(height=SIZE, width=SIZE, objects_per_image=(1, 3)),
                verify=VerifySpec(method="clip", clip_model=str(config),
                                  clip_checkpoint=str(weights), min_score=0.0))
    base.update(kw)
    return ImageJob(**base)


@pytest.fixture(scope="module")
def datasets(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("sd-datasets")
    return {backend: gen.generate_dataset(make_job(tiny_models, backend), out)[0]
            for backend in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_writes_a_valid_dataset(datasets, backend):
    root = datasets[backend]
    info = json.loads((root / "dataset.json").read_text())
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert info["labels"] == ("boxes" if backend == "gligen" else "masks")
    assert list(manifest["status"]) == ["ok"] * 3 and manifest["kept"].all()
    assert (manifest["verify_method"] == "clip").all() and manifest["prompt"].str.len().gt(0).all()
    coco = COCO(str(root / "annotations" / "instances.json"))
    assert sorted(coco.getImgIds()) == list(range(3))
    for row in manifest.itertuples():
        image = np.array(Image.open(root / row.image))
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        instance_map = np.array(Image.open(root / row.instance_mask))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=row.id))
        assert len(anns) == len(set(np.unique(instance_map)) - {0}) >= 1
        for ann in anns:
            assert 0.0 <= ann["attributes"]["verify_clip"] <= 1.0
            x, y, w, h = ann["bbox"]
            if backend == "gligen":
                assert "segmentation" not in ann and ann["area"] == w * h
                continue
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            (k,) = np.unique(instance_map[mask])
            assert np.array_equal(mask, instance_map == k) and ann["area"] == mask.sum()
    tasks = sorted(p.name for p in (root / "yolo").iterdir())
    assert tasks == (["detect"] if backend == "gligen" else ["detect", "segment"])
    names = yaml.safe_load((root / "yolo" / "detect" / "data.yaml").read_text())["names"]
    assert list(names.values()) == info["categories"]
    for label_file in (root / "yolo" / "detect" / "labels").glob("*.txt"):
        for line in label_file.read_text().splitlines():
            values = [float(v) for v in line.split()]
            assert len(values) == 5 and all(0 <= v <= 1 for v in values[1:])


def test_gligen_labels_are_the_boxes_it_was_grounded_on(datasets):
    root = datasets["gligen"]
    coco = COCO(str(root / "annotations" / "instances.json"))
    manifest = pd.read_parquet(root / "manifest.parquet")
    for row in manifest.itertuples():
        layout = Layout.from_json(row.layout)
        _, boxes = grounding(layout)
        labelled = [[x / SIZE, y / SIZE, (x + w) / SIZE, (y + h) / SIZE]
                    for x, y, w, h in (a["bbox"] for a in coco.loadAnns(coco.getAnnIds(row.id)))]
        np.testing.assert_allclose(labelled, boxes)
    item = SynthDataset(root)[0]
    assert "masks" not in item and item["boxes"].shape == (len(item["labels"]), 4)


def test_the_dataset_reader_returns_masks_of_a_mask_backend(datasets):
    ds = SynthDataset(datasets["controlnet-seg"])
    item = ds[0]
    assert item["masks"].shape == (len(item["labels"]), SIZE, SIZE)


def test_a_dataset_from_borrowed_coco_layouts(tiny_models, coco_file, tmp_path):
    job = make_job(tiny_models, "controlnet-seg", name="coco-cn",
                   model=model_spec(tiny_models, "controlnet-seg").model_copy(
                       update={"palette": {}}),  # person, car, dog have ADE20K colours
                   layout=CocoLayoutSpec(coco_file=str(coco_file), height=SIZE, width=SIZE))
    root, _ = gen.generate_dataset(job, tmp_path)
    info = json.loads((root / "dataset.json").read_text())
    assert info["categories"] == ["person", "car", "dog"]
    coco = COCO(str(root / "annotations" / "instances.json"))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (1, "person"), (2, "car"), (3, "dog")]
    for row in pd.read_parquet(root / "manifest.parquet").itertuples():
        layout = Layout.from_json(row.layout)
        semantic = np.array(Image.open(root / row.semantic_mask))
        assert np.array_equal(semantic, layout.semantic_map)
        for ann in coco.loadAnns(coco.getAnnIds(row.id)):
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            assert (semantic[mask] == ann["category_id"]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_pixels_and_another_seed_differs(tiny_models, backend):
    backend_obj = load_backend(model_spec(tiny_models, backend))
    layouts = [sample_layout(ONE_OBJECT, 0, i) for i in range(2)]
    first = backend_obj.render(layouts, SAMPLER, [11, 12])
    assert first.shape == (2, SIZE, SIZE, 3) and first.dtype == np.float32
    assert np.isfinite(first).all() and 0 <= first.min() <= first.max() <= 1
    again = backend_obj.render(layouts, SAMPLER, [11, 13])
    assert np.array_equal(first[0], again[0]) and not np.allclose(first[1], again[1])


def test_a_sample_regenerates_alone_from_its_seed(tiny_models):
    backend = load_backend(model_spec(tiny_models, "controlnet-seg"))
    layouts = [sample_layout(ONE_OBJECT, 0, i) for i in range(2)]
    batch = backend.render(layouts, SAMPLER, [11, 12])
    alone = backend.render(layouts[1:], SAMPLER, [12])
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-4)  # batch kernels round differently


def test_batched_gligen_matches_the_diffusers_pipeline_per_sample(tiny_models):
    from diffusers import StableDiffusionGLIGENPipeline

    pipe = load_backend(model_spec(tiny_models, "gligen")).pipe
    stock = StableDiffusionGLIGENPipeline(**pipe.components, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    phrases, boxes = [["a circle"], ["a square", "a star"]], [[[0.1, 0.1, 0.5, 0.6]],
                                                               [[0.0, 0.5, 0.4, 1.0], [0.5, 0, 1, 0.5]]]
    noise = torch.randn(2, 4, SIZE // 4, SIZE // 4, generator=torch.Generator().manual_seed(0))
    common = dict(height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=3.0,
                  output_type="latent")
    ours = pipe(["one", "two"], phrases, boxes, latents=noise.clone(), **common).images
    for i in range(2):
        ref = stock(["one", "two"][i], gligen_phrases=phrases[i], gligen_boxes=boxes[i],
                    latents=noise[i:i + 1].clone(), **common).images
        torch.testing.assert_close(ours[i:i + 1], ref, atol=1e-4, rtol=1e-4)


def test_control_image_paints_each_instance_in_its_palette_colour(tiny_models):
    spec = model_spec(tiny_models, "controlnet-seg", palette_background=(1, 2, 3))
    layout = sample_layout(ShapesLayoutSpec(height=SIZE, width=SIZE, objects_per_image=(3, 3)), 0, 1)
    image = (control_images([layout], spec)[0].permute(1, 2, 0) * 255).round().numpy()
    colours = {"circle": ADE20K["ball"], "square": ADE20K["box"], "triangle": ADE20K["tent"],
               "star": ADE20K["flag"], "cross": (10, 20, 30)}
    for k, inst in enumerate(layout.instances):
        assert (image[layout.instance_map == k + 1] == colours[inst.category]).all()
    assert (image[layout.instance_map == 0] == (1, 2, 3)).all()


def test_a_class_without_a_palette_colour_is_named(tiny_models):
    spec = model_spec(tiny_models, "controlnet-seg").model_copy(update={"palette": {}})
    layout = sample_layout(ShapesLayoutSpec(classes=["star"], objects_per_image=(1, 1)), 0, 0)
    with pytest.raises(ValueError, match=r"model.palette.*\['star'\]"):
        control_images([layout], spec)


def test_inpaint_paste_keeps_the_background_outside_the_instances(tiny_models, tmp_path):
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(background).save(tmp_path / "bg.png")
    spec = ShapesLayoutSpec(height=SIZE, width=SIZE, objects_per_image=(2, 2),
                            background_images=str(tmp_path))
    layout = sample_layout(spec, 0, 0)
    assert layout.extra["background_image"] == str(tmp_path / "bg.png")
    image = load_backend(model_spec(tiny_models, "inpaint-paste")).render([layout], SAMPLER, [1])[0]
    outside = layout.instance_map == 0
    np.testing.assert_allclose(image[outside] * 255, background[outside], atol=1e-3)
    assert not np.allclose(image[~outside] * 255, background[~outside], atol=1)


def test_decode_guard_marks_only_the_non_finite_samples(tiny_models):
    pipe = load_backend(model_spec(tiny_models, "gligen")).pipe
    latents = torch.randn(3, 4, 8, 8)
    latents[0, 1, 2, 3] = float("nan")
    latents[2, 0, 0, 0] = float("inf")
    images = decode_guarded(pipe, latents)
    assert images.shape == (3, 32, 32, 3)
    assert np.isnan(images[0]).all() and np.isnan(images[2]).all() and np.isfinite(images[1]).all()


def test_a_nan_sample_is_retried_in_fp32_and_recorded(tiny_models, tmp_path, monkeypatch):
    backend = load_backend(model_spec(tiny_models, "gligen"))
    real, calls = backend.render, []

    def overflow_once(layouts, sampler, seeds, force_fp32=False):
        calls.append((len(layouts), force_fp32))
        images = real(layouts, sampler, seeds, force_fp32)
        if len(calls) == 1:
            images[1] = np.nan  # what an fp16 overflow leaves
        return images

    monkeypatch.setattr(backend, "render", overflow_once)
    monkeypatch.setattr(gen, "load_backend", lambda spec: backend)
    job = make_job(tiny_models, "gligen", num_samples=2, layout=ONE_OBJECT,
                   verify=VerifySpec(method="none"))
    root, summary = gen.generate_dataset(job, tmp_path)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert calls == [(2, False), (1, True)]
    assert list(manifest["status"]) == ["ok", "retried_fp32"] and manifest["kept"].all()
    redo = real([Layout.from_json(manifest["layout"][1])], SAMPLER,
                [int(manifest["noise_seed"][1])], force_fp32=True)[0]
    on_disk = np.array(Image.open(root / manifest["image"][1])).astype(float)
    assert np.abs(np.rint(redo * 255) - on_disk).max() <= 1


def test_the_fp32_retry_loads_a_float32_copy_of_a_half_precision_backend(tiny_models):
    spec = model_spec(tiny_models, "gligen")
    loaded = load_backend(spec)
    half = build_pipeline(loaded.pipeline_class, spec, loaded.folder, None, torch.bfloat16,
                          torch.device("cpu"))
    backend = SDBackend(spec=spec, pipeline_class=loaded.pipeline_class, renderer=render_gligen,
                        prompter=loaded.prompter, pipe=half, folder=loaded.folder,
                        controlnet_folder=None, model_id=loaded.model_id, weights=loaded.weights,
                        device=torch.device("cpu"), dtype=torch.bfloat16)
    layouts = [sample_layout(ONE_OBJECT, 0, 0)]
    images = backend.render(layouts, SAMPLER, [3], force_fp32=True)
    assert np.isfinite(images).all()
    assert backend._fp32.unet.dtype == torch.float32 and backend.pipe.unet.dtype == torch.bfloat16
    np.testing.assert_allclose(images, loaded.render(layouts, SAMPLER, [3]), atol=1e-5)


def test_gpu_options_are_applied(tiny_models):
    from diffusers.models.attention_processor import AttnProcessor2_0

    spec = model_spec(tiny_models, "controlnet-seg", vae_slicing=True, vae_tiling=True)
    backend = load_backend(spec)
    pipe = backend.pipe
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    for model in (pipe.unet, pipe.controlnet):
        assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())
    layouts = [sample_layout(ONE_OBJECT, 0, i) for i in range(2)]
    assert np.isfinite(backend.render(layouts, SAMPLER, [1, 2])).all()
    gligen = load_backend(model_spec(tiny_models, "gligen"))
    compiled = build_pipeline(gligen.pipeline_class,
                              model_spec(tiny_models, "gligen", compile_unet=True),
                              tiny_models[0]["gligen"][0], None, torch.float32, torch.device("cpu"))
    assert compiled.unet._compiled_call_impl is not None  # compiled lazily, on the first call


def test_an_offline_hub_id_names_the_model_and_the_local_path_to_set(tiny_models):
    hub_id = "masterful/gligen-1-4-generation-text-box"
    with pytest.raises(FileNotFoundError, match=f"{hub_id}.*model.path to that local folder"):
        load_backend(REGISTERED.get("gligen").spec_model()(path=hub_id))
    spec = model_spec(tiny_models, "controlnet-seg").model_copy(
        update={"controlnet": "lllyasviel/control_v11p_sd15_seg"})
    with pytest.raises(FileNotFoundError, match="control_v11p_sd15_seg.*model.controlnet"):
        load_backend(spec)


def test_pickled_weights_are_refused(tiny_models, tmp_path):
    folder = shutil.copytree(tiny_models[0]["gligen"][0], tmp_path / "gligen")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match=f"cannot load gligen weights .*{folder}"):
        load_backend(REGISTERED.get("gligen").spec_model()(path=str(folder)))


def test_the_prefect_flow_makes_a_real_backend_dataset(prefect_harness, tiny_models, tmp_path):
    from flows.config import RunConfig
    from flows.generate import run_generate

    job = make_job(tiny_models, "controlnet-seg", name="flow-cn", num_samples=3, shard_size=2)
    (summary,) = run_generate(RunConfig(out=str(tmp_path), jobs=[job]))
    assert summary["counts"]["samples"] == 3
    coco = COCO(str(tmp_path / "flow-cn" / "annotations" / "instances.json"))
    assert len(coco.getImgIds()) == summary["counts"]["kept"]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_on_cuda_renders_finite_images(tiny_models, backend):
    spec = model_spec(tiny_models, backend, device="cuda", dtype="float16")
    loaded = load_backend(spec)
    assert loaded.pipe.unet.dtype == torch.float16 and loaded.pipe.device.type == "cuda"
    layouts = [sample_layout(ShapesLayoutSpec(height=64, width=64), 0, i) for i in range(4)]
    images, status = render_guarded(loaded, layouts, SAMPLER, [1, 2, 3, 4])
    assert images.shape == (4, 64, 64, 3) and np.isfinite(images).all()
    assert set(status) <= {"ok", "retried_fp32"}
