"""Report files and figures on a tiny fake dataset: valid self-contained HTML, escaped captions,
every metric row shown, Markdown tables, PNG figures; a headline first (wins only when intervals
are apart), directions from one declaration, audits' flagged groups marked, counts as counts,
memorization pairs by sample id."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluation import registry, suite
from evaluation.bias import audit_attribute, bias_figures, distribution_frame
from evaluation.compare import format_number
from evaluation.config import ReportSpec
from evaluation.evaluate import figures_table, write_metrics
from evaluation.figures import FigureSpec
from evaluation.image.pictures import grid_samples, image_png, sample_grid
from evaluation.memorization import memorization, memorization_figure, memorization_record
from evaluation.plots import (Picture, attribute_distribution, class_balance, draws_whiskers,
                              metric_bars)
from evaluation.registry import figure_spec
from evaluation.headline import compare_pairs
from evaluation.report import HOW_TO_READ, Section, write_report

CATEGORIES = ["circle", "square"]
SCRIPT = "<script>alert(1)</script>"
NAN = float("nan")


def make_dataset(root, n=4, captions=None, model="tiny"):
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
                     "seconds": 0.5, "backend": "shapes-tiny", "model": model})
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
    counts = {0.0: "0 files", 1.0: "1 file"}  # unreadable_images is a count, not a rate
    for r in metric_rows().itertuples():
        value = counts[r.value] if r.metric == "unreadable_images" else format_number(r.value)
        assert (r.dataset, r.reference, r.extractor, r.metric, r.group, value) in rows, r


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
    # grid, class balance (x2 datasets), 2 metric charts (fid, precision: a count is not charted),
    # 3 section images
    assert len(srcs) == 2 * 2 + 2 + 3


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
    assert "## Warnings" in md
    assert "| skipped: n &lt; min_group_size | 1 | synth-a fid: class=square (n=2) |" in md
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


# -- what a person reads first: the headline, the key table, directions, audits, counts ----------

def headline_md(summary: str) -> str:
    """What ``synthmill run`` prints of summary.md: the text before its first "## " heading."""
    return summary.split("\n## ")[0]


def test_headline_comes_first_then_the_key_table(report):
    md = headline_md(report["summary"])
    assert md.startswith("# Run &lt;1&gt;\n\n- ")
    assert "|" not in md  # no table in the headline: plain lines that read well on a console
    assert "Verification: synth-a 3 of 4 kept (75%), 1 dropped (25%); synth-b 3 of 4 kept" in md
    assert report["summary"].index("## Key figures") == len(md) + 1
    html_text = report["html"]
    first_table = html_text.index("<table")
    assert html_text.index("<h1>") < html_text.index('<section id="headline">') < first_table
    assert html_text.index('<section id="key">') < first_table < html_text.index('id="warnings"')


def test_a_tie_within_intervals_is_a_tie_and_a_clear_win_a_win(report):
    md = headline_md(report["summary"])
    # fid 10 [9, 11] vs 10.5 [9.5, 11.5]: overlapping intervals; precision 0.75 [0.6, 0.9] vs
    # 0.25 [0.1, 0.4]: apart, and higher is better
    assert "- synth-a vs synth-b (shapes-features figures):" in md
    assert "  - better for synth-a (intervals apart): precision\n" in md
    assert "  - better for synth-b (intervals apart): none\n" in md
    assert "  - tie (intervals overlap, cannot rank): fid\n" in md
    ranked = [line for line in md.splitlines() if line.startswith("  - ")]
    assert len(ranked) == 3 and not any("unreadable" in line for line in ranked)  # a count


def row(dataset, metric, value, lo, hi, n=50, group="all", details="", extractor="x"):
    return {"dataset": dataset, "reference": "ref", "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi, "n": n, "extractor": extractor, "group": group,
            "details": details}


def test_pairs_are_ranked_by_intervals_and_declared_direction():
    metrics = pd.DataFrame([
        row("a", "fid", 10, 9, 11), row("b", "fid", 20, 18, 22),  # lower is better: a
        row("a", "recall", 0.5, 0.4, 0.6), row("b", "recall", 0.7, 0.6, 0.8),  # touch: a tie
        row("a", "kid", 1, NAN, NAN), row("b", "kid", 2, 1.5, 2.5),  # no interval: not ranked
        row("a", "unreadable_images", 0, NAN, NAN), row("b", "unreadable_images", 3, NAN, NAN),
        row("c", "fid", 1, 0, 2, extractor="other")])  # another extractor: never paired
    (pair,) = compare_pairs(metrics)
    assert (pair.a, pair.b, pair.extractor) == ("a", "b", "x")
    assert pair.wins == {"a": ["fid"], "b": []}
    assert pair.ties == ["recall"] and pair.unranked == ["kid"]


def two_datasets(root, **kw):
    return [make_dataset(root / "synth-a", **kw), make_dataset(root / "synth-b", **kw)]


def test_directions_come_from_the_one_declaration(tmp_path, monkeypatch):
    """Normalised entropy is 1 for a uniform spread: higher is better, and the headline, the
    chart caption, the comparison's names and its best mark all say so because they all read
    the registry's declaration; flipping that one declaration flips all of them."""
    assert figure_spec("bias_normalised_entropy").higher_is_better
    metrics = pd.DataFrame([row("synth-a", "bias_normalised_entropy", 0.95, 0.9, 0.99),
                            row("synth-b", "bias_normalised_entropy", 0.5, 0.4, 0.6)])
    datasets = two_datasets(tmp_path)

    def render(out):
        paths = write_report(tmp_path / out, metrics, datasets, samples_per_class=0)
        return paths["summary"].read_text(), paths["html"].read_text()

    md, html_text = render("declared")
    assert "better for synth-a (intervals apart): bias_normalised_entropy" in md
    assert "<figcaption>bias_normalised_entropy (higher is better; whiskers: interval)" in html_text
    assert "| bias_normalised_entropy (higher better) | 0.95 [0.9, 0.99] N=50 (best) |" in md
    flipped = FigureSpec("bias_normalised_entropy", False)
    monkeypatch.setitem(registry._DECLARED, "bias_normalised_entropy", ("bias", flipped))
    md, html_text = render("flipped")
    assert "better for synth-b (intervals apart): bias_normalised_entropy" in md
    assert "<figcaption>bias_normalised_entropy (lower is better; whiskers: interval)" in html_text
    assert "| bias_normalised_entropy (lower better) | 0.95 [0.9, 0.99] N=50 |" in md
    assert "0.5 [0.4, 0.6] N=50 (best)" in md


