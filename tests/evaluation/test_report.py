"""Report files and figures on a tiny fake dataset: valid self-contained HTML, escaped captions,
every metric row shown, Markdown tables, PNG figures."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluation.compare import format_number
from evaluation.image.pictures import grid_samples, image_png, sample_grid
from evaluation.plots import Picture, attribute_distribution, class_balance, metric_bars
from evaluation.report import Section, write_report

CATEGORIES = ["circle", "square"]
SCRIPT = "<script>alert(1)</script>"
NAN = float("nan")


def make_dataset(root, n=4, captions=None):
    """A dataset folder as generation writes it: 16x16 images, masks, manifest, dataset.json.

    Sample i holds a circle (id 1) and, for odd i, a square (id 2); sample 3 was dropped.
    """
    for sub in ("images", "masks/semantic", "masks/instance"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:16, :16]
    rows = []
    for i in range(n):
        inst = np.zeros((16, 16), np.uint8)
        inst[(yy - 5) ** 2 + (xx - 5) ** 2 <= 9] = 1
        instances = [{"category": "circle", "category_id": 1, "colour": "red",
                      "colour_source": "condition", "verify_iou": 0.9}]
        if i % 2:
            inst[9:14, 9:14] = 2
            instances.append({"category": "square", "category_id": 2, "colour": "blue",
                              "colour_source": "condition", "verify_iou": 0.8})
        semantic = np.array([0, 1, 2], np.uint8)[inst]
        image = np.full((16, 16, 3), 200, np.uint8)
        image[inst == 1], image[inst == 2] = (215, 40, 40), (40, 80, 220)
        stem = f"{i:06d}.png"
        Image.fromarray(image).save(root / "images" / stem)
        Image.fromarray(semantic).save(root / "masks/semantic" / stem)
        Image.fromarray(inst).save(root / "masks/instance" / stem)
        rows.append({"id": i, "image": f"images/{stem}", "semantic_mask": f"masks/semantic/{stem}",
                     "instance_mask": f"masks/instance/{stem}", "split": "train",
                     "caption": (captions or {}).get(i, f"a red circle {i}"), "prompt": None,
                     "layout": "{}", "instances": json.dumps(instances), "kept": i != 3,
                     "status": "ok", "scheduler": "ddim", "steps": 10, "guidance": 2.0,
                     "seconds": 0.5, "backend": "shapes-tiny", "model": "tiny"})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    (root / "dataset.json").write_text(json.dumps({
        "name": root.name, "categories": CATEGORIES, "labels": "masks",
        "counts": {"samples": n, "kept": n - 1, "dropped": 1, "failed": 0},
        "config": {"layout": {"class_frequencies": None}}}))
    return root


def metric_rows():
    def row(dataset, metric, value, lo, hi, n, group="all", details=""):
        return {"dataset": dataset, "reference": "real-shapes", "metric": metric, "value": value,
                "ci_low": lo, "ci_high": hi, "n": n, "extractor": "shapes-features",
                "group": group, "details": details}

    return pd.DataFrame([
        row("synth-a", "fid", 10.0, 9.0, 11.0, 4, details="WARNING: FID is biased upward"),
        row("synth-a", "precision", 0.75, 0.6, 0.9, 4),
        row("synth-a", "fid", NAN, NAN, NAN, 2, "class=square", "skipped: n=2 < min_group_size"),
        row("synth-a", "unreadable_images", 0.0, NAN, NAN, 4),
        row("synth-b", "fid", 10.5, 9.5, 11.5, 4),
        row("synth-b", "precision", 0.25, 0.1, 0.4, 4),
        row("synth-b", "unreadable_images", 1.0, NAN, NAN, 4, details="x.png: truncated"),
    ])


class StrictHTML(HTMLParser):
    """Collects tags, attributes, text and table rows; fails on an end tag that closes the wrong
    element or on elements left open."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.attrs, self.text, self.rows = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if "td" in self.stack or "th" in self.stack:
            self.rows[-1].append(data)

    def close(self):
        super().close()
        assert not self.stack, f"unclosed elements {self.stack}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    a = make_dataset(root / "synth-a", captions={1: f"a square {SCRIPT} & more"})
    b = make_dataset(root / "synth-b")
    (root / "plain-images").mkdir()
    bias = pd.DataFrame({"group": ["circle", "circle"], "value": ["red", "blue"],
                         "share": [0.7, 0.3], "target": [0.5, 0.5]})
    sections = [Section("Bias audit <colour>", text="Colour given class.\n\n<b>not bold</b>",
                        table=bias, images=[Picture(attribute_distribution(bias), "shares")]),
                Section("Memorization", columns=2, images=[
                    Picture(image_png(a / "images/000000.png"), "generated #0"),
                    Picture(image_png(b / "images/000001.png"), "nearest training image")])]
    paths = write_report(root / "out", metric_rows(), [a, b, root / "plain-images"],
                         title="Run <1>", sections=sections, run_info={"run id": "r1"})
    parser = StrictHTML()
    html_text = paths["html"].read_text()
    parser.feed(html_text)
    parser.close()
    return {"paths": paths, "html": html_text, "parsed": parser,
            "summary": paths["summary"].read_text()}


