"""Image sets: the PIL reader, unreadable files listed and excluded, layouts parsed once."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from augment.config import ShapesLayoutSpec
from augment.image.layouts import sample_layout
from evaluation.image import sets as image_sets
from evaluation.image.sets import ImageSet, decode_image
from evaluation.sets import DecodeError, read_chunks


def test_the_image_reader_decodes_rgb_and_names_corrupt_bytes():
    buf = io.BytesIO()
    Image.new("L", (5, 3), 7).save(buf, format="PNG")
    image = decode_image(buf.getvalue())
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 3, 5) and (image == 7).all()
    with pytest.raises(DecodeError):
        decode_image(b"not a png")


def test_unreadable_files_are_listed_not_fatal(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"junk")
    image_set = ImageSet("s", tmp_path, [tmp_path / "a.png", tmp_path / "b.png",
                                         tmp_path / "missing.png"], "folder")
    (chunk, bad), = read_chunks(image_set)
    assert chunk.rows == [0] and [path for path, _ in bad] == [str(tmp_path / "b.png"),
                                                              str(tmp_path / "missing.png")]
    assert bad[0][1].startswith("cannot decode") and bad[1][1].startswith("cannot read")


def test_layouts_are_parsed_once_per_set_within_a_pixel_budget(monkeypatch):
    layouts = [sample_layout(ShapesLayoutSpec(), 5, i) for i in range(6)]
    image_set = ImageSet("s", None, [None] * 6, "test", layouts=[l.to_json() for l in layouts])
    first = image_set.layout(0)
    assert image_set.layout(0) is first and first == layouts[0]
    assert first.instance_map is image_set.layout(0).instance_map  # masks rendered once
    monkeypatch.setattr(image_sets, "LAYOUT_CACHE_PIXELS", 3 * 64 * 64)  # room for three 64x64
    for row in range(1, 6):
        image_set.layout(row)
    assert list(image_set._parsed) == [3, 4, 5]  # least recently used dropped
    assert image_set.layout(1) == layouts[1]  # and parsed again when needed
