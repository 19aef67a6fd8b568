"""Ctrl-C in ``synthmill generate`` and ``synthmill run``.

The first Ctrl-C asks generation to stop (``augment.core.stopping``): a running shard stops at its
next network block, writes nothing partial and no manifest part, the flows fail with
``GenerationInterrupted`` and release the folder lock, and the command prints one line saying how
far generation got and how to resume, then exits 130. When no shard is running (the Prefect server
starting, a dataset being finalized, evaluation) the Ctrl-C interrupts the main thread as usual,
and ends in the same line. Prefect's own log lines about the interruption (a task "failed", a
"Crash detected!") are dropped: the one line says it all. A second Ctrl-C kills the process (and
Prefect's temporary server) at once; a later run removes the temporary files it may leave.

A terminal sends Ctrl-C to the whole process group, Prefect's temporary server included: stopped
by it, the server could not record how the flow ended, and the flow's last state update would
retry for a minute, then fail with a traceback. So the server is started here, before the flow,
from a thread that blocks SIGINT: the server process inherits the blocked signal and keeps
running until the exit handler stops it (SIGTERM), as after any run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager

import typer

from augment.core.shards import dataset_dir, samples_done
from augment.core.stopping import (GenerationInterrupted, clear_stop, request_stop,
                                   shards_running, stop_requested)
from flows.cli_common import guarded
from flows.config import RunConfig

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C
_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_SERVERS: list = []  # Prefect's temporary server, once started here


class _DropInterruptLogs(logging.Filter):
    """Drops Prefect's records about a run ended by Ctrl-C (its exception, its "Crash detected!")."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (GenerationInterrupted, KeyboardInterrupt)):
            return False
        message = record.getMessage()
        return not ("GenerationInterrupted" in message or "interrupt signal" in message
                    or "KeyboardInterrupt" in message)


def _on_sigint(signum, frame) -> None:
    if stop_requested():  # the second Ctrl-C: die now, as without this handler
        _kill_servers()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return
    request_stop()
    if not shards_running():
        raise KeyboardInterrupt


def _kill_servers() -> None:
    for server in _SERVERS:
        if server.server_process is not None:
            server.server_process.kill()


def start_server_ignoring_ctrl_c() -> None:
    """Start Prefect's temporary server, when this process uses one (no ``PREFECT_API_URL``),
    with SIGINT blocked (see the module's docstring); the flows then find it running. A Ctrl-C
    while it starts interrupts the wait and stops the server."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED

    from flows.runners import configured_server

    if configured_server() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer  # what get_client() starts too

    # The server logs at its own level (a separate setting): follow the command's, so that a
    # flush of events cut short when the server is stopped at exit prints no traceback after the
    # command's last line.
    os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL",
                          os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"))
    server, errors = SubprocessASGIServer(), []
    _SERVERS.append(server)

    def start() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # this thread and its children
        try:
            server.start()
        except Exception as exc:  # handed to the waiting thread
            errors.append(exc)

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)  # the main thread stays free to take a Ctrl-C
    except KeyboardInterrupt:
        _kill_servers()
        raise
    if errors:
        raise errors[0]


def resume_line(config: RunConfig, names: list[str] | None = None) -> str:
    """Where an interrupted run of ``config`` (its jobs ``names``, or all) stands, read from the
    dataset folders, and how to go on."""
    jobs = config.selected_jobs(names)
    for job in jobs:
        done = samples_done(job, dataset_dir(job, config.out))
        if done < job.num_samples:
            return (f"interrupted: {done} of {job.num_samples} samples of {job.name} are done; "
                    "run the same command again to resume")
    return "interrupted after generating the datasets; run the same command again to resume"


@contextmanager
def ctrl_c_stops_generation(config: RunConfig, names: list[str] | None = None):
    """Within the block, Ctrl-C stops generation cleanly (see the module's docstring); an
    interruption ends the command with ``resume_line`` and exit status 130."""
    clear_stop()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    quiet = _DropInterruptLogs()
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        guarded(start_server_ignoring_ctrl_c)
        yield
    except (GenerationInterrupted, KeyboardInterrupt):
        typer.echo(resume_line(config, names), err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)
        for name in _PREFECT_RUN_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
        clear_stop()
