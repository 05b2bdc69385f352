"""`facetalk jobs ...`, `facetalk worker` and `facetalk outputs ...`, registered by facetalk.cli.

    facetalk jobs submit --face F --audio A [-o OUT]   queue a render (the options of render)
    facetalk worker [--concurrency N] [--once]         run queued jobs on this machine
    facetalk worker --ray HOST:PORT                    ... or as tasks on a Ray cluster
    facetalk jobs list | show | watch | log | cancel | retry | clean
    facetalk outputs zip --since 2026-11-01 -o pack.zip
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..progress import table
from .store import FINAL_STATES, Job, JobError, JobState, JobStore, parse_duration


def _home(home: str | None) -> Path:
    from ..home import facetalk_home

    return Path(home).expanduser() if home else facetalk_home()


_HOME_OPTION = {"type": click.Path(file_okay=False), "default": None,
                "help": "Facetalk home holding jobs.db, outputs/ and logs/ [default: $FACETALK_HOME, else the user data folder]."}


@click.group("jobs")
@click.option("--home", **_HOME_OPTION)
@click.pass_context
def jobs_group(click_ctx: click.Context, home: str | None) -> None:
    """Render jobs: queue them, follow them, cancel or retry them.

    Every render is a job, `facetalk render` included. A job id may be shortened to any
    unique prefix, or to its last part (the random suffix).
    """
    click_ctx.obj = {**(click_ctx.obj or {}), "home": _home(home)}


def _store(obj: dict) -> JobStore:
    if "store" not in obj:
        obj["store"] = JobStore.at_home(obj["home"])
    return obj["store"]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _progress(job: Job) -> str:
    if job.state == JobState.RUNNING:
        return f"{job.stage or 'starting'} {job.progress * 100:3.0f}%"
    return "100%" if job.state == JobState.SUCCEEDED else "-"


@jobs_group.command("list")
@click.option("--state", type=click.Choice([str(s) for s in JobState]), default=None, help="Only jobs in this state.")
@click.option("--batch", default=None, help="Only jobs of this batch.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="The newest N jobs.")
@click.option("--all", "all_", is_flag=True, help="Every job (no --limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per job) instead of a table.")
@click.pass_obj
def list_command(obj: dict, state: str | None, batch: str | None, limit: int, all_: bool, as_json: bool) -> None:
    """List jobs, oldest first: id, name, state, progress, attempts, age."""
    store = _store(obj)
    store.requeue_expired()
    jobs = store.list(state=state, batch=batch, limit=None if all_ else limit)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in jobs], indent=2))
        return
    if not jobs:
        click.echo("no jobs" + (f" {state}" if state else "") + " (queue one with 'facetalk jobs submit')")
        return
    now = time.time()
    click.echo(table(["ID", "NAME", "STATE", "PROGRESS", "ATTEMPTS", "AGE"], [
        [j.id, j.name, str(j.state), _progress(j), f"{j.attempts}/{j.max_attempts}", _age(now - j.created)] for j in jobs]))


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON, with its history.")
@click.pass_obj
def show_command(obj: dict, job_id: str, as_json: bool) -> None:
    """Show a job: its request, state, error, outputs and history."""
    store = _store(obj)
    store.requeue_expired()
    job = store.get(job_id)
    events = store.events(job.id)
    if as_json:
        click.echo(json.dumps({**job.to_dict(), "events": events}, indent=2, default=str))
        return
    lines = [
        f"id:        {job.id}",
        f"name:      {job.name}" + (f"   batch: {job.batch}" if job.batch else ""),
        f"state:     {job.state}" + (f" ({_progress(job)})" if job.state == JobState.RUNNING else ""),
        f"attempts:  {job.attempts}/{job.max_attempts}" + (f" on {job.worker}" if job.worker else ""),
        f"submitted: {_when(job.created)}",
        f"started:   {_when(job.started)}",
        f"finished:  {_when(job.finished)}",
    ]
    if job.error:
        lines.append(f"error:     {job.error}")
    for i, o in enumerate(job.outputs):
        lines.append(("outputs:   " if i == 0 else "           ") + o)
    if job.metrics:
        m = job.metrics
        if "width" in m:
            lines.append(f"result:    {m.get('width')}x{m.get('height')}, {m.get('duration', 0):.2f} s, "
                         f"{m.get('n_frames')} frames, lip-sync from {m.get('speech_method')}, rendered in {m.get('seconds', 0):.2f} s")
        for w in m.get("warnings", []):
            lines.append(f"warning:   {w}")
    req = {k: v for k, v in job.request.items() if v is not None and k != "transcript"}
    if job.request.get("transcript"):
        t = " ".join(str(job.request["transcript"]).split())
        req["transcript"] = t if len(t) < 60 else t[:57] + "..."
    lines.append("request:   " + json.dumps(req))
    lines.append("versions:  " + ", ".join(f"{k} {v}" for k, v in job.versions.items()))
    lines.append("history:")
    lines += [f"  {_when(e['time'])}  {e['message']}" for e in events]
    click.echo("\n".join(lines))


def watch_job(store: JobStore, job_id: str, interval: float = 0.25, quiet: bool = False, json_progress: bool = False) -> Job:
    """Follow a job until it ends (a progress bar on stderr, or JSON events); the final job.
    Raises JobError when it failed or was cancelled."""
    from ..progress import JsonProgress

    job = store.get(job_id)
    bar = None
    emit = JsonProgress() if json_progress else None
    shown = (None, -1.0, None)
    last_reap = 0.0
    try:
        while True:
            if job.state == JobState.RUNNING and time.monotonic() - last_reap > 5.0:
                store.requeue_expired()  # a dead worker's job must not look running for ever
                last_reap = time.monotonic()
                job = store.get(job.id)
            now = (job.state, job.progress, job.stage)
            if now != shown:
                shown = now
                if emit is not None:
                    emit.emit("job", id=job.id, state=str(job.state), stage=job.stage, fraction=round(job.progress, 4))
                elif not quiet:
                    desc = f"{job.id} {job.state}" + (f" {job.stage:>7}" if job.stage else "")
                    if bar is None:
                        from tqdm import tqdm

                        bar = tqdm(total=1000, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
                                   bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}")
                    bar.set_description_str(desc, refresh=False)
                    bar.n = round(job.progress * 1000)
                    bar.refresh()
            if job.state in FINAL_STATES:
                break
            time.sleep(interval)
            job = store.get(job.id)
    finally:
        if bar is not None:
            bar.close()
    if job.state != JobState.SUCCEEDED:
        raise JobError(f"job {job.id} {job.state}: {job.error or 'no error recorded'}")
    return job


@jobs_group.command("watch")
@click.argument("job_id")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.25, show_default=True, help="Seconds between looks.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="No progress bar; only the result.")
@click.option("--json-progress", is_flag=True, help="One JSON event per change on stderr.")
@click.pass_obj
def watch_command(obj: dict, job_id: str, interval: float, quiet_flag: bool, json_progress: bool) -> None:
    """Follow a job with a progress bar until it ends. Exit code 0 when it succeeded, 2
    (with its error) when it failed or was cancelled."""
    job = watch_job(_store(obj), job_id, interval, quiet_flag, json_progress)
    if not quiet_flag:
        click.echo(f"job {job.id} succeeded: " + ", ".join(job.outputs))


@jobs_group.command("log")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.pass_obj
def log_command(obj: dict, job_id: str, follow: bool) -> None:
    """Print a job's log (each attempt, stage, warning and error)."""
    from .logs import job_log_path, read_job_log

    store = _store(obj)
    job = store.get(job_id)
    text = read_job_log(obj["home"], job.id)
    if text is None and not follow:  # the log is on another machine: the history the store holds
        for e in store.events(job.id):
            click.echo(f"{_when(e['time'])} {e['message']}")
        return
    if not follow:
        click.echo(text, nl=False)
        return
    path, pos = job_log_path(obj["home"], job.id), 0
    while True:
        final = store.get(job.id).state in FINAL_STATES
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
        except FileNotFoundError:
            chunk = ""
        if chunk:
            click.echo(chunk, nl=False)
        if final:
            return
        time.sleep(0.25)


