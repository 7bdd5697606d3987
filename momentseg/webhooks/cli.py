"""``momentseg webhooks serve | worker | runs``: the companion that answers CVAT's webhooks.

Secrets and URLs with passwords come from the environment only (never the command line, which other
users can read in the process list): MOMENTSEG_WEBHOOK_SECRET(_FILE), CVAT_ACCESS_TOKEN or
CVAT_USER/CVAT_PASSWORD (or CVAT_CREDENTIALS_FILE), MOMENTSEG_REDIS_URL.
"""

from __future__ import annotations

import argparse
import logging
import threading


def register(commands) -> None:
    """Add the ``webhooks`` command to momentseg's sub-commands."""
    from momentseg.arguments import port, positive_float
    from momentseg.options import add_option_flags

    webhooks = commands.add_parser("webhooks", help="start annotate/refine from CVAT issue comments (webhooks)")
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True)

    serve = sub.add_parser("serve", help="the HTTP endpoint CVAT delivers to (POST /webhooks/cvat)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8090, help="port (default 8090; 0: any free port)")
    _add_settings(serve)
    serve.set_defaults(run=_run_serve)

    worker = sub.add_parser("worker", help="run the queued commands (loads the model once)")
    worker.add_argument("--workers", type=int, default=1, help="runs at a time (default 1: one model in memory)")
    where = worker.add_mutually_exclusive_group()
    where.add_argument("--checkpoint", help="run the model in this process from this checkpoint")
    where.add_argument("--function", help="URL of the deployed MomentSeg function (task mode) instead")
    worker.add_argument("--device", help="cuda or cpu, with --checkpoint (default: cuda when present)")
    worker.add_argument("--fps", type=positive_float, help="frame rate for the moment in seconds (default 30)")
    _add_settings(worker)
    add_option_flags(worker, "method options (a command's own name:value options take precedence)")
    worker.set_defaults(run=_run_worker)

    runs = sub.add_parser("runs", help="list the queue's runs, or follow, summarise or cancel a batch")
    runs.add_argument("--batch", help="only this batch's runs (its name, as 'cvat annotate' printed)")
    runs.add_argument("--watch", action="store_true", help="with --batch: follow it until every run finished")
    runs.add_argument("--summary", metavar="FILE", help="with --batch: write its summary (.json, else CSV)")
    runs.add_argument("--cancel", action="store_true", help="with --batch: cancel its unfinished runs")
    _add_settings(runs)
    runs.set_defaults(run=_run_runs)


def add_batch_options(annotate: argparse.ArgumentParser) -> None:
    """``momentseg cvat annotate --project/--tasks``: the batch's name, following it, its summary."""
    group = annotate.add_argument_group(
        "batches (--project, --tasks): runs on the webhook queue "
        "(MOMENTSEG_REDIS_URL or MOMENTSEG_WEBHOOK_QUEUE), done by its workers"
    )
    group.add_argument(
        "--batch",
        help="the batch's name (default: project-P or the file's name); the same "
        "name again resumes it: only runs not done are queued",
    )
    group.add_argument(
        "--detach",
        action="store_true",
        help="queue the runs and return (follow them with 'momentseg webhooks runs --batch NAME --watch')",
    )
    group.add_argument(
        "--summary",
        metavar="FILE",
        help="when the batch has finished, write its summary (.json, else CSV): task, object, frames written, moment",
    )
    group.add_argument(
        "--queue", help="SQLite file of the queue (MOMENTSEG_WEBHOOK_QUEUE); ignored with MOMENTSEG_REDIS_URL"
    )


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("webhook settings (defaults from MOMENTSEG_WEBHOOK_* variables)")
    group.add_argument(
        "--queue", help="SQLite file of the queue (MOMENTSEG_WEBHOOK_QUEUE); ignored with MOMENTSEG_REDIS_URL"
    )
    group.add_argument("--projects", help="CVAT project ids answered, comma-separated (MOMENTSEG_WEBHOOK_PROJECTS)")
    group.add_argument(
        "--cvat-hosts",
        help="host[:port] names CVAT uses in its deliveries, comma-separated "
        "(MOMENTSEG_WEBHOOK_CVAT_HOSTS; default: CVAT_HOST's)",
    )


def _settings(args: argparse.Namespace):
    import os

    from momentseg.webhooks.config import WebhookSettings

    env = dict(os.environ)
    for flag, name in (
        ("queue", "MOMENTSEG_WEBHOOK_QUEUE"),
        ("projects", "MOMENTSEG_WEBHOOK_PROJECTS"),
        ("cvat_hosts", "MOMENTSEG_WEBHOOK_CVAT_HOSTS"),
    ):
        if getattr(args, flag, None):
            env[name] = getattr(args, flag)
    return WebhookSettings.from_env(env)


def build(settings, make_runner=None, env=None, fps=None):
    """The queue and the runs for these settings, connected to CVAT_HOST with the environment's credentials
    (checked here, so that a service without them does not start)."""
    import functools

    from momentseg.cvat.connection import CvatConfigurationError, connect_from_env, credentials_from_env
    from momentseg.webhooks.runs import CvatRuns

    credentials = credentials_from_env(env)
    if not credentials["host"]:
        raise CvatConfigurationError("no CVAT server configured: set CVAT_HOST (how this service reaches CVAT)")
    if not credentials["access_token"] and not (credentials["user"] and credentials["password"]):
        raise CvatConfigurationError(
            "no CVAT credentials for the service account: set CVAT_ACCESS_TOKEN (or "
            "CVAT_USER and CVAT_PASSWORD), or CVAT_CREDENTIALS_FILE"
        )

    runs = CvatRuns(settings, functools.partial(connect_from_env, env), make_runner, **({"fps": fps} if fps else {}))
    return open_queue(settings, runs), runs


def open_queue(settings, runs=None):
    """The queue these settings name (the runs behind it: only where it runs them)."""
    from momentseg.webhooks.queue import WebhookQueue, open_huey

    return WebhookQueue(
        open_huey(settings.queue_path, settings.redis_url),
        runs,
        retries=settings.retries,
        retry_delay=settings.retry_delay,
        progress_step=settings.progress_step,
        lease_seconds=settings.lease_seconds,
        retention_days=settings.retention_days,
        max_waiting=settings.max_waiting,
    )


def _run_serve(args: argparse.Namespace) -> int:
    import os

    from momentseg.errors import MomentSegError
    from momentseg.serve import ServeSettings, bind, make_server
    from momentseg.webhooks.app import create_webhook_app

    settings = _settings(args)
    http = ServeSettings.from_env(os.environ)
    queue, runs = build(settings)
    try:
        sock = bind(args.host, args.port)
    except OSError as error:
        raise MomentSegError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = sock.getsockname()[:2]
    print(
        f"answering CVAT webhooks on http://{host}:{port}/webhooks/cvat for projects "
        f"{sorted(settings.projects)} of {sorted(settings.cvat_hosts)}",
        flush=True,
    )
    app = create_webhook_app(settings, queue, runs, http, cvat_url=os.environ.get("CVAT_HOST"))
    make_server(app, sock, settings=http).run(sockets=[sock])
    return 0


def runner_factory(args: argparse.Namespace):
    """How the worker runs a command: the model here (``--checkpoint``, loaded now) or the function
    (``--function``), with the worker's options and, over them, those the command carries."""
    from dataclasses import replace

    from momentseg.devices import default_device
    from momentseg.errors import MomentSegError
    from momentseg.options import options_from_args

    options = options_from_args(args)
    if args.function:
        from momentseg.cvat.runners import function_runner

        def make_runner(client, command_options, progress):
            return function_runner(args.function, replace(options, **command_options), args.fps, progress=progress)
    elif args.checkpoint:
        from momentseg.cvat.runners import local_runner
        from momentseg.model.checkpoint import load_checkpoint
        from momentseg.pipeline import MomentSegPipeline

        pipeline = MomentSegPipeline(load_checkpoint(args.checkpoint, device=args.device or default_device()))

        def make_runner(client, command_options, progress):
            return local_runner(client, pipeline, replace(options, **command_options), args.fps, progress=progress)
    else:
        raise MomentSegError("give --checkpoint PATH (run the model here) or --function URL (the deployed function)")
    return make_runner


def _run_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    make_runner = runner_factory(args)
    queue, _ = build(settings, make_runner, fps=args.fps)
    requeued = queue.recover()
    print(
        f"worker {queue.worker} on {'Redis' if settings.redis_url else settings.queue_path}: {len(requeued)} "
        f"unfinished runs re-queued; leases of {settings.lease_seconds:g} s",
        flush=True,
    )
    consumer = queue.consumer(args.workers)
    queue.stopping = consumer.stop_flag  # set on SIGTERM: a run not yet writing is handed back
    stop = threading.Event()
    queue.housekeeping(stop)
    try:
        consumer.run()
    finally:
        stop.set()
    return 0


def _queue_settings(args: argparse.Namespace):
    """The queue's settings alone (a batch does not answer webhooks)."""
    import os

    from momentseg.webhooks.config import WebhookSettings

    env = dict(os.environ)
    if getattr(args, "queue", None):
        env["MOMENTSEG_WEBHOOK_QUEUE"] = args.queue
    return WebhookSettings.from_env(env, endpoint=False)


def run_batch(args: argparse.Namespace, connect) -> int:
    """Queue one run per task of ``--project`` or ``--tasks`` (``connect``: the caller's CVAT client, made
    once the input was checked); follow them unless ``--detach``."""
    from pathlib import Path
    from urllib.parse import urlsplit

    from momentseg.errors import MomentSegError
    from momentseg.options import given_options, options_from_args
    from momentseg.webhooks import batch

    settings = _queue_settings(args)
    if args.project is not None:
        if not args.prompt:
            raise MomentSegError("give --prompt, the description of the object to find in each task")
        client = connect()
        rows = batch.project_rows(client, args.project, options_from_args(args).label, args.prompt)
        name = args.batch or f"project-{args.project}"
    else:
        rows = batch.rows_from_file(args.tasks)
        name = args.batch or Path(args.tasks).stem
        client = connect()
    queue = open_queue(settings)
    user = client.api_client.users_api.retrieve_self(_request_timeout=(10.0, 30.0))[0].username
    queued, kept = batch.queue_batch(
        queue,
        name,
        rows,
        host=urlsplit(client.api_client.configuration.host).netloc,
        user=user,
        output=options_from_args(args).output,
        options={k: v for k, v in given_options(args).items() if k not in ("label", "output")},
        moment_label=args.moment_label,
        create_labels=args.create_labels,
    )
    print(
        f"batch {name}: {len(queued)} runs queued, {len(kept)} already done or under way "
        f"(follow: momentseg webhooks runs --batch {name} --watch)",
        flush=True,
    )
    if args.detach:
        return 0
    records = batch.follow(queue, name)
    if args.summary:
        print(f"summary: {batch.write_summary(records, args.summary)}")
    return 0 if all(r["state"] == "done" for r in records) else 1


def _run_runs(args: argparse.Namespace) -> int:
    from momentseg.errors import MomentSegError
    from momentseg.webhooks import batch

    queue = open_queue(_queue_settings(args))
    if args.batch is None:
        if args.watch or args.summary or args.cancel:
            raise MomentSegError("--watch, --summary and --cancel need --batch NAME")
        for record in queue.records():
            what = record.get("prompt") or record.get("object_id") or record.get("command")
            error = f" - {record['error']}" if record.get("error") else ""
            print(
                f"{record['key']}  {record['state']:<9} {record.get('percent', 0):>3}%  {record['command']} "
                f"{what}  {record.get('worker') or '-'}{error}"
            )
        return 0
    if not batch.batch_records(queue, args.batch):
        raise MomentSegError(f"there is no batch '{args.batch}' on this queue")
    if args.cancel:
        print(
            f"batch {args.batch}: {batch.cancel_batch(queue, args.batch)} unfinished runs cancelled (a run "
            "already writing finishes)"
        )
    records = batch.follow(queue, args.batch) if args.watch else batch.batch_records(queue, args.batch)
    if not args.watch:
        print("\n".join(batch.table(records)))
    if args.summary:
        print(f"summary: {batch.write_summary(records, args.summary)}")
    return 0
