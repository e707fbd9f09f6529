"""One function per subcommand: ``predict``, ``explain``, ``evaluate``, ``serve``, ``demo``, ``samples``.

Each returns an exit code.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

from .._util import atomic_write
from ..domain import OutOfDomainWarning, assess_domain, warn_domain
from ..errors import ArgumentError
from ..inference import SLICE_POLICIES, load_model, to_batch
from ..inference import predict as predict_probs
from .inputs import collect_sources, collect_volume_sources, load_items, load_volume_items
from .outputs import prediction_table, write_gallery, write_maps, write_table


def predict(args: argparse.Namespace) -> int:
    ckpt, items = _prepare(args)
    x = to_batch(ckpt, [it.image for it in items])
    probs = predict_probs(ckpt.model, x, args.batch_size)
    table = prediction_table(items, probs, ckpt.classes, _domain(ckpt, x, "xaikit predict"))
    if args.out is None:
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        print(f"predictions written: {write_table(table, args.out / 'predictions.csv')}")
    return 0


def explain(args: argparse.Namespace) -> int:
    from ..saliency import explain_many

    methods = _methods(args.method, args.preset)
    ckpt, items = _prepare(args)
    x = to_batch(ckpt, [it.image for it in items])
    probs = predict_probs(ckpt.model, x, args.batch_size)
    labels = _labels(items, args.target)
    distances = _domain(ckpt, x, "xaikit explain")
    with warnings.catch_warnings():  # said once above, with the inputs' numbers; not again per method and batch
        warnings.simplefilter("ignore", OutOfDomainWarning)
        results = explain_many(ckpt.model, x, methods, target=_target(args.target, len(ckpt.classes)),
                               batch_size=args.batch_size, cache_dir=args.out / ".cache",
                               image_ids=[it.image_id for it in items], labels=labels, progress=not args.no_progress)
    predictions = prediction_table(items, probs, ckpt.classes, distances)
    write_table(predictions, args.out / "predictions.csv")
    table = write_maps(args.out, items, results, ckpt.preprocess, predictions)
    write_table(table, args.out / "explanations.csv")
    index = write_gallery(args.out, table, list(results), ckpt.classes)
    print(f"{len(items)} image(s) x {len(results)} method(s) explained: {index.resolve()}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import contextlib

    from ..evaluation import plan, score_many
    from ..saliency import explain_many
    from .study import executor, metric_specs, write_study

    methods = _methods(args.method, args.preset)
    metrics = metric_specs(args.metric, args.metric_param)
    if args.n_boot < 100:
        raise ArgumentError(f"--n-boot {args.n_boot}: use at least 100 bootstrap resamples (default 1000).")
    ckpt, items = _prepare(args)
    x = to_batch(ckpt, [it.image for it in items])
    cost = plan(ckpt.model, x, methods, metrics)
    print(cost.summary(), file=sys.stdout if args.dry_run else sys.stderr)
    if args.dry_run:
        return 0
    target, ids = _target(args.target, len(ckpt.classes)), [it.image_id for it in items]
    with contextlib.ExitStack() as stack:
        client = executor(args, stack)
        maps = explain_many(ckpt.model, x, methods, target=target, batch_size=args.batch_size,
                            cache_dir=args.out / ".cache", image_ids=ids, labels=_labels(items, args.target),
                            progress=not args.no_progress, executor=client)
        table = score_many(ckpt.model, x, maps, metrics, batch_size=args.batch_size, cache_dir=args.out / ".cache",
                           progress=not args.no_progress, executor=client)
    table["image_id"] = table["image_id"].map({it.image_id: it.name for it in items})  # the names explain uses
    with atomic_write(args.out / "plan.txt", "w") as fh:
        fh.write(cost.summary() + "\n")
    index = write_study(args.out, cost.summary(), table, args.n_boot, len(items))
    print(f"{len(items)} image(s) x {len(maps)} method(s) x {len(metrics)} metric(s) evaluated: {index.resolve()}")
    return 0


def serve(args: argparse.Namespace) -> int:
    try:
        from ..service import ServiceConfig
        from ..service import serve as run_service
    except ImportError as exc:
        raise ArgumentError(f"xaikit serve needs FastAPI and uvicorn ({exc}): pip install 'xaikit[service]' "
                            "(fastapi, uvicorn, python-multipart).") from exc

    token = os.environ.get(args.token_env) or None
    config = ServiceConfig(max_upload_bytes=int(args.max_upload_mb * 2**20), timeout_s=args.timeout,
                           queue_size=args.queue, token=token)
    run_service(args.model, host=args.host, port=args.port, config=config)
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    index = run_demo(args.out, samples_dir=args.samples, smoke=args.smoke, stages=args.stages)
    print(f"report written: {index.resolve()}")
    return 0


def samples(args: argparse.Namespace) -> int:
    from ..samples import build_samples, build_world_samples

    if args.worlds:
        print(f"world models written: {sorted(str(p) for p in build_world_samples(args.out).values())}")
        return 0
    written = build_samples(args.out, models=not args.no_models)
    print(f"sample data written: {written}")
    return 0


# ------------------------------------------------------------------------------------------------ helpers


def _prepare(args: argparse.Namespace):
    if args.batch_size < 1:
        raise ArgumentError(f"--batch-size {args.batch_size}: must be at least 1.")
    ckpt = load_model(args.model)
    if is_volume_model(ckpt):  # a 3D model: each NIfTI file, DICOM volume or series folder is one input
        if args.slices is not None:
            raise ArgumentError(f"--slices {args.slices}: this checkpoint is a 3D model, which sees whole volumes; "
                                "--slices picks planes of volumes for 2D models. Leave it out.")
        sources = collect_volume_sources(args.inputs, ckpt.classes, manifest_root=args.manifest_root,
                                         trust_manifest=args.trust_manifest)
        items, bad = load_volume_items(sources, skip_bad=args.skip_bad, progress=not args.no_progress)
    else:
        sources = collect_sources(args.inputs, ckpt.classes, manifest_root=args.manifest_root,
                                  trust_manifest=args.trust_manifest)
        items, bad = load_items(sources, slices=_slices(args.slices or "middle"), skip_bad=args.skip_bad,
                                progress=not args.no_progress)
    for path, reason in bad:
        print(f"xaikit: skipped unreadable input {path}: {reason}", file=sys.stderr)
    return ckpt, items


def is_volume_model(ckpt) -> bool:
    """Does the checkpoint's Preprocess make volumes (a ``VolumePreprocess``: a 3D model)?"""
    return (ckpt.preprocess_dict or {}).get("kind") == "volume"


