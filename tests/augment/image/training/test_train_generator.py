"""The shapes-tiny trainer (``augment.image.training.generator``)."""

def test_training_runs_saves_fp16_safetensors_and_is_seeded(tmp_path):
    spec = TrainShapesSpec(resolution=32, steps=2, batch_size=4, num_scenes=16, warmup_steps=1,
                           block_out_channels=(8, 16), device="cpu", log_every=1)
    a = train_shapes_generator(spec, tmp_path / "a", workers=1)
    b = train_shapes_generator(spec, tmp_path / "b", workers=1)
    from safetensors.torch import load_file

    wa = load_file(next((a / "unet").glob("*.safetensors")))
    wb = load_file(next((b / "unet").glob("*.safetensors")))
    assert all(t.dtype == torch.float16 for t in wa.values())
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "training_log.csv").read_text().count("\n") == 3  # header + 2 logged steps
    pipe = ShapesTinyPipeline.from_pretrained(a)
    assert pipe.scheduler.config.thresholding  # x0 clipping travels with the model
