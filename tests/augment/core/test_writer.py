"""A shard's writer thread and stop requests: the sampler hands batches to a thread that writes
them in order; its errors reach the sampler; a stop request ends a shard within a denoising step,
leaves nothing partial, and the shard is then made again exactly as without the stop."""

from __future__ import annotations

import threading

import pytest

import augment.core.shards as gen
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec
from augment.core.backends import load_backend
from augment.core.stopping import (GenerationInterrupted, clear_stop, request_stop,
                                   watch_networks)
from augment.image.layouts import sample_layout
from augment.testing.compare_datasets import assert_same_dataset


def small_job(**kw) -> ImageJob:
    base = dict(name="tiny", num_samples=6, shard_size=6, seed=3,
                sampler=ImageSamplerSpec(steps=2, batch_size=2, scheduler="ddim"),
                layout=ShapesLayoutSpec(objects_per_image=(1, 2)))
    return ImageJob(**{**base, **kw})


@pytest.fixture(autouse=True)
def no_stop_left_behind():
    clear_stop()
    yield
    clear_stop()


def test_writer_writes_batches_in_order_on_its_own_thread():
    threads = []

    def write(batch):
        threads.append(threading.current_thread())
        return [{"id": i} for i in batch]

    writer = gen.ShardWriter(write, depth=1)
    for batch in ([0, 1], [2, 3], [4]):
        writer.put(batch)
    assert [r["id"] for r in writer.close()] == [0, 1, 2, 3, 4]
    assert set(threads) == {threads[0]} and threads[0] is not threading.current_thread()


def test_a_writer_error_reaches_the_sampler_and_stops_the_writing():
    written = []

    def write(batch):
        if batch == "bad":
            raise OSError("disk full")
        written.append(batch)
        return []

    writer = gen.ShardWriter(write, depth=1)
    writer.put("a")
    writer.put("bad")
    with pytest.raises(OSError, match="disk full"):
        for _ in range(50):  # the error is raised at a put once the thread has met it ...
            writer.put("b")
        writer.close()  # ... or at the latest at close
    assert written == ["a"]


def test_discard_drops_queued_batches_and_waits_for_the_one_in_progress():
    started, release, written = threading.Event(), threading.Event(), []

    def write(batch):
        started.set()
        release.wait(5)
        written.append(batch)
        return []

    writer = gen.ShardWriter(write, depth=2)
    writer.put("first")
    started.wait(5)
    writer.put("queued")
    threading.Timer(0.2, release.set).start()
    writer.discard()
    assert written == ["first"]  # finished, not cut; "queued" never started


def _stops_in_first_step(backend, layouts, sampler) -> list:
    """Render with a stop requested at the end of the UNet's first call; the UNet's calls."""
    watch_networks(backend)
    calls = []

    def stop_after_first_unet_call(module, args, output):
        calls.append(1)
        request_stop()

    handle = backend.pipe.unet.register_forward_hook(stop_after_first_unet_call)
    try:
        with pytest.raises(GenerationInterrupted):
            backend.render(layouts, sampler, list(range(len(layouts))))
    finally:
        handle.remove()
    return calls


def test_a_stop_request_ends_a_sampling_call_within_its_first_denoising_step():
    job = small_job()
    layouts = [sample_layout(job.layout, 0, i) for i in range(2)]
    sampler = ImageSamplerSpec(steps=20, scheduler="ddim")
    assert _stops_in_first_step(load_backend(job.model), layouts, sampler) == [1]  # of 20


def test_a_diffusers_pipeline_stops_within_its_first_denoising_step_too(tmp_path):
    """ControlNet + Stable Diffusion (tiny random weights): diffusers' own sampling loop."""
    from augment.config.image import ControlNetSegSpec
    from augment.testing.tiny_sd import save_sd_folder

    folder, controlnet = save_sd_folder(tmp_path, "controlnet-seg")
    spec = ControlNetSegSpec(path=str(folder), controlnet=str(controlnet),
                             palette={"circle": "ball", "square": "box"})
    layout = ShapesLayoutSpec(height=32, width=32, objects_per_image=(1, 1),
                              classes=["circle", "square"])
    layouts = [sample_layout(layout, 0, i) for i in range(2)]
    sampler = ImageSamplerSpec(scheduler="dpmsolver++", steps=20, guidance=2.0)
    assert _stops_in_first_step(load_backend(spec), layouts, sampler) == [1]


def test_a_stopped_shard_leaves_no_record_and_is_made_again_identically(tmp_path):
    job = small_job()  # 3 batches of 2 samples, 2 steps each
    direct, _ = gen.generate_dataset(job, tmp_path / "direct")
    root = gen.prepare_dataset(job, tmp_path / "stopped")
    unet = load_backend(job.model).pipe.unet
    calls = []

    def stop_in_the_second_batch(module, args, output):
        calls.append(1)
        if len(calls) == 3:
            request_stop()

    handle = unet.register_forward_hook(stop_in_the_second_batch)
    try:
        with pytest.raises(GenerationInterrupted):
            gen.generate_shard(job, root, 0)
    finally:
        handle.remove()
    assert len(calls) == 3
    assert gen.pending_shards(job, root) == [0] and gen.samples_done(job, root) == 0
    assert len(list((root / "images").glob("*.png"))) in (0, 2)  # the first batch, or none
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]

    clear_stop()
    _, summary = gen.generate_dataset(job, tmp_path / "stopped")
    assert_same_dataset(root, direct)
    assert 0 < summary["model_seconds"] <= summary["wall_seconds"]
    assert 0 <= summary["outside_model_share"] < 1


def test_a_stop_request_before_a_shard_starts_writes_nothing(tmp_path):
    job = small_job()
    root = gen.prepare_dataset(job, tmp_path)
    request_stop()
    with pytest.raises(GenerationInterrupted, match="start of shard 0"):
        gen.generate_shard(job, root, 0)
    assert not (root / "images").exists()