def _domain(ckpt, x: torch.Tensor, where: str):
    """Each input's distance from the checkpoint's training domain (``None`` without one), warned about once."""
    distances = assess_domain(ckpt.model, x)
    warn_domain(ckpt.model, x, distances, where=where)
    return distances


def _slices(value: str) -> str | int:
    if value in SLICE_POLICIES:
        return value
    if value.isdigit():
        return int(value)
    raise ArgumentError(f"--slices {value!r}: use 'middle', 'all' or a slice index (0, 1, ...).")


def _methods(names: list[str], preset: str | None) -> dict[str, dict]:
    from ..saliency import METHODS, PRESETS

    if not names and preset is None:
        raise ArgumentError("name at least one --method (e.g. --method gradcam) or a --preset "
                            f"({', '.join(sorted(PRESETS))}).")
    jobs: dict[str, dict] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ArgumentError(f"--preset {preset!r} is not known; use one of {sorted(PRESETS)}.")
        jobs.update({label: dict(spec) for label, spec in PRESETS[preset].items()})
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ArgumentError(f"--method {', '.join(unknown)}: not known. Known methods: {', '.join(sorted(METHODS))}.")
    jobs.update({m: {"method": m} for m in names if m not in jobs})
    return jobs


def _target(value: str, n_classes: int) -> str | int:
    if value in ("pred", "label"):
        return value
    if value.lstrip("-").isdigit() and 0 <= int(value) < n_classes:
        return int(value)
    raise ArgumentError(f"--target {value!r}: use pred, label or a class index 0..{n_classes - 1}.")


def _labels(items, target: str) -> torch.Tensor | None:
    known = [it.label for it in items]
    if all(lab is not None for lab in known):
        return torch.tensor(known, dtype=torch.long)
    if target == "label":
        missing = sum(lab is None for lab in known)
        raise ArgumentError(f"--target label: {missing} of {len(items)} image(s) have no label; labels come from "
                            "a manifest CSV (image_path,label,...). Use --target pred or a class index instead.")
    return None
