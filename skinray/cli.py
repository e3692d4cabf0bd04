"""The `skinray` command. Errors a user can fix print as one line and exit with status 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import sys
import typing
from pathlib import Path
from typing import Sequence

from skinray import __version__, runtime
from skinray.config import (
    DEVICES,
    LOSSES,
    PRECISIONS,
    DataConfig,
    EnhanceConfig,
    TrainConfig,
)
from skinray.errors import ConfigError, SkinrayError


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' where an argument has a real default and its help does not name it
    already (flags whose default comes from the config dataclasses say it in their help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in help_:
            return help_
        return super()._get_help_string(action)


_PRECISION_HELP = {f.name: f for f in dataclasses.fields(EnhanceConfig)}["precision"].metadata["help"]


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    t, d = TrainConfig, DataConfig
    p.add_argument("--config", help="YAML config file (sections data/degrade/model/train/storage)")
    p.add_argument("--data", help=f"training images: folder, s3://bucket/prefix or manifest .parquet "
                                  f"(default {d.source})")
    p.add_argument("--storage", help=f"where checkpoints go: folder or s3://bucket/prefix (default {t.storage})")
    p.add_argument("--name", help=f"run name; re-running with the same name resumes (default {t.name})")
    p.add_argument("--epochs", type=int, help=f"(default {t.epochs})")
    p.add_argument("--batch-size", type=int, help=f"per worker (default {t.batch_size})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {t.lr}, {t.lr_schedule} schedule)")
    p.add_argument("--image-size", type=int, help=f"training crop size in pixels (default {d.image_size})")
    p.add_argument("--workers", type=int, help=f"Ray Train workers (default {t.workers})")
    p.add_argument("--gpu", action="store_true", default=None, help="one GPU per worker (default: CPU)")
    p.add_argument("--loss", choices=LOSSES, help=f"training loss (default {t.loss})")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any other config field, repeatable (e.g. --set model.width=64)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")


_FLAG_KEYS = {
    "data": "data.source", "storage": "train.storage", "name": "train.name", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "image_size": "data.image_size",
    "workers": "train.workers", "gpu": "train.gpu", "loss": "train.loss", "s3_endpoint": "storage.s3_endpoint",
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


# Config keys -> what the user typed, for error messages (a config key is still named after it).
_TRAIN_FLAG_NAMES = {key: _flag(dest) for dest, key in _FLAG_KEYS.items()}


def name_flags(message: str, flag_names: dict[str, str]) -> str:
    """'enhance.input: is required' -> 'the INPUT argument is required (enhance.input)';
    'train.lr: must be > 0' -> '--lr: must be > 0 (train.lr)'; other keys named in the message
    are given their flags too."""
    key, sep, rest = message.partition(": ")
    if not sep or key not in flag_names:
        return message
    for other, flag in flag_names.items():
        if other != key:
            rest = re.sub(rf"\b{re.escape(other)}\b", flag, rest)
    if rest == "is required":
        return f"{flag_names[key]} is required ({key})"
    return f"{flag_names[key]}: {rest} ({key})"


def config_from_args(args: argparse.Namespace):
    """The one mapping of CLI flags onto the config dataclasses (used by the CLI and jobs/)."""
    from skinray.config import load_config, parse_set_flags

    overrides = parse_set_flags(args.set)
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from skinray.train import fit

    cfg = config_from_args(args)  # validated before any Ray work starts
    summary = fit(cfg, ray_address=args.ray_address)
    m = summary.best_metrics
    if cfg.model.task:  # a downstream model (skinray/downstream.py)
        from skinray.downstream import summary_line

        print(f"[skinray] {summary_line(m)}")
    else:
            print(f"[skinray] best epoch {m['epoch'] + 1}: val_loss={m['val_loss']:.4f} val_psnr={m['val_psnr']:.2f}dB "
              f"(degraded input {m['val_psnr_input']:.2f}) val_ssim={m['val_ssim']:.4f} "
              f"(degraded input {m['val_ssim_input']:.4f})")
    if summary.skipped_files:
        print(f"[skinray] {len(summary.skipped_files)} unreadable files were skipped")
    print(f"[skinray] checkpoints: {summary.run_uri}")
    print(f"[skinray] best model: {summary.best_uri}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from skinray import tune
    from skinray.config import TrainConfig

    cfg = config_from_args(args)
    if cfg.train.name == TrainConfig.name:  # not named by --name, --config or --set
        cfg = cfg.replace({"train.name": "tune"})
    summary = tune.run(cfg, trials=args.trials, grace=args.grace, concurrent=args.concurrent,
                       ray_address=args.ray_address)
    print(f"[skinray] {len(summary.trials)} trials; the best (val_psnr "
          f"{summary.best_metrics['val_psnr']:.2f} dB, degraded input {summary.best_metrics['val_psnr_input']:.2f}) "
          f"used {summary.best_metrics['config']}")
    print(f"[skinray] best config: {summary.config_uri}")
    print(f"[skinray] best model: {summary.best_uri}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from skinray import storage, synth

    if args.count < 1 or args.size < 16:
        raise SkinrayError(f"synth: need --count >= 1 and --size >= 16, got {args.count} and {args.size}")
    synth.write_dataset(args.out, args.count, args.size, args.seed,
                        s3=storage.S3Options.from_env(args.s3_endpoint))
    print(f"[skinray] wrote {args.count} images of {args.size}x{args.size} px to {args.out}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from skinray import ingest, storage
    from skinray.config import DataConfig
    from skinray.progress import ProgressLine, bar

    DataConfig(source=args.src, val_fraction=args.val_fraction, seed=args.seed, test_fraction=args.test_fraction,
               split_by=args.split_by).validate()
    s3 = storage.S3Options.from_env(args.s3_endpoint)

    line = ProgressLine(every_s=10.0)

    def progress(done: int, total: int) -> None:
        line.update(f"[skinray] ingest {bar(done, total) + ' ' if line.live else ''}{done}/{total} files read",
                    final=done == total)

    manifest = ingest.build_manifest(args.src, args.val_fraction, args.seed, s3, progress=progress,
                                     test_fraction=args.test_fraction, split_by=args.split_by,
                                     masks=args.masks, attributes=args.attributes)
    if manifest.table.num_rows == 0:
        raise SkinrayError(f"{args.src}: no readable images found ({len(manifest.skipped)} unreadable, "
                           f"{manifest.ignored} non-image files)")
    ingest.write_manifest(manifest, args.out, s3)
    print(f"[skinray] manifest {args.out}: {manifest.count('train')} train, {manifest.count('val')} val, "
          f"{manifest.count('test')} test, {len(manifest.skipped)} unreadable skipped, {manifest.ignored} "
          f"non-image files ignored, {manifest.annotation_files} masks/annotation images (not photos)")
    masks, attributes = manifest.annotated()
    print(f"[skinray] {masks} photos with a lesion mask, {attributes} with their {len(ingest.ground_truth.ATTRIBUTES)} "
          f"attributes" + (f"; {len(manifest.notes)} problems (warned above)" if manifest.notes else ""))
    groups = manifest.groups()
    if groups["lesion"] or groups["patient"]:
        print(f"[skinray] split by {ingest.METADATA_FILE}: {groups['lesion']} lesions, {groups['patient']} patients "
              f"(images without a lesion id), {groups['key']} images by file name"
              + (f"; {len(manifest.notes)} problems in {ingest.METADATA_FILE} (warned above)"
                 if manifest.notes else ""))
    return 0


# The archive job's flags are EnhanceConfig's fields (help and choices declared there).
_ENHANCE_FLAGS = tuple(f.name for f in dataclasses.fields(EnhanceConfig))
_ENHANCE_POSITIONAL = ("input", "output")


def _add_enhance_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of EnhanceConfig (input and output as positional arguments)."""
    hints = typing.get_type_hints(EnhanceConfig)
    for f in dataclasses.fields(EnhanceConfig):
        help_, choices = f.metadata["help"], f.metadata["choices"]
        if f.name in _ENHANCE_POSITIONAL:
            p.add_argument(f.name, nargs="?", help=help_)
        elif hints[f.name] is bool:
            p.add_argument(_flag(f.name), action="store_true", default=None, help=help_)
        elif choices:
            extra = ("jpg",) if f.name == "format" else ()
            p.add_argument(_flag(f.name), type=str.lower, choices=(*choices, *extra),
                           help=f"{help_} (default {f.default})")
        else:
            p.add_argument(_flag(f.name), type=hints[f.name], help=f"{help_} (default {f.default})")