def test_key_table_is_narrow_and_names_the_model_briefly(tmp_path):
    datasets = two_datasets(tmp_path, model="/home/someone/work/assets/shapes-tiny")
    extra = [row(d, m, 0.5, 0.4, 0.6) for d in ("synth-a", "synth-b")
             for m in ("coverage", "density", "vendi", "clip_score", "layout_colour_accuracy")]
    metrics = pd.concat([metric_rows(), pd.DataFrame(extra)], ignore_index=True)
    paths = write_report(tmp_path / "out", metrics, datasets, samples_per_class=0)
    md = paths["summary"].read_text()
    key = md.split("## Key figures\n\n")[1].split("\n\n")[0].splitlines()
    # dataset, model, kept and the declared key figures present (fid, precision, vendi)
    assert key[0] == ("| dataset | model | kept | fid (lower better) | precision (higher better) "
                      "| vendi (higher better) |")
    assert key[2].startswith("| synth-a | shapes-tiny | 3 of 4 | 10 [9, 11] (best) |")
    assert "/home/someone" not in md.split("## synth-a")[0]  # the machine path: detail only
    # every figure side by side: one column per dataset, however many figures
    full = md.split("## Comparison\n\n")[1].split("\n\n")[1].splitlines()
    assert full[0] == "| figure | synth-a | synth-b |" and len(full) == 2 + 2 + len(extra) // 2 + 1


AUDIT_SET = "colour-audit"


def write_audit(folder):
    """An audit folder as ``evaluation.suite.audit_one`` writes it, from a real audit: circles
    drawn red 70% of the time (flagged), squares uniform (not flagged)."""
    rng = np.random.default_rng(0)
    values = ("red", "green", "blue")
    groups = ["circle"] * 150 + ["square"] * 150
    colours = ([str(rng.choice(values, p=[0.7, 0.15, 0.15])) for _ in range(150)]
               + [str(rng.choice(values)) for _ in range(150)])
    audits = audit_attribute(groups, colours, values, attribute="colour", rounds=100)
    folder.mkdir(parents=True)
    suite.write_audit(folder, AUDIT_SET, bias_figures(audits), distribution_frame(audits), audits,
                      {}, "x")
    return {a.group: a.flagged for a in audits}