@jobs_group.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_obj
def cancel_command(obj: dict, job_ids: tuple[str, ...]) -> None:
    """Cancel queued or running jobs (a running one stops within a second or two)."""
    store = _store(obj)
    for job_id in job_ids:
        job = store.cancel(job_id)
        click.echo(f"job {job.id} cancelled")


@jobs_group.command("retry")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_obj
def retry_command(obj: dict, job_ids: tuple[str, ...]) -> None:
    """Queue failed or cancelled jobs again (with all their attempts)."""
    store = _store(obj)
    for job_id in job_ids:
        job = store.retry(job_id)
        click.echo(f"job {job.id} queued again")


@jobs_group.command("clean")
@click.option("--older-than", "older_than", default="30d", show_default=True,
              help="Age since they finished: a number with s, m, h, d or w.")
@click.pass_obj
def clean_command(obj: dict, older_than: str) -> None:
    """Forget finished jobs (succeeded, failed, cancelled) older than this, with their logs.
    Their outputs stay."""
    n = _store(obj).clean(parse_duration(older_than))
    click.echo(f"removed {n} finished job{'s' if n != 1 else ''} older than {older_than}")


# -- worker -----------------------------------------------------------------------------

@click.command("worker")
@click.option("--home", **_HOME_OPTION)
@click.option("-j", "--concurrency", type=click.IntRange(1, 64), default=None,
              help="Worker processes (each renders one job at a time) [default: 1]; with --ray, jobs sent to the "
                   "cluster at once [default: the cluster's CPUs / 2].")