_ENHANCE_FLAG_NAMES = {f"enhance.{dest}": _flag(dest) for dest in _ENHANCE_FLAGS}
_ENHANCE_FLAG_NAMES.update({"enhance.input": "the INPUT argument", "enhance.output": "the OUTPUT argument",
                            "storage.s3_endpoint": "--s3-endpoint"})


_INFERENCE_FLAG_NAMES = {"enhance.precision": "--precision", "enhance.device": "--device"}


def enhance_config_from_args(args: argparse.Namespace):
    """The archive job's config: EnhanceConfig's defaults, --config, --set, then the flags."""
    from skinray.config import JobConfig, load_config, parse_set_flags

    overrides = parse_set_flags(args.set)
    overrides.update({f"enhance.{k}": getattr(args, k) for k in _ENHANCE_FLAGS if getattr(args, k) is not None})
    if args.s3_endpoint:
        overrides["storage.s3_endpoint"] = args.s3_endpoint
    return load_config(args.config, overrides, root=JobConfig)


def cmd_enhance(args: argparse.Namespace) -> int:
    from skinray import archive, storage

    cfg = enhance_config_from_args(args)
    execution = "local" if args.local else "ray" if args.ray else "auto"
    summary = archive.run(cfg.enhance, storage.S3Options.from_config(cfg.storage), ray_address=args.ray_address,
                          execution=execution)
    print(f"[skinray] {summary.line()}")
    print(f"[skinray] enhanced images in: {cfg.enhance.output}")
    return 0