def test_report_writes_both_files(report):
    assert report["paths"]["summary"].name == "summary.md"
    assert report["paths"]["html"].name == "report.html"


def test_every_metric_row_appears_in_the_html(report):
    rows = {tuple(r[:6]) for r in report["parsed"].rows}
    for r in metric_rows().itertuples():
        assert (r.dataset, r.reference, r.extractor, r.metric, r.group,
                format_number(r.value)) in rows, r


def test_untrusted_text_is_escaped(report):
    html_text, parsed = report["html"], report["parsed"]
    assert "<script" not in html_text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "script" not in parsed.tags and "b" not in parsed.tags
    text = "".join(parsed.text)
    assert f"a square {SCRIPT} & more" in text  # shown as text, exactly
    assert "Run <1>" in text and "Bias audit <colour>" in text


def test_html_is_self_contained(report):
    html_text, parsed = report["html"], report["parsed"]
    assert "http://" not in html_text and "https://" not in html_text
    srcs = [a["src"] for tag, a in parsed.attrs if "src" in a]
    hrefs = [a["href"] for tag, a in parsed.attrs if "href" in a]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#") for h in hrefs)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    # grid, class balance (x2 datasets), 3 metric charts, 3 section images
    assert len(srcs) == 2 * 2 + 3 + 3


def test_html_shows_comparison_marks_warnings_and_notes(report):
    html_text = report["html"]
    assert '<td class="best">10 [9, 11] N=4 (best)</td>' in html_text
    assert '<td class="tie">10.5 [9.5, 11.5] N=4 (tie)</td>' in html_text
    assert "WARNING: FID is biased upward" in html_text
    assert "skipped: n=2 &lt; min_group_size" in html_text
    assert "not a synthmill dataset folder" in html_text


def test_summary_holds_figures_comparison_and_warnings(report):
    md = report["summary"]
    assert "| metric | group | value | interval | N | details |" in md
    assert "| fid | all | 10 | [9, 11] | 4 |" in md
    assert "## Comparison" in md and "fid (lower better)" in md
    assert "10 [9, 11] N=4 (best)" in md and "10.5 [9.5, 11.5] N=4 (tie)" in md
    assert "## Warnings" in md and "skipped: n=2 &lt; min_group_size" in md
    assert "<b>" not in md and "&lt;b&gt;not bold&lt;/b&gt;" in md
    assert "- **run id**: r1" in md


def test_single_dataset_has_no_comparison(tmp_path):
    a = make_dataset(tmp_path / "synth-a")
    metrics = metric_rows().query("dataset == 'synth-a'")
    paths = write_report(tmp_path / "out", metrics, [a], samples_per_class=0)
    assert "## Comparison" not in paths["summary"].read_text()
    assert 'id="comparison"' not in paths["html"].read_text()


def test_report_rejects_a_table_without_metric_columns(tmp_path):
    with pytest.raises(ValueError, match="ci_low"):
        write_report(tmp_path, metric_rows().drop(columns=["ci_low"]), [])


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


def test_sample_grid_picks_kept_samples_per_class_and_is_a_png(tmp_path):
    root = make_dataset(tmp_path / "ds")
    picked = grid_samples(root, per_class=2)
    assert {c: [r["id"] for r in rows] for c, rows in picked.items()} == {
        "circle": [0, 1], "square": [1]}  # sample 3 (a square) was dropped
    assert min(png_size(sample_grid(root, per_class=2))) > 50
    with pytest.raises(ValueError, match="triangle"):
        grid_samples(root, classes=["triangle"])
    with pytest.raises(ValueError, match="per_class"):
        grid_samples(root, per_class=0)


def test_sample_grid_survives_a_corrupt_image(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "images" / "000000.png").write_bytes(b"not a png")
    png_size(sample_grid(root, per_class=2, classes=["circle"]))


def test_figures_are_pngs_with_and_without_intervals():
    metrics = metric_rows()
    png_size(metric_bars(metrics, "fid"))  # two groups, one skipped (NaN)
    png_size(metric_bars(metrics, "unreadable_images"))  # no intervals at all
    png_size(class_balance({"circle": 30, "square": 10}, {"circle": 1, "square": 1},
                           dropped={"square": 4}))
    dist = pd.DataFrame({"group": ["circle"] * 2 + ["star"] * 2, "value": ["$a$", "b"] * 2,
                         "share": [0.6, 0.4, 0.5, 0.5], "ci_low": [0.5, 0.3, 0.4, NAN],
                         "ci_high": [0.7, 0.5, 0.6, NAN]})
    png_size(attribute_distribution(dist))
    with pytest.raises(ValueError, match="no rows"):
        metric_bars(metrics, "kid")


def test_image_png_scales_the_longer_side(tmp_path):
    Image.new("RGB", (32, 16)).save(tmp_path / "x.jpg")
    assert png_size(image_png(tmp_path / "x.jpg", size=128)) == (128, 64)