def test_flagged_audit_groups_are_marked_everywhere(tmp_path):
    flagged = write_audit(tmp_path / AUDIT_SET)
    assert flagged == {"circle": True, "square": False}  # the planted skew, and only it
    paths = suite.report([tmp_path / AUDIT_SET / "metrics.csv"], [], tmp_path / "out",
                         ReportSpec(samples_per_class=0))
    html_text = paths["html"].read_text()
    parser = StrictHTML()
    parser.feed(html_text)
    parser.close()
    # one verdict per group, as a list item; only the flagged one is red
    items = re.findall(r"<li( class=\"flagged\")?>((?:circle|square): [^<]*)</li>", html_text)
    assert [(bool(cls), text.split(":")[0]) for cls, text in items] == [
        (True, "circle"), (False, "square")]
    assert "SKEWED" in items[0][1] and "no skew found" in items[1][1]
    # the headline names it in red
    headline = html_text.split('<section id="headline">')[1].split("</section>")[0]
    assert (f"Bias audit {AUDIT_SET}: 1 of 2 groups SKEWED: "
            '<strong class="flagged">circle</strong>') in headline
    md = headline_md(paths["summary"].read_text())
    assert f"- Bias audit {AUDIT_SET}: 1 of 2 groups SKEWED: **circle**" in md
    # and every chart of its figures says it outlines the flagged group in red
    captions = [c for c in re.findall(r"<figcaption>([^<]*)</figcaption>", html_text)
                if c.startswith("bias_")]
    assert len(captions) == 4
    assert all(c.endswith("outlined in red: groups their audit flagged (circle)")
               for c in captions)
    assert "share of each value per group; flagged groups shaded red" in html_text


def test_verdicts_come_from_the_audit_record_not_its_prose(tmp_path):
    """The report reads each group's verdict from audit.json; audit.txt is for people. An audit
    folder without audit.json (an older synthmill) gets a report that says so, with no verdict."""
    folder = tmp_path / AUDIT_SET
    write_audit(folder)
    (folder / "audit.txt").write_text("circle: no skew found\nsquare: SKEWED\n")  # ignored
    html_text = suite.report([folder / "metrics.csv"], [], tmp_path / "out",
                             ReportSpec(samples_per_class=0))["html"].read_text()
    assert '<li class="flagged">circle: SKEWED' in html_text
    assert '<li class="flagged">square' not in html_text

    (folder / "audit.json").unlink()
    paths = suite.report([folder / "metrics.csv"], [], tmp_path / "old",
                         ReportSpec(samples_per_class=0))
    html_text = paths["html"].read_text()
    assert "SKEWED" not in html_text and 'class="flagged"' not in html_text
    assert f"No verdicts: {folder / 'audit.json'} is missing" in html_text
    assert "Bias audit" not in headline_md(paths["summary"].read_text())


def test_a_count_is_a_count_and_charts_claim_only_what_they_draw(tmp_path):
    metrics = pd.DataFrame([
        row("synth-a", "unreadable_images", 0.0, NAN, NAN, n=4),
        row("synth-a", "layout_iou", 0.9, NAN, NAN, group="class=circle"),
        row("synth-a", "precision", 0.7, 0.6, 0.8)])
    (dataset,) = [make_dataset(tmp_path / "synth-a")]
    paths = write_report(tmp_path / "out", metrics, [dataset], samples_per_class=0)
    html_text = paths["html"].read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", html_text)
    assert not any("unreadable" in c for c in captions)  # no empty chart of zero files
    assert "layout_iou (higher is better; no intervals)" in captions
    assert "precision (higher is better; whiskers: interval)" in captions
    assert "<td>unreadable_images</td><td>all</td><td>0 files</td><td></td><td>4</td>" in html_text
    assert draws_whiskers(metrics[metrics.metric == "precision"])
    assert not draws_whiskers(metrics[metrics.metric == "layout_iou"])


def test_unreadable_files_reach_the_headline_as_a_count(report):
    md = headline_md(report["summary"])
    assert "- **synth-b: unreadable_images 1 file (excluded from the figures)**" in md
    assert "synth-a: unreadable_images" not in md  # none: nothing to say


def test_no_empty_headings_and_how_to_read_fits_the_report(tmp_path):
    (dataset,) = [make_dataset(tmp_path / "synth-a")]
    metrics = pd.DataFrame([row("synth-a", "unreadable_images", 0.0, NAN, NAN, n=4)])
    paths = write_report(tmp_path / "out", metrics, [dataset], samples_per_class=0)
    html_text, md = paths["html"].read_text(), paths["summary"].read_text()
    assert 'id="charts"' not in html_text and "<h2>Charts</h2>" not in html_text
    assert 'id="warnings"' not in html_text and "## Warnings" not in md
    # every h2 has something after it before the next heading
    for chunk in html_text.split("<h2>")[1:]:
        assert re.sub(r"<[^>]+>", "", chunk.split("</h2>", 1)[1].split("<h2>")[0]).strip()
    # one dataset: nothing about ranking datasets or audits
    assert HOW_TO_READ["intervals"] in md
    assert HOW_TO_READ["comparison"] not in md and HOW_TO_READ["audit"] not in md