def _assess_thresholds(items: list[str]):
    """``--set assess.FIELD=VALUE`` -> the AssessConfig, each value typed and checked."""
    from skinray.config import AssessConfig, parse_set_flags

    fields = {f.name: f.type for f in dataclasses.fields(AssessConfig)}
    values = {}
    for key, value in parse_set_flags(items).items():
        section, _, name = key.partition(".")
        if section != "assess" or name not in fields:
            raise ConfigError(f"--set {key}: unknown key; choose from {['assess.' + n for n in fields]}")
        try:
            values[name] = int(value) if fields[name] in ("int", int) else float(value)
        except ValueError:
            raise ConfigError(f"--set {key}: not a number: {value!r}") from None
    cfg = AssessConfig(**values)
    cfg.validate()
    return cfg


def cmd_assess(args: argparse.Namespace) -> int:
    from skinray import storage, triage

    thresholds = _assess_thresholds(args.set)
    execution = "local" if args.local else "ray" if args.ray else "auto"
    s3 = storage.S3Options.from_env(args.s3_endpoint)
    summary = triage.run(args.input, args.out, args.model, s3, thresholds, execution=execution,
                         workers=args.workers, follow_symlinks=args.follow_symlinks, ray_address=args.ray_address)
    if not args.out:
        for row in summary.rows:
            what = row["verdict"] + (f" ({row['reasons']})" if row["reasons"] else "") if row["verdict"] else \
                f"{row['status']}: {row['reason']}"
            print(f"{row['key']}\t{what}")
    print(f"[skinray] {summary.line()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from skinray import checkpoint, paths, storage
    from skinray.serving import AppArgs, read_api_key, serve_forever

    app_args = AppArgs(model=args.model, api_key_file=args.api_key_file, s3_endpoint=args.s3_endpoint,
                       batch_roots=args.batch_roots, batch_writable_roots=args.batch_writable_roots or [],
                       precision=args.precision)
    from skinray.predict import resolve_device, resolve_precision

    resolve_precision(app_args.precision, resolve_device("auto"))  # fp16 on a CPU-only machine stops here
    if app_args.batch_writable_roots and not app_args.batch_roots:
        raise SkinrayError("serve: --batch-writable-roots needs --batch-roots (archive jobs are off without it)")
    if app_args.batch_roots:
        paths.check_roots_config(app_args.roots())
    key = read_api_key(app_args)  # an empty or missing key file stops here, not in a replica
    if key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SkinrayError(f"serve: refusing to listen on {args.host} without an API key: set "
                           f"SKINRAY_API_KEY or --api-key-file (anyone who reaches the port could "
                           f"start archive jobs)")
    s3 = storage.S3Options.from_env(args.s3_endpoint)
    checkpoint.load(args.model, s3=s3, inference=True)  # fail before Ray starts
    with socket.socket() as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise SkinrayError(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror}; "
                               f"pick another --port") from None
    serve_forever(app_args, args.host, args.port, ray_address=args.ray_address)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from skinray import evaluate, storage

    if args.task_model:  # downstream tasks: does enhancement help diagnosis? (skinray/downstream_eval.py)
        return _evaluate_downstream(args)
    metrics = evaluate.run(args.model, args.data, args.out, size=args.size, limit=args.limit, split=args.split,
                           seed=args.seed, photos=args.photos, s3=storage.S3Options.from_env(args.s3_endpoint),
                           degrade_preset=args.degrade, device=args.device, precision=args.precision,
                           masks=args.masks)
    for name, row in metrics["restoration"].items():
        print(f"[skinray] {name:<32} PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  "
              f"CIEDE2000 {row['ciede2000']:5.2f}  {row['ms_per_image']:7.1f} ms/image")
    for name, row in metrics["oracles"].items():
        print(f"[skinray] {name:<32} PSNR {row['overall']['psnr']:6.2f} dB  SSIM {row['overall']['ssim']:.4f}  "
              f"CIEDE2000 {row['overall']['ciede2000']:5.2f}  (fitted with the clean photo known)")
    for line in evaluate.harm.printed_lines(metrics["real"]):  # good photos as they are, and re-lit
        print(line)
    print(f"[skinray] report: {Path(args.out) / 'report.md'}")
    return 0


