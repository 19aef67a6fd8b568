"""``synthmill``: the command line. Each command loads a config model and calls a flow or a library
entry point with it; errors are one clear line unless ``--debug``."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from augment.config.base import ConfigError
from evaluation.config import EvalSpec, ReportSpec
from flows.cli_common import (STATE, ItemLabels, SetOption, existing_inputs, fail, guarded,
                              load_with_overrides, prefect_server, ready_to_generate)
from flows.config import RunConfig
from flows.summaries import run_id
from flows.train_cli import train_app

app = typer.Typer(help="synthmill: labeled synthetic datasets from conditional diffusion models, "
                       "with honest quality numbers.", no_args_is_help=True, add_completion=False,
                   rich_markup_mode=None)
app.add_typer(train_app, name="train", short_help="Train the embedded models from a fixed seed.")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    STATE["debug"] = debug  # diffusers (3 s to import) is imported by the commands that need it
    if not (debug or verbose):  # errors are one line: Prefect's own logs of a failure are not
        os.environ["PREFECT_LOGGING_LEVEL"] = "CRITICAL"  # read when prefect is first imported
        # nor a local Dask cluster's INFO lines (read when distributed is first imported, here
        # and by its worker processes, which inherit it)
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quick_exit()


def quick_exit() -> None:
    """The interpreter's last garbage collection, of torch, diffusers and Prefect objects, took
    1.4-1.9 s of every command's exit. Freeze the heap at exit so that collection skips it: exit
    handlers (Prefect's server stop among them) still run, and every file is written and closed
    before the command returns."""
    atexit.unregister(gc.freeze)  # once, however many commands this process runs (tests)
    atexit.register(gc.freeze)


def _run_config(config: Path, out: Optional[Path], overrides: list[str] | None) -> RunConfig:
    run_config = load_with_overrides(config, RunConfig, overrides)
    if out is not None:
        run_config = run_config.model_copy(update={"out": str(out)})
    if not run_config.jobs:
        raise ConfigError(f"{config}: jobs: this config has no job")
    return run_config


OutOption = typer.Option(None, "--out", help="Output folder for datasets (overrides the config's out).")
ConfigArg = typer.Argument(..., exists=False, help="YAML run config (see configs/).")


@app.command(short_help="Generate the config's datasets (resumes a stopped run).")
def generate(config: Path = ConfigArg, out: Optional[Path] = OutOption,
             jobs: Optional[list[str]] = typer.Option(
                 None, "--job", metavar="NAME", help="Generate only this job (by name). Repeatable."),
             overrides: Optional[list[str]] = SetOption) -> None:
    """Generate the config's datasets (resumes an interrupted run of the same config).

    \b
    Example:
      synthmill generate configs/demo.yaml --job demo-shapes --set jobs.demo-shapes.num_samples=500
    """
    run_config = guarded(_run_config, config, out, overrides)
    if jobs:
        guarded(lambda: [run_config.job(name) for name in jobs])
    guarded(ready_to_generate, run_config, jobs)
    from flows.generate import run_generate
    from flows.interrupt import ctrl_c_stops_generation
    from flows.summaries import generation_markdown

    with ctrl_c_stops_generation(run_config, jobs):
        summaries = guarded(run_generate, run_config, jobs)
    for summary in summaries:
        typer.echo(generation_markdown(Path(summary["path"]).name, summary) + "\n")


@app.command(short_help="The main job: generate, evaluate, audit, report.")
def run(config: Path = ConfigArg, out: Optional[Path] = OutOption,
        overrides: Optional[list[str]] = SetOption) -> None:
    """The main job: generate the datasets, evaluate and audit them, write the report."""
    run_config = guarded(_run_config, config, out, overrides)
    guarded(ready_to_generate, run_config)
    if run_config.evaluate is not None:
        guarded(existing_inputs, {f"evaluate.{field}": path
                                  for field, path in run_config.evaluate.input_paths().items()})
    from flows.generate import heartbeats_only_for_a_lasting_server
    from flows.interrupt import ctrl_c_stops_generation
    from flows.pipeline import pipeline
    from flows.summaries import generation_markdown

    rid = run_id(f"run-{run_config.jobs[0].name}")
    report_dir = Path(run_config.evaluate.reports_dir if run_config.evaluate else "reports") / rid
    with ctrl_c_stops_generation(run_config), heartbeats_only_for_a_lasting_server():
        result = guarded(pipeline, run_config, str(report_dir),
                         {"run id": rid, "config": str(config)})
    for summary in result["generate"]:
        typer.echo(generation_markdown(Path(summary["path"]).name, summary) + "\n")
    if result["report"]:
        typer.echo((Path(result["report"]["summary"])).read_text().split("\n## ")[0])
        typer.echo(f"metrics: {report_dir / 'metrics.csv'}")
        typer.echo(f"report:  {result['report']['html']}")


@app.command(cls=ItemLabels, short_help="Serve the configs' schedules (needs a Prefect server).")
def serve(configs: list[Path] = typer.Argument(..., help="Run configs with a schedule: section."),
          overrides: Optional[list[str]] = SetOption) -> None:
    """Serve the configs' schedules as Prefect deployments until Ctrl-C (needs a Prefect server:
    PREFECT_API_URL). Each run writes a new dataset version <out>/<job>/vNNNN and moves
    <out>/<job>/latest once it succeeded.

    \b
    Example:
      prefect server start --host 127.0.0.1 &
      export PREFECT_API_URL=http://127.0.0.1:4200/api
      synthmill serve configs/nightly.yaml
    """
    from augment.core.weights import check_job_weights

    runs = [(path, guarded(load_with_overrides, path, RunConfig, overrides)) for path in configs]
    for path, run_config in runs:
        if run_config.schedule is None:
            fail(f"{path}: schedule: this config has no schedule: section (see README, "
                 "\"Schedules\")")
        if not run_config.jobs:
            fail(f"{path}: jobs: this config has no job")
        for job in run_config.jobs:
            guarded(check_job_weights, job)
    from flows.schedule import check_server, deployment

    url = guarded(check_server)
    deployments = [guarded(deployment, run_config, path) for path, run_config in runs]
    from prefect import serve as prefect_serve

    typer.echo(f"serving {len(deployments)} schedule(s) on {url}; Ctrl-C stops")
    guarded(prefect_serve, *deployments, print_starting_message=True)


@app.command(short_help="Remake one sample from its manifest row.")
def replay(dataset: Path = typer.Argument(..., help="A synthmill dataset folder."),
           sample_id: int = typer.Argument(..., help="The sample's id (manifest column id)."),
           out: Path = typer.Option(..., "--out", help="File for the sample (.png for images, "
                                                         ".wav for audio)."),
           device: Optional[str] = typer.Option(None, help="Run on another device (cpu, cuda).")
           ) -> None:
    """Regenerate one sample from its manifest row alone (same weights required).

    \b
    Example:
      synthmill replay datasets/demo-shapes 12 --out sample12.png
    """
    import pandas as pd

    from augment.core.records import replay_file

    def one():
        manifest = pd.read_parquet(dataset / "manifest.parquet")
        rows = manifest[manifest["id"] == sample_id]
        if rows.empty:
            raise ValueError(f"{dataset}: no sample with id {sample_id}")
        return replay_file(rows.iloc[0].to_dict(), out, device=device)

    typer.echo(f"wrote {guarded(one)}")


ReferenceOption = typer.Option(None, "--reference", "-r",
                               help="Image or audio folder, dataset, COCO .json or stats .npz.")
EvalConfigOption = typer.Option(None, "--config", help="YAML EvalSpec.")


def _evaluate(datasets: list[Path], spec: EvalSpec, reference: str | None, out: Path,
              report_spec: ReportSpec, run_info: dict) -> dict:
    """Evaluate and report: as a Prefect flow (recorded on the server) when a server is
    configured, else as the same library calls in this process (no temporary server to start)."""
    args = (spec, reference, str(out), report_spec, run_info)
    if prefect_server() is None:
        from evaluation.suite import evaluate_and_report

        return guarded(evaluate_and_report, [str(d) for d in datasets], *args)
    if len(datasets) == 1:
        from flows.evaluate import evaluate_flow

        return guarded(evaluate_flow, str(datasets[0]), *args)
    from flows.compare import compare_flow

    return guarded(compare_flow, [str(d) for d in datasets], *args)


def _print_metrics(metrics_csv: str) -> None:
    import pandas as pd

    table = pd.read_csv(metrics_csv)
    cols = ["dataset", "metric", "group", "value", "ci_low", "ci_high", "n"]
    typer.echo(table[table.group == "all"][cols].round(4).to_string(index=False))


@app.command(short_help="Score one dataset: every figure with N and an interval.")
def evaluate(
    dataset: Path = typer.Argument(..., help="Synthmill dataset folder (or an image or audio folder)."),
    reference: Optional[str] = ReferenceOption,
    config: Optional[Path] = EvalConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default reports/<run-id>)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """FID, KID, IS, precision/recall, CLIP alignment, layout fidelity, diversity, memorization
    (images); FAD, KID, audio IS, label consistency, event F1, CLAP alignment (audio): each with N
    and a confidence interval; writes metrics.csv, summary.md and report.html."""

    spec = guarded(load_with_overrides, config, EvalSpec, overrides)
    guarded(existing_inputs, {"dataset": dataset, "--reference": reference, **spec.input_paths()})
    rid = run_id(f"eval-{dataset.name}")
    out = out or Path(spec.reports_dir) / rid
    paths = _evaluate([dataset], spec, reference, out, ReportSpec(), {"run id": rid})
    _print_metrics(paths["metrics"])
    typer.echo(f"\nmetrics: {paths['metrics']}\nreport:  {paths['html']}")


@app.command(cls=ItemLabels, short_help="Score several datasets side by side in one report.")
def compare(
    datasets: list[Path] = typer.Argument(..., help="Two or more dataset folders."),
    reference: Optional[str] = ReferenceOption,
    config: Optional[Path] = EvalConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default reports/<run-id>)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Line up several datasets/generators in one table: best per metric, ties within intervals."""

    spec = guarded(load_with_overrides, config, EvalSpec, overrides)
    guarded(existing_inputs, {**{f"dataset {i + 1}": d for i, d in enumerate(datasets)},
                              "--reference": reference, **spec.input_paths()})
    rid = run_id("compare")
    out = out or Path(spec.reports_dir) / rid
    paths = _evaluate(datasets, spec, reference, out, ReportSpec(title="synthmill comparison"),
                      {"run id": rid})
    _print_metrics(paths["metrics"])
    typer.echo(f"\nmetrics: {paths['metrics']}\nreport:  {paths['html']}")


