"""Triton serving: ``damo deploy`` (a shell over the deploy step; also ``damo serve deploy``),
``damo serve local``, ``damo infer`` and ``damo serve-bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from damo_core.cli.errors import exit_on_user_error
from damo_core.errors import UserInputError

serve_app = typer.Typer(help="Triton serving: model repository, deploy, local server.",
                        no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", help="Triton gRPC endpoint HOST:PORT.")]
ModelOpt = Annotated[str, typer.Option("--model", help="Deployed model (the ensemble's name).")]


@exit_on_user_error
def infer(
    sources: Annotated[list[str], typer.Argument(
        help="Image files, directories (searched recursively), glob patterns (quote them: "
             "'shots/**/*.jpg') and video files (.mp4, .avi, .mov, .mkv, .webm...).",
        show_default=False)],
    model: ModelOpt,
    url: Url = "127.0.0.1:8001",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the images' detections as one JSON list (a video's frames go to "
        "its .jsonl file).")] = False,
    save: Annotated[Path | None, typer.Option(
        "--save", help="Annotated image file, for one image named with an image suffix; "
        "otherwise a directory for the annotated images (mirroring the input folders), "
        "detections.jsonl, and per video an annotated .mp4 and a .jsonl with one line per "
        "frame. Videos need it. Inputs are never overwritten (see damo predict --out). "
        "[default: nothing written]")] = None,
    conf: Annotated[float | None, typer.Option(
        help="Score threshold. Default: the one stored with the deployed model (its "
             "checkpoint's best-F1 confidence), else 0.3.")] = None,
    batch: Annotated[int | None, typer.Option(
        help="Images or video frames per request. [default: the model's max batch size]")
    ] = None,
) -> None:
    """Detect objects in images, folders, glob patterns and videos with a model deployed on
    Triton (gRPC)."""
    if conf is not None and not 0.0 <= conf <= 1.0:  # false for NaN too
        raise UserInputError(f"--conf must be a score threshold in [0, 1], got {conf}")
    from tqdm import tqdm

    from damo_core.eval.curves import DEFAULT_CONFIDENCE
    from damo_core.eval.media import EncodedDetector, annotate_media, probe_videos
    from damo_core.eval.postprocess import Detections
    from damo_core.eval.sources import (
        MediaFile,
        expand_sources,
        plan_outputs,
        single_image_plan,
    )
    from damo_core.serve.client import TritonDetector, detections_json

    # every source, output name and video checked before contacting the server
    media = expand_sources(sources)
    plan = single_image_plan(media, save) if save is not None else None
    plan = plan or plan_outputs(media, save)
    probed = probe_videos(media)
    rows: list[dict] = []
    with TritonDetector(url, model) as detector:
        stored = getattr(detector, "default_score_threshold", None)  # None: not deployed
        threshold = conf if conf is not None else (
            stored if stored is not None else DEFAULT_CONFIDENCE)
        names = detector.class_names

        def report(item: MediaFile, dets: Detections, target: Path | None) -> None:
            if as_json:
                rows.append(detections_json(item.path, dets, names))
            else:  # tqdm.write keeps a progress bar intact
                tqdm.write(f"{item.path}: {len(dets)} objects" + (f" -> {target}" if target
                                                                   else ""))

        videos = annotate_media(EncodedDetector(detector, score_threshold=threshold,
                                                batch_size=batch),
                                media, plan, names, on_image=report, videos_probed=probed)
    for v in videos:  # on stderr with --json, which keeps stdout one JSON document
        typer.echo(f"{v.source}: {v.frames} frames -> {v.video}, detections in {v.jsonl}",
                   err=as_json)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif conf is None:
        origin = ("the deployed model's default" if stored is not None
                  else "the default; the deployed model stores none")
        typer.echo(f"score threshold {threshold:.2f}, {origin} (--conf to change)", err=True)


@exit_on_user_error
def serve_bench(
    model: ModelOpt,
    url: Url = "127.0.0.1:8001",
    images: Annotated[list[Path] | None, typer.Argument(
        help="Images to send (default: a generated probe image).")] = None,
    concurrency: Annotated[list[int] | None, typer.Option(
        "--concurrency", "-c", help="Concurrent clients, repeatable (default 1 2 4).")] = None,
    requests: Annotated[int, typer.Option(help="Requests per concurrency level.")] = 100,
    batch: Annotated[int, typer.Option(help="Images per request.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
) -> None:
    """Client-side latency (p50/p99) and throughput at several concurrencies."""
    from damo_core.serve.bench import serve_bench as run
    from damo_core.serve.codec import read_image_bytes
    from damo_core.serve.deploy import probe_image
    from damo_core.steps._common import write_json

    encoded = [read_image_bytes(p) for p in images] if images else [probe_image(640, 480)]
    results = run(url, model, encoded, concurrencies=concurrency or [1, 2, 4],
                  requests=requests, batch=batch)
    table = Table("concurrency", "batch", "requests", "p50 ms", "p99 ms", "images/s",
                  title=f"{model} @ {url}")
    for r in results:
        table.add_row(str(r.concurrency), str(r.batch), str(r.requests), f"{r.p50_ms:.2f}",
                      f"{r.p99_ms:.2f}", f"{r.throughput_ips:.1f}")
    Console(width=120).print(table)
    if out is not None:
        write_json(out, {"model": model, "url": url, "results": [r.as_dict() for r in results]})


@serve_app.command("local")
@exit_on_user_error
def local(
    repo: Annotated[Path, typer.Option("--repo", help="Model repository (python variant).")],
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port.")] = 8002,
    log: Annotated[Path | None, typer.Option(help="Server log file (default: temporary).")] = None,
    container: Annotated[bool, typer.Option(
        "--container", help="Run the server from the Triton image (docker) instead of the "
        "bundled tritonserver.")] = False,
    image: Annotated[str | None, typer.Option(
        help="Image for --container. [default: DAMO_TRITON_IMAGE of components/_image.py]")
    ] = None,
) -> None:
    """Run the CPU Triton server on 127.0.0.1 in the foreground, every model loaded.

    Its model-repository API (load/unload, which can run code sent in a request) needs the
    admin key: DAMO_TRITON_ADMIN_KEY if set, else a random key printed here for deploy.
    With --container the server is the Triton image's (built by scripts/images.sh triton),
    on the same ports, with the repository mounted at its own path.
    """
    from damo_core.serve.admin import ADMIN_KEY_ENV
    from damo_core.serve.errors import TritonStartError
    from damo_core.serve.local_server import LocalTriton, stop_on_signals

    if image is not None and not container:
        raise UserInputError("--image names the image of --container; add --container")
    # SIGTERM/SIGHUP stop the server like Ctrl-C: its process group (or container) is killed
    # and its temporary directory removed before this process exits (128 + the signal).
    with stop_on_signals():
        ports = (grpc_port, http_port, metrics_port)
        if container:
            from components._image import DAMO_TRITON_IMAGE
            from damo_core.serve.container_server import ContainerTriton

            server: LocalTriton = ContainerTriton(repo, image=image or DAMO_TRITON_IMAGE,
                                                  load=["*"], ports=ports, log_path=log)
        else:
            server = LocalTriton(repo, load=["*"], ports=ports, log_path=log)
        try:
            server.start()
        except TritonStartError as err:
            typer.secho(f"error: Triton did not start: {str(err).splitlines()[0]}",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        try:
            typer.echo(f"Triton ready ({server.where}): grpc {server.grpc_url}, http "
                       f"{server.http_url}, metrics {server.metrics_url}; log "
                       f"{server.log_path}; Ctrl-C stops it")
            if server.key_generated:  # a key the user chose is not echoed into terminal logs
                typer.echo(f"model-repository API key, for `damo serve deploy --url` in "
                           f"another shell: export {ADMIN_KEY_ENV}={server.admin_key}")
            else:
                typer.echo(f"model-repository API key: the one in {ADMIN_KEY_ENV}")
            try:
                code = server.wait()
            except KeyboardInterrupt:
                typer.echo("stopping")
                return
            last = server.log_tail(1).strip() or "(empty log)"
            typer.secho(f"error: tritonserver exited unexpectedly with code {code} (last log "
                        f"line: {last})", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        finally:
            server.stop()


@exit_on_user_error
def deploy(
    exported: Annotated[Path, typer.Argument(help="Directory written by `damo export`.")],
    repo: Annotated[str, typer.Option(
        "--repo", "--repository", help="Model repository (a directory or s3://bucket/prefix) "
        "to add it to.")],
    url: Annotated[str | None, typer.Option(
        "--url", help="Triton gRPC HOST:PORT to load it on. [default: none, only write]")] = None,
    variant: Annotated[str, typer.Option(help="python (local CPU server) or native.")] = "python",
    max_batch: Annotated[int, typer.Option(help="max_batch_size of the models.")] = 8,
) -> None:
    """Add an export to a model repository as a new version and load it (with rollback).

    Loading needs the server's admin key in DAMO_TRITON_ADMIN_KEY (`damo serve local` prints
    it; on the cluster it is the Secret damo-triton-admin).
    """
    from damo_core.serve.errors import DeployError
    from damo_core.steps.deploy import run

    try:
        result = run(exported, repo, url, variant=variant, max_batch=max_batch)
    except DeployError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2))