def _evaluate_downstream(args: argparse.Namespace) -> int:
    from skinray import downstream_eval, storage

    metrics = downstream_eval.run(args.task_model, args.model, args.data, args.out, size=args.size, limit=args.limit,
                                  split=args.split, seed=args.seed, bootstrap=args.bootstrap,
                                  s3=storage.S3Options.from_env(args.s3_endpoint), masks=args.masks,
                                  attributes=args.attributes, device=args.device, precision=args.precision)
    for line in downstream_eval.printed_lines(metrics):
        print(line)
    print(f"[skinray] report: {Path(args.out) / 'downstream.md'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from skinray import export, storage

    written = export.export(args.model, args.out, args.format, s3=storage.S3Options.from_env(args.s3_endpoint))
    print(f"[skinray] exported {args.model} as {args.format}: {', '.join(written)}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from skinray import checkpoint, storage
    from skinray.model import count_parameters

    s3 = storage.S3Options.from_env(args.s3_endpoint)
    loaded = checkpoint.load(args.model, s3=s3)
    meta = checkpoint.read_metadata(loaded.uri, s3)
    config = loaded.config.to_dict()
    info = {"uri": loaded.uri, "model_id": loaded.model_id, "arch": loaded.config.model.arch,
            "parameters": count_parameters(loaded.model), "created": meta.get("created"),
            "skinray_version": meta.get("skinray_version"), "torch_version": meta.get("torch_version"),
            "model": config["model"], "train": config["train"], "data": config["data"],
            "degrade": config["degrade"], "metrics": loaded.metrics, "epochs_trained": len(loaded.history),
            "data_fingerprint": loaded.fingerprint,
            "trained_on": meta.get("bundled", {}).get("trained_on"),  # bundled models (skinray/bundle.py)
            "data_licence": meta.get("bundled", {}).get("data_licence")}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    scalar = lambda d: ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"  # noqa: E731
                                 for k, v in d.items() if not isinstance(v, (dict, list)))
    print(f"model      {info['model_id']}  ({info['uri']})")
    print(f"arch       {info['arch']}, {info['parameters']:,} parameters")
    print(f"created    {info['created']} by skinray {info['skinray_version']}, torch {info['torch_version']}")
    print(f"model cfg  {scalar(info['model'])}")
    print(f"training   {scalar(info['train'])}")
    print(f"data       {scalar(info['data'])}")
    print(f"metrics    {scalar(info['metrics']) or '(none)'}")
    print(f"history    {info['epochs_trained']} epochs recorded")
    print(f"data fingerprint  {info['data_fingerprint'] or '(none)'}")
    if info["trained_on"]:
        print(f"trained on {info['trained_on'].split(', degradations ')[0]}")
        print(f"data licence  {info['data_licence'] or '(not recorded)'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from skinray.demo import run_demo

    run_demo(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinray", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"skinray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the autoencoder with Ray Train")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train, flag_names=_TRAIN_FLAG_NAMES)

    p = sub.add_parser("tune", help="search hyperparameters with Ray Tune (ASHA), each trial a Ray Train run")
    _add_train_flags(p)
    p.add_argument("--trials", type=int, default=8, help="number of sampled configurations (default 8)")
    p.add_argument("--grace", type=int, default=2, help="epochs before ASHA may stop a trial (default 2)")
    p.add_argument("--concurrent", type=int, default=1, help="trials at once (default 1; each holds "
                   "1 CPU for its driver plus its Train workers)")
    p.set_defaults(func=cmd_tune, flag_names=_TRAIN_FLAG_NAMES)

    p = sub.add_parser("synth", help="write synthetic skin photographs (JPEG)")
    p.add_argument("out", help="folder or s3://bucket/prefix")
    p.add_argument("--count", type=int, default=200, help="number of photos")
    p.add_argument("--size", type=int, default=256, help="pixels per side")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("ingest", help="list images under a URI and write a Parquet manifest with splits")
    p.add_argument("src", help="folder or s3://bucket/prefix")
    p.add_argument("--out", required=True, help="manifest URI (.parquet)")
    p.add_argument("--val-fraction", type=float, default=0.3, help="share of photos for validation")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="share of hashed photos for the test split (never trained on)")
    p.add_argument("--split-by", default="auto", choices=("auto", "folder", "hash"),
                   help="auto: a top-level train/, val/ or test/ folder decides, else the hash; folder; hash")
    p.add_argument("--masks", help="folder of lesion masks <id>_segmentation.png (also looked for beside the "
                                   "photos and in a *GroundTruth* folder)")
    p.add_argument("--attributes", help="attribute file (lines 'ISIC_0000000 00010': globules, milia-like cyst, "
                                        "negative network, pigment network, streaks) or a folder of ISIC 2018 "
                                        "Task 2 masks")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("enhance", help="enhance every photo under a folder or bucket prefix (in this process for "
                                       "a few photos, else Ray Data)")
    _add_enhance_flags(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="run in this process, without Ray, whatever the input's size (default: in-process "
                            "for up to 8 photos and 64 MiB, with one worker and no --ray-address; else Ray Data)")
    where.add_argument("--ray", action="store_true", help="run the Ray Data job even for a small input")
    p.add_argument("--config", help="YAML config file (section enhance)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("--s3-endpoint")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=cmd_enhance, flag_names=_ENHANCE_FLAG_NAMES)

    p = sub.add_parser("assess", help="triage every photo under a folder or bucket prefix: good / corrected / "
                                      "retake with reasons; --out writes a manifest and an HTML report")
    p.add_argument("input", help="folder or s3://bucket/prefix of photos")
    p.add_argument("--out", help="folder or s3:// prefix for manifest.parquet, summary.json and report.html "
                                 "(default: one line per photo here)")
    p.add_argument("--model", default="bundled", help="checkpoint, as for enhance (default bundled)")
    p.add_argument("--workers", type=int, default=1, help="model actors at least (Ray Data runs)")
    p.add_argument("--follow-symlinks", action="store_true", help="list and read through symbolic links")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run in this process, without Ray")
    where.add_argument("--ray", action="store_true", help="run the Ray Data job even for a small input")
    p.add_argument("--set", action="append", default=[], metavar="assess.FIELD=VALUE",
                   help="a triage threshold, e.g. assess.blur_factor=3 (docs/configuration.md)")
    p.add_argument("--s3-endpoint")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser("serve", help="run the online endpoint (Ray Serve) on this machine")
    p.add_argument("--model", default="bundled", help="checkpoint: a run folder (loads its best), a checkpoint "
                                                      "folder, or 'bundled', the model shipped with skinray (default)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--api-key-file", help="file holding the API key (default: env SKINRAY_API_KEY, else none)")
    p.add_argument("--precision", type=str.lower, choices=PRECISIONS, default="auto", help=_PRECISION_HELP)
    p.add_argument("--batch-roots", action="append", metavar="URI",
                   help="turn archive jobs (POST /v1/batch) on: their input and output must resolve under "
                        "this root (repeatable; default: archive jobs are off)")
    p.add_argument("--batch-writable-roots", action="append", metavar="URI",
                   help="jobs may use overwrite: true for outputs under this root (inside a --batch-roots "
                        "root; repeatable; default: nowhere)")
    p.add_argument("--s3-endpoint")
    p.add_argument("--ray-address")
    p.set_defaults(func=cmd_serve, flag_names=_INFERENCE_FLAG_NAMES)

    p = sub.add_parser("evaluate", help="compare models with classical colour correction on held-out images")
    p.add_argument("--model", action="append", required=True, help="checkpoint (repeat to compare several)")
    p.add_argument("--data", required=True, help="images: folder, s3://bucket/prefix or manifest .parquet")
    p.add_argument("--out", default="outputs/evaluation", help="report folder (default outputs/evaluation)")
    p.add_argument("--size", type=int, default=256, help="pixels per side (default 256)")
    p.add_argument("--limit", type=int, default=100, help="at most this many images (default 100)")
    p.add_argument("--split", default="val", choices=("val", "test", "train", "all"),
                   help="val, test, train: that split (as the manifest or the first model's config splits); "
                        "all: every image")
    p.add_argument("--masks", help="folder of lesion masks <id>_segmentation.png (also looked for beside the photos)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the fixed degradations")
    p.add_argument("--degrade", default="default", choices=("default", "poster"),
                   help="degradations: default (DegradeConfig) or poster (the poster's own)")
    p.add_argument("--photos", help="folder of photos without ground truth for a before/after figure")
    p.add_argument("--task-model", action="append", help="a downstream model (skinray train --set "
                   "model.task=attributes or segmentation; repeatable): score it on clean, re-lit and enhanced "
                   "photos instead (--model: the enhancers; docs/models.md#downstream-tasks)")
    p.add_argument("--attributes", help="with --task-model: attribute file (lines 'ISIC_0000000 00010') when "
                                        "--data is a folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="with --task-model: bootstrap resamples of the "
                                                               "intervals (default 1000)")
    p.add_argument("--device", type=str.lower, choices=DEVICES, default="cpu",
                   help="where the models run; auto: cuda, else mps, else cpu")
    p.add_argument("--precision", type=str.lower, choices=PRECISIONS, default="auto", help=_PRECISION_HELP)
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_evaluate, flag_names=_INFERENCE_FLAG_NAMES)

    p = sub.add_parser("export", help="export a model for ONNX Runtime and other runtimes (dynamic size)")
    p.add_argument("out", help="folder (or s3://bucket/prefix) for the graphs, skinray.onnx.json and README.md")
    p.add_argument("--model", default="bundled", help="checkpoint: a run folder (loads its best), a checkpoint "
                                                      "folder, or 'bundled' (default)")
    p.add_argument("--format", default="onnx", type=str.lower, choices=("onnx",), help="export format")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="print a model's architecture, parameters, training config, metrics and "
                                    "data fingerprint")
    p.add_argument("model", help="checkpoint: a run folder (loads its best), a checkpoint folder, or 'bundled'")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--s3-endpoint")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="synthesise data, train briefly, write samples and a loss curve")
    p.add_argument("--out", default="outputs/demo", help="folder for the demo's outputs")
    p.set_defaults(func=cmd_demo)
    for name, command in sub.choices.items():
        command.formatter_class = _HelpFormatter
        if name in _QUIET_COMMANDS:
            command.add_argument("-v", "--verbose", action="store_true",
                                 help="show Ray's own messages here (default: written to a log file whose "
                                      "path is printed)")
    return parser


_QUIET_COMMANDS = ("train", "tune", "enhance", "evaluate", "demo", "serve", "assess")  # the commands that may start Ray


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="[skinray] %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    quiet = args.command in _QUIET_COMMANDS and not args.verbose
    try:
        with runtime.quiet_ray_output(args.command) if quiet else contextlib.nullcontext():
            code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught below, not at interpreter exit
        return code
    except SkinrayError as exc:
        message = str(exc)
        if isinstance(exc, ConfigError):
            message = name_flags(message, getattr(args, "flag_names", {}))
        print(f"skinray: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skinray: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `skinray info ... | head`: the reader left; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