@app.command(short_help="Does the synthetic set help a model trained on real data?")
def utility(
    dataset: Path = typer.Argument(..., help="Synthetic image dataset (with masks) to judge."),
    real: Optional[Path] = typer.Option(None, "--real", help="Real training pool (a dataset "
                                        "folder; default: embedded shapes-world scenes)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Held-out real test set (a dataset "
                                        "folder; default: embedded shapes-world scenes)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML UtilitySpec."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default reports/<run-id>)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Does the synthetic set help? Trains a segmenter from scratch on real-only, real+synthetic,
    synthetic-only and more-real arms at each real budget and seed; tests on held-out real
    images (mIoU, box AP by pycocotools); reports each arm's gain over real-only with an interval.

    \b
    Example:
      synthmill utility datasets/demo-shapes --set budgets=[50] --set seeds=3
    """
    from evaluation.config import UtilitySpec

    spec = guarded(load_with_overrides, config, UtilitySpec, overrides)
    guarded(existing_inputs, {"dataset": dataset, "--real": real, "--test": test})
    rid = run_id(f"utility-{dataset.name}")
    out = out or Path("reports") / rid
    from flows.utility import utility_flow

    paths = guarded(utility_flow, str(dataset), str(real) if real else None,
                    str(test) if test else None, spec, str(out), {"run id": rid})
    from evaluation.utility import headline
    import pandas as pd

    typer.echo(headline(pd.read_csv(paths["metrics"])))
    typer.echo(f"\nmetrics: {paths['metrics']}\nreport:  {paths['html']}")


@app.command("report", cls=ItemLabels, short_help="Rewrite a report from existing metrics.csv files.")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Evaluation folders holding metrics.csv."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged report."),
    datasets: Optional[list[Path]] = typer.Option(
        None, "--dataset", help="Dataset folders to show. Repeatable."),
) -> None:
    """(Re)write summary.md and report.html from existing metrics.csv files."""
    from evaluation.suite import report

    files = [d / "metrics.csv" for d in run_dirs]
    for f in files:
        if not f.exists():
            fail(f"{f} not found: pass folders written by `synthmill evaluate` or `compare`")
    paths = guarded(report, files, datasets or [], out, ReportSpec())
    typer.echo(f"report: {paths['html']}")


@app.command(short_help="Compute a reference set's features once (.npz).")
def reference(
    source: Path = typer.Argument(..., help="Image or audio folder, synthmill dataset or COCO .json."),
    out: Path = typer.Option(..., "--out", help="Output .npz of reference features."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder of a COCO file."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML EvalSpec (extractor)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Compute a reference set's features once (by the fidelity extractor of its modality); pass
    the .npz to --reference afterwards."""
    from evaluation.reference import reference_from_set, save_reference

    spec = guarded(load_with_overrides, config, EvalSpec, overrides)
    ref, _ = guarded(reference_from_set, source, spec, None, images)
    save_reference(ref, out)
    typer.echo(f"saved {len(ref.features)} reference features ({ref.extractor}) to {out}")


@app.command("convert-weights", short_help="Convert a .pth state dict to safetensors.")
def convert_weights(src: Path = typer.Argument(..., help="A .pth state dict (tensors only)."),
                    dst: Path = typer.Argument(..., help="Output .safetensors file.")) -> None:
    """Convert a PyTorch state dict to safetensors with a tensors-only unpickler (weights_only)."""
    import torch
    from safetensors.torch import save_file

    def convert():
        state = torch.load(src, map_location="cpu", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(dst))

    guarded(convert)
    typer.echo(f"wrote {dst}")


def entry() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":
    sys.exit(app())
