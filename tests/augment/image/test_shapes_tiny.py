"""The shapes-tiny pipeline: tiny random UNets for the mechanics, the shipped weights for real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augment.image.backends.shapes_tiny import EMBEDDED_SHAPES_TINY
from augment.config.image import ShapesLayoutSpec
from augment.image.layouts import sample_layout
from augment.image.pipelines.shapes_tiny import (COND_CHANNELS, ShapesTinyPipeline, boundary_map,
                                           encode_layouts, make_unet)
from augment.core.schedulers import SCHEDULER_CLASSES, make_scheduler
from augment.image.training.generator import noise_schedule, train_shapes_generator

SPEC32 = ShapesLayoutSpec(height=32, width=32)


@pytest.fixture(scope="module")
def tiny_pipe():
    torch.manual_seed(0)
    unet = make_unet(32, block_out_channels=(8, 16), layers_per_block=1)
    pipe = ShapesTinyPipeline(unet=unet, scheduler=make_scheduler("ddim", noise_schedule()))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def layouts(n, spec=SPEC32, seed=0):
    return [sample_layout(spec, seed, i) for i in range(n)]


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_condition_channels_encode_the_layout():
    lay = layouts(3)
    cond = encode_layouts(lay)
    assert cond.shape == (3, COND_CHANNELS, 32, 32) and cond.dtype == torch.float32
    semantic = cond[:, :6].argmax(1).numpy()
    assert np.array_equal(semantic, np.stack([l.semantic_map for l in lay]))
    assert torch.all(cond[:, :6].sum(1) == 1)  # one class per pixel


def test_boundary_map_marks_instance_edges_only():
    inst = torch.zeros(1, 8, 8, dtype=torch.long)
    inst[0, 2:6, 2:6] = 1
    edge = boundary_map(inst)[0]
    assert edge[2, 2] and edge[2, 4] and not edge[3, 3] and not edge[0, 0]
    assert edge.sum() == 12  # the 4x4 square's ring


def test_output_shape_dtype_range_and_determinism(tiny_pipe):
    cond = encode_layouts(layouts(2))
    a = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2])).images
    b = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2])).images
    c = tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 3])).images
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b)
    assert not np.allclose(a[1], c[1])  # another seed, another sample


def test_one_generator_per_sample_makes_a_sample_reproducible_alone(tiny_pipe):
    cond = encode_layouts(layouts(3))
    batch = tiny_pipe(cond, num_inference_steps=2, generator=gens([5, 6, 7])).images
    alone = tiny_pipe(cond[1:2], num_inference_steps=2, generator=gens([6])).images
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5)


def test_guidance_scale_changes_the_output_and_one_means_no_guidance(tiny_pipe):
    cond = encode_layouts(layouts(1))
    outs = {g: tiny_pipe(cond, num_inference_steps=2, guidance_scale=g, generator=gens([0])).images
            for g in (1.0, 3.0)}
    assert not np.allclose(outs[1.0], outs[3.0])


def test_noise_temperature_scales_the_initial_noise(tiny_pipe):
    cond = encode_layouts(layouts(1))
    hot = tiny_pipe(cond, num_inference_steps=1, noise_temperature=1.0, generator=gens([0])).images
    cold = tiny_pipe(cond, num_inference_steps=1, noise_temperature=0.2, generator=gens([0])).images
    assert not np.allclose(hot, cold)


@pytest.mark.parametrize("name", sorted(SCHEDULER_CLASSES))
def test_every_scheduler_runs_and_keeps_the_training_schedule(tiny_pipe, name):
    scheduler = make_scheduler(name, tiny_pipe.scheduler)
    assert scheduler.config.beta_schedule == "squaredcos_cap_v2"
    pipe = ShapesTinyPipeline(unet=tiny_pipe.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(encode_layouts(layouts(1)), num_inference_steps=3, generator=gens([0])).images
    assert np.isfinite(out).all()


def test_unknown_scheduler_is_rejected(tiny_pipe):
    with pytest.raises(ValueError, match="unknown scheduler 'heun'"):
        make_scheduler("heun", tiny_pipe.scheduler)


def test_check_inputs_rejects_bad_calls(tiny_pipe):
    cond = encode_layouts(layouts(2))
    with pytest.raises(ValueError, match="condition"):
        tiny_pipe(cond[:, :5])
    with pytest.raises(ValueError, match="one per sample"):
        tiny_pipe(cond, generator=gens([1]))
    with pytest.raises(ValueError, match="num_inference_steps"):
        tiny_pipe(cond, num_inference_steps=0)
    with pytest.raises(ValueError, match="condition"):
        tiny_pipe(encode_layouts(layouts(1, ShapesLayoutSpec(height=64, width=64))))


def test_save_and_load_round_trip(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "p", safe_serialization=True)
    assert list((tmp_path / "p" / "unet").glob("*.safetensors"))
    assert not list((tmp_path / "p").rglob("*.bin"))
    again = ShapesTinyPipeline.from_pretrained(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    cond = encode_layouts(layouts(2))
    # same weights; the reloaded model may pick another attention kernel (float rounding only)
    np.testing.assert_allclose(
        tiny_pipe(cond, num_inference_steps=2, generator=gens([1, 2])).images,
        again(cond, num_inference_steps=2, generator=gens([1, 2])).images, atol=1e-5)


def test_shipped_weights_load_and_generate():
    pipe = ShapesTinyPipeline.from_pretrained(EMBEDDED_SHAPES_TINY, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    lay = layouts(2, ShapesLayoutSpec())
    out = pipe.from_layouts(lay, num_inference_steps=4, generator=gens([0, 1])).images
    assert out.shape == (2, 64, 64, 3) and np.isfinite(out).all()
    assert out.std() > 0.05  # an image, not a constant
    weights = sum(p.stat().st_size for p in EMBEDDED_SHAPES_TINY.rglob("*.safetensors"))
    assert weights < 15e6  # fp16, a few MB