@click.option("--once", is_flag=True, help="Exit when no job is left to take (drain the queue).")
@click.option("--lease", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="Seconds a job stays a worker's without a renewal; after that a dead worker's job runs again.")
@click.option("--renew", type=click.FloatRange(min=0.05), default=None, hidden=True,
              help="Seconds between lease renewals [default: 0.5, at most a quarter of --lease].")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between looks at an empty queue.")
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="GPUs this worker has: it takes only jobs needing no more.")
@click.option("--batch", default=None, help="Only jobs of this batch (see 'facetalk batch --submit-only').")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run the jobs as tasks on the Ray cluster at ADDRESS (host:port of its head node), each asking for "
                   "its CPUs and GPUs; this process keeps the job store and the outputs.")
@click.option("--quiet", "quiet_flag", is_flag=True, help="Print nothing but errors.")
def worker_command(home, concurrency, once, lease, renew, poll, gpus, batch, ray_address, quiet_flag) -> None:
    """Run queued render jobs on this machine (or a Ray cluster) until Ctrl-C or SIGTERM.

    A job that is running when the worker is stopped goes back to the queue (the attempt
    is not counted). A worker that dies (kill -9, a crash) loses only its job, which runs
    again once its lease expires; with --ray, so does a job whose node or task is lost.
    With --ray, a job needing more GPUs than any node of the cluster has stays queued.
    """
    from .worker import Pool, Worker, stop_on_signals

    home_path = _home(home)
    JobStore.at_home(home_path).close()  # a store that cannot be used fails here, once
    echo = None if quiet_flag else (lambda line: click.echo(line, err=True))
    if ray_address:
        from .ray_executor import RayWorker

        worker = RayWorker(home_path, ray_address, concurrency=concurrency, lease_s=lease, renew_s=renew, poll_s=poll,
                           once=once, batch=batch, on_event=echo)
        with stop_on_signals(worker.stop):
            worker.run()
        return
    concurrency = concurrency or 1
    if concurrency == 1:
        worker = Worker(home_path, lease_s=lease, renew_s=renew, poll_s=poll, gpus=gpus, once=once, on_event=echo,
                        batch=batch)
        if echo:
            echo(f"{worker.id}: started (home {home_path})" + (", until the queue is empty" if once else ""))
        with stop_on_signals(worker.stop):
            worker.run()
        return
    pool = Pool(home_path, concurrency, lease_s=lease, poll_s=poll, gpus=gpus, once=once, quiet=quiet_flag,
                renew_s=renew, on_event=echo, batch=batch)
    with stop_on_signals(pool.stop):
        code = pool.run()
    if code:
        raise SystemExit(code)


# -- outputs ----------------------------------------------------------------------------

@click.group("outputs")
@click.option("--home", **_HOME_OPTION)
@click.pass_context
def outputs_group(click_ctx: click.Context, home: str | None) -> None:
    """What jobs rendered: outputs/<date>/<job-id>-<name>.mp4, each with a JSON sidecar."""
    click_ctx.obj = {**(click_ctx.obj or {}), "home": _home(home)}


