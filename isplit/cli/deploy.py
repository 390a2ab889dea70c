"""Commands that run a split for real: export the halves, serve, stream from a device."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from isplit.cli.options import EXISTING, PATH


@click.command("export")
@click.option(
    "--split",
    "split_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="results/<exp>/splits/<layer>/model.pt",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="results/<exp>/deploy/<layer>/",
)
def export(split_path, out_dir):
    """Export a split's device half (head + encoder) and server half (decoder + tail) as
    torch.export programs and ONNX files plus manifest.json, runnable without isplit."""
    from isplit.deploy.export import export_split

    for path in export_split(split_path, out_dir):
        click.echo(str(path))


def _parse_host_port(host: str, port: int) -> tuple[str, int]:
    if not 0 <= port < 65536:
        raise click.BadParameter(f"port {port} is not in 0..65535")
    return host, port


def _secret(path: Path | None) -> str | None:
    from isplit.deploy.wire import read_secret

    if path is None:
        return None
    try:
        return read_secret(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--secret-file") from e


# the options both ends of a split take
split_option = click.option(
    "--split",
    "split_path",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="the split's model.pt, or its export directory (manifest.json)",
)
runtime_option = click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="onnx: the export directory's .onnx half in onnxruntime",
)
secret_option = click.option(
    "--secret-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="a shared secret the device sends in its HELLO (UTF-8 text; never logged)",
)


@click.command("serve")
@split_option
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0: every interface")
@click.option("--port", type=int, default=5555, show_default=True, help="0: any free")
@click.option("--frames-log", type=click.Path(path_type=Path), default=None, help="CSV")
@click.option("--connections", type=int, default=None, help="exit after N devices [forever]")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="devices served at once; one more is refused as busy",
)
@click.option(
    "--handshake-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds from connecting to the whole HELLO",
)
@click.option(
    "--message-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="seconds from a message's first byte to its last",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=60.0,
    show_default=True,
    help="seconds a device may stay silent between messages",
)
@runtime_option
@secret_option
def serve(
    split_path, host, port, frames_log, connections, threads, max_connections,
    handshake_timeout, message_timeout, timeout_s, runtime, secret_file,
):  # fmt: skip
    """Run the server half (decoder + tail) of a split: answer each frame with its class.
    Devices are served concurrently; see docs/reliability.md for what the server trusts."""
    import torch

    from isplit.deploy import server
    from isplit.deploy.wire import load_half

    try:
        limits = server.Limits(max_connections, handshake_timeout, message_timeout, timeout_s)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    secret = _secret(secret_file)
    if threads:
        torch.set_num_threads(threads)
    half = load_half(split_path, "server", runtime, threads)
    host, port = _parse_host_port(host, port)
    with server.open_listener(host, port) as listener:
        bound = listener.getsockname()
        ident = half.identity
        print(
            f"isplit serve: listening on {bound[0]}:{bound[1]} "
            f"(layer {ident['layer']}, {ident['payload_bytes']} payload bytes per frame, "
            f"up to {max_connections} devices, shared secret {'on' if secret else 'off'}, "
            f"runtime {runtime})",
            file=sys.stderr,
            flush=True,
        )
        try:
            rows = server.serve(
                listener,
                half,
                frames_log=frames_log,
                connections=connections,
                limits=limits,
                secret=secret,
            )
        except KeyboardInterrupt:
            rows = []
    print(json.dumps({"frames": len(rows)}))


@click.command("device")
@split_option
@click.option(
    "--dataset", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True
)
@click.option("--split-name", default="test", show_default=True, help="dataset split to stream")
@click.option("--n", "n", type=int, default=None, help="frames (stratified subset) [all]")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--fps", type=float, default=None, help="capture rate; frames may queue")
@click.option(
    "--closed-loop",
    is_flag=True,
    default=False,
    help="capture the next frame when the answer arrives (the default without --fps)",
)
@click.option("--warmup", type=int, default=5, show_default=True, help="unmeasured first frames")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="CSV")
@click.option("--seed", type=int, default=0, show_default=True, help="subset seed")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True)
@runtime_option
@secret_option
def device(
    split_path,
    dataset,
    split_name,
    n,
    host,
    port,
    fps,
    closed_loop,
    warmup,
    log_path,
    seed,
    threads,
    timeout_s,
    runtime,
    secret_file,
):
    """Run the device half (head + encoder) on a dataset split, stream it to ``isplit serve``
    and print accuracy and latency statistics as JSON on the last line."""
    import pandas as pd
    import torch

    from isplit.data.loader import read_classes
    from isplit.deploy import device as dev
    from isplit.deploy.wire import SplitMismatch, load_half
    from isplit.io.files import write_table

    if fps is not None and closed_loop:
        raise click.UsageError("--fps and --closed-loop exclude each other")
    if warmup < 0:
        raise click.BadParameter("--warmup must be >= 0")
    secret = _secret(secret_file)
    if threads:
        torch.set_num_threads(threads)
    half = load_half(split_path, "device", runtime, threads)
    frames = dev.load_frames(dataset, split_name, half.input_cfg, n, seed)
    classes = read_classes(dataset)
    if half.classes and list(half.classes) != classes:
        raise ValueError(
            f"the dataset's classes {classes[:5]}… are not the split's {half.classes[:5]}…"
        )
    try:
        rows = dev.stream(
            _parse_host_port(host, port),
            half,
            frames,
            fps=fps,
            warmup=warmup,
            timeout_s=timeout_s,
            secret=secret,
        )
    except SplitMismatch as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot stream to {host}:{port}: {e}") from e
    if log_path:
        write_table(pd.DataFrame(rows, columns=dev.DEVICE_COLUMNS), log_path)
    print(json.dumps(dev.summarize(rows, half.identity)))


@click.command("profile-onnx")
@click.option("--model", "model_path", type=EXISTING, required=True, help="finetune/model.pt")
@click.option("--dataset", type=EXISTING, required=True, help="the prepared dataset")
@click.option("--out", "out_path", type=PATH, required=True, help="latency/measured.parquet")
@click.option("--repeats", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads")
@click.option("--eval-images", type=int, default=None, help="val/test images scored [all]")
@click.option("--calibration-images", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.argument("deploys", nargs=-1, type=click.Path(path_type=Path, exists=True, file_okay=False))
def profile_onnx(
    model_path, dataset, out_path, repeats, warmup, threads, eval_images, calibration_images,
    seed, deploys,
):  # fmt: skip
    """This machine as the device: time each export's device.onnx (DEPLOYS: deploy/<layer>/)
    and the whole model in onnxruntime, float32 and int8, with the int8 head's accuracy."""
    from isplit.latency import profiling

    df = profiling.run_measured(
        model_path=model_path,
        deploy_dirs={Path(d).name: d for d in deploys},
        dataset_dir=dataset,
        out_path=out_path,
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        eval_images=eval_images,
        calibration_images=calibration_images,
        seed=seed,
    )
    cols = ["layer", "precision", "median_s", "p95_s", "val_top1", "test_top1", "note"]
    click.echo(df[[c for c in cols if c in df.columns]].to_string(index=False))