def test_figure_sections_come_with_the_charts_before_the_samples(tmp_path):
    datasets = two_datasets(tmp_path)
    sections = [Section("Closest pairs (synth-a)", text="pairs"),
                Section("Utility (synth-a): does the synthetic set help?", text="gains",
                        with_figures=True)]
    paths = write_report(tmp_path / "out", metric_rows(), datasets, sections=sections,
                         samples_per_class=1)
    html_text, md = paths["html"].read_text(), paths["summary"].read_text()
    assert (html_text.index("<h2>Charts</h2>") < html_text.index("<h2>Utility (synth-a)")
            < html_text.index("<h2>Dataset: synth-a</h2>")
            < html_text.index("<h2>Closest pairs (synth-a)</h2>"))
    assert md.index("## Utility (synth-a)") < md.index("## synth-a") < md.index("## Closest")


def test_the_title_is_escaped_in_the_h1(tmp_path):
    paths = write_report(tmp_path / "out", metric_rows(), [], title="<b>x</b>")
    html_text = paths["html"].read_text()
    assert "<h1>&lt;b&gt;x&lt;/b&gt;</h1>" in html_text
    parser = StrictHTML()
    parser.feed(html_text)
    parser.close()
    assert "b" not in parser.tags
    assert "<b>x</b>" in parser.text  # shown as text
    assert paths["summary"].read_text().startswith("# &lt;b&gt;x&lt;/b&gt;\n")


def test_memorization_pairs_are_named_by_sample_id_in_both_files(tmp_path):
    """metrics.csv and the report name a generated sample by its manifest id and a reference
    sample by its file, the same way."""
    folder = tmp_path / "synth"
    dataset = make_dataset(tmp_path / "synth-a", n=6)
    reference = make_dataset(tmp_path / "real", n=6)
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(6, 8))
    generated = rng.normal(size=(3, 8))
    generated[1] = bank[4]  # the sample with id 3 (position 1 among ids 1, 3, 5) copies 000004
    names = ["#1", "#3", "#5"]
    files = [dataset / "images" / f"{i:06d}.png" for i in (1, 3, 5)]
    bank_files = [str(reference / "images" / f"{j:06d}.png") for j in range(6)]
    result = memorization(generated, bank, threshold=1e-6, top_k=2)
    figure = memorization_figure(result, names=names,
                                 reference_names=[Path(f).name for f in bank_files])
    folder.mkdir()
    write_metrics(figures_table([figure], "synth-a", "ref", "x"), folder, {})
    # what score_memorization leaves for the report, written as evaluate_one writes it
    (folder / "memorization.json").write_text(json.dumps(
        memorization_record(result, names, files, bank_files)))
    paths = suite.report([folder / "metrics.csv"], [dataset], tmp_path / "out",
                         ReportSpec(samples_per_class=0, memorization_examples=1))
    html_text = paths["html"].read_text()
    assert "1 of 3 flagged: #3;" in figure.details
    assert "closest generated -&gt; reference: #3 -&gt; 000004.png" in html_text  # metrics.csv
    assert "<figcaption>generated #3</figcaption>" in html_text  # the pair's pictures
    assert "<figcaption>nearest reference 000004.png: distance" in html_text
    assert "Flagged (1): #3." in paths["summary"].read_text()


def test_a_memorization_file_of_an_older_run_still_reports_its_pairs(tmp_path):
    """Pairs written as [file, reference file, distance] (before pairs were named) are named by
    their files, so `synthmill report` can rewrite an older run's report."""
    folder = tmp_path / "synth"
    dataset = make_dataset(tmp_path / "synth-a", n=2)
    folder.mkdir()
    write_metrics(pd.DataFrame([row("synth-a", "memorization_rate", 0.0, 0.0, 0.5, n=2)]),
                  folder, {})
    image = str(dataset / "images" / "000001.png")
    (folder / "memorization.json").write_text(json.dumps({
        "threshold": 0.002, "pairs": [[image, image, 0.0051]]}))
    html_text = suite.report([folder / "metrics.csv"], [dataset], tmp_path / "out",
                             ReportSpec(samples_per_class=0))["html"].read_text()
    assert "<figcaption>generated 000001.png</figcaption>" in html_text
    assert "nearest reference 000001.png: distance 0.0051 (not flagged; line 0.0020)" in html_text