@outputs_group.command("zip")
@click.option("--since", required=True, help="First day: 2026-11-01, 'today', or days back (7d).")
@click.option("--until", default=None, help="Last day (included) [default: today].")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .zip to write.")
@click.option("--force", is_flag=True, help="Replace the zip if it exists.")
@click.pass_obj
def zip_command(obj: dict, since: str, until: str | None, output: str, force: bool) -> None:
    """Pack the videos and sidecars of those days into one zip."""
    from .outputs import parse_day, zip_outputs

    first = parse_day(since, "--since")
    last = parse_day(until, "--until") if until else None
    if last is not None and last < first:
        raise JobError(f"--until {last} is before --since {first}")
    path, n = zip_outputs(obj["home"], first, last, Path(output), force=force)
    click.echo(f"wrote {path} ({n} files, {path.stat().st_size / 1e6:.1f} MB)")


# -- submit -----------------------------------------------------------------------------
# Defined last: it reuses facetalk.cli's render options, and facetalk.cli imports this
# module at its end; importing facetalk.cli here, after the names it needs from this
# module exist, works whichever of the two is imported first.

from ..cli import render_options


def _submit_options(f):
    f = render_options(f)
    for p in getattr(f, "__click_params__", []):
        if p.name == "output":  # optional here: without it the job writes to outputs/<date>/
            p.required = False
            p.help = "The MP4 to write [default: <home>/outputs/<date>/<job-id>-<name>.mp4]."
    return f


@jobs_group.command("submit")
@_submit_options
@click.option("--name", default=None, help="Name of the job (and its output) [default: the output's or the face's].")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Attempts before a job whose output cannot be written (or that crashes) fails.")
@click.option("--batch", default=None, help="Tag the job with a batch name (see 'jobs list --batch').")
@click.option("--cpus", type=click.IntRange(1, 256), default=2, show_default=True,
              help="CPUs the job asks of a Ray node ('worker --ray').")
@click.option("--gpus", "job_gpus", type=click.IntRange(0, 64), default=None,
              help="GPUs the job needs: only a worker or Ray node with that many takes it [default: 1 with "
                   "--device cuda, else 0].")
@click.option("--wait", is_flag=True, help="Follow the job until it ends, like 'jobs watch'.")
@click.pass_obj
def submit_command(obj: dict, name: str | None, max_attempts: int, batch: str | None, cpus: int, job_gpus: int,
                   wait: bool, **opts) -> None:
    """Queue a render of FACE (or --identity) speaking AUDIO; a worker runs it.

    Takes the options of `facetalk render`. Inputs are checked now, so bad input fails here
    with one line; paths are stored absolute.
    """
    import dataclasses

    from ..framing import parse_size
    from ..pipeline import RenderRequest
    from ..speech.text import read_transcript
    from .runner import prepare_request

    quiet_flag, json_progress = opts.pop("quiet_flag", False), opts.pop("json_progress", False)
    fields = {f.name for f in dataclasses.fields(RenderRequest)}
    values = {k: v for k, v in opts.items() if k in fields}
    values["transcript"] = read_transcript(opts.get("transcript"))
    values["size"] = parse_size(opts.get("size"))
    values["output"] = opts.get("output") or None
    request, versions = prepare_request(RenderRequest(**values), obj["home"])
    store = _store(obj)
    from .batch import default_gpus

    gpus = job_gpus if job_gpus is not None else default_gpus(request)
    job = store.submit(request, name=name, batch=batch, max_attempts=max_attempts, versions=versions,
                       resources={"cpus": cpus, "gpus": gpus})
    if json_progress:
        click.echo(json.dumps(job.to_dict()))
    elif quiet_flag:
        click.echo(job.id)
    else:
        from .outputs import output_path

        click.echo(f"submitted job {job.id} ({job.name}) -> {output_path(obj['home'], job)}")
    if wait:
        job = watch_job(store, job.id, quiet=quiet_flag, json_progress=json_progress)
        if not quiet_flag and not json_progress:
            click.echo(f"job {job.id} succeeded: " + ", ".join(job.outputs))


__all__ = ["jobs_group", "outputs_group", "watch_job", "worker_command"]
