"""The ``xaikit`` command line: ``predict``, ``explain``, ``evaluate``, ``serve``, ``demo``, ``samples``.

Run ``xaikit --help`` (or ``python -m xaikit --help``) and ``xaikit <command> --help`` for examples. The commands
are thin layers over the package (:mod:`xaikit.inference`, :func:`xaikit.saliency.explain_many`,
:mod:`xaikit.service`); they print results and progress, never a patient identifier.

Exit codes: 0 success, 1 another xaikit error, 2 bad usage or argument, 3 an input cannot be read,
4 the checkpoint cannot be used, 5 a method cannot explain the model.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import (
    ArgumentError,
    CheckpointError,
    DatasetError,
    ExplanationError,
    ImageReadError,
    ManifestError,
    ModelError,
    PreprocessMismatchError,
    XaikitError,
)

__all__ = ["main", "parser", "exit_code", "EXIT_CODES"]

EXIT_CODES = {"ok": 0, "error": 1, "usage": 2, "input": 3, "model": 4, "explain": 5}

_EPILOG = """exit codes: 0 success, 1 another xaikit error, 2 bad usage or argument, 3 an input cannot be read,
4 the checkpoint cannot be used, 5 a method cannot explain the model."""

_PREDICT_EXAMPLES = """examples:
  xaikit predict data_samples/models/phantom_small_cnn.pt data_samples/images/img00000.png
  xaikit predict model.pt scans/ --out results/          # a folder, recursively; writes results/predictions.csv
  xaikit predict model.pt data_samples/manifest.csv      # a manifest CSV (image_path,label,...)
  xaikit predict model.pt ct.nii.gz --slices all         # every slice of a volume (default: the middle one)
  xaikit predict data_samples/models/phantom_cnn3d.pt data_samples/nifti/volume.nii.gz   # a 3D model: whole volumes

Outputs name each image by a running index and the SHA-256 of its file (00000_9f2c41d0aa51b7e3), never by
its file name; the table's source_sha256 column lets you match rows to your files (sha256sum FILE).
"""

_EXPLAIN_EXAMPLES = """examples:
  xaikit explain data_samples/models/phantom_small_cnn.pt data_samples/images/img00000.png \\
      --method gradcam --method lrp_epsilon_plus --out explained/
  xaikit explain model.pt data_samples/manifest.csv --preset quick --target label --out explained/
  xaikit explain model.pt dicom_series_folder/ --method integrated_gradients --target 1 --out explained/
  xaikit explain data_samples/models/phantom_cnn3d.pt data_samples/dicom/ct_series/ ct.nii.gz \
      --method gradcam --out explained/   # 3D model: maps/<item>__gradcam.nii.gz on each scan's own grid

writes into --out: overlays/<item>__<method>.png (the map on the original image, titled with the prediction and
the domain flag), maps/<item>__<method>.npy (raw signed map on the model's input grid), for volumes also
maps/<item>__<method>.nii.gz (the map on the scan's own grid: its affine and voxel order), predictions.csv,
explanations.csv (one row per image x method with map summaries; both with domain_distance and in_domain) and
index.html (a gallery). Rerunning the same command computes only what is missing (the disk
cache in <out>/.cache). Methods: python -c "import xaikit.saliency as s; print(sorted(s.METHODS))".
"""

_SERVE_EXAMPLES = """examples:
  xaikit serve data_samples/models/phantom_small_cnn.pt               # http://127.0.0.1:8000/docs
  XAIKIT_TOKEN=s3cret xaikit serve model.pt --port 9000 --queue 4      # clients send 'Authorization: Bearer s3cret'
  curl -F file=@data_samples/images/img00000.png 'http://127.0.0.1:8000/explain?method=gradcam'
"""


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``xaikit`` command (subcommands with their own ``--help``)."""
    from .. import __version__

    p = argparse.ArgumentParser(prog="xaikit", description="xaikit: explain deep-learning models on medical images.",
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"xaikit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _predict_parser(sub)
    _explain_parser(sub)
    _evaluate_parser(sub)
    _serve_parser(sub)
    _demo_parser(sub)
    samples = sub.add_parser("samples", help="rebuild data_samples/ deterministically",
                             description="Rebuild data_samples/ from the kit's own code (about 5 minutes).")
    samples.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped data_samples/)")
    samples.add_argument("--no-models", action="store_true", help="skip training the sample models")
    samples.add_argument("--worlds", action="store_true",
                         help="rebuild only the ground-truth world models (data_samples/models/world_*.pt)")
    return p


def _common_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, metavar="MODEL.pt", help="an xaikit checkpoint (its Preprocess is used)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file (DICOM, NIfTI, PNG/JPEG/TIFF, .npy), folder (searched recursively) or manifest "
                        "CSV (image_path,label,...). With a 3D model each NIfTI file, multi-frame DICOM file or "
                        "DICOM series folder is one volume; with a 2D model a series folder gives one item per file")
    p.add_argument("--slices", default=None, metavar="middle|all|N",
                   help="2D models on volumes (multi-frame DICOM, NIfTI): the middle slice (default), all slices, "
                        "or slice N; 3D models see whole volumes")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out unreadable inputs (listed on stderr) instead of stopping")
    p.add_argument("--manifest-root", type=Path, default=None, metavar="DIR",
                   help="folder every path in a manifest CSV must lie in (default: the CSV's folder)")
    p.add_argument("--trust-manifest", action="store_true",
                   help="accept manifest paths outside --manifest-root (only for manifests you wrote)")
    p.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict classes of images with a checkpoint",
                       description="Predict the class of each image with the checkpoint's model and Preprocess; "
                                   "prints a CSV table (or writes OUT/predictions.csv).",
                       epilog=_PREDICT_EXAMPLES + "\n" + _EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_inputs(p)
    p.add_argument("--out", type=Path, default=None, help="write predictions.csv here instead of printing it")


def _explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain predictions: overlays, raw maps, tables, a gallery",
                       description="Explain each image with one or more saliency methods and write overlays, raw "
                                   "maps, tidy tables and an index.html gallery into --out.",
                       epilog=_EXPLAIN_EXAMPLES + "\n" + _EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_inputs(p)
    p.add_argument("--method", action="append", default=[], metavar="NAME",
                   help="a saliency method (repeat for several), e.g. gradcam, lrp_epsilon_plus")
    p.add_argument("--preset", default=None, metavar="NAME", help="a named set of methods: quick, sumer2023")
    p.add_argument("--target", default="pred", metavar="pred|label|INDEX",
                   help="explain the predicted class (default), the true label (manifest input), or class INDEX")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")


_EVALUATE_EXAMPLES = """examples:
  xaikit evaluate data_samples/models/phantom_small_cnn.pt data_samples/images/ --preset quick --dry-run
  xaikit evaluate model.pt data_samples/manifest.csv --preset sumer2023 --metric deletion \\
      --metric cascading_randomization --metric max_sensitivity --out study/
  xaikit evaluate model.pt scans/ --method gradcam --method gradient --metric deletion \\
      --metric-param deletion:steps=16 --workers 2 --out study/

prints the plan (passes per method x metric, estimated time, peak memory) and, unless --dry-run, writes into --out:
index.html (verdicts, the method x metric table with bootstrap CIs, figures), scores.csv, summary.csv, tests.csv,
verdicts.csv, plan.txt. The random and Sobel controls are scored beside the methods. Rerunning the same command
computes only what is missing (maps and scores are cached in <out>/.cache); an interrupted run loses at most one
batch of one method x metric. Metrics: python -c "import xaikit.evaluation as e; print(sorted(e.METRICS))".
"""


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="which maps to trust: methods x metrics with CIs, verdicts, a report",
                       description="Explain the images with the methods, score every map on the metrics beside the "
                                   "random and Sobel controls, and write the table with bootstrap CIs, the verdicts "
                                   "and an index.html into --out. Prints the plan first.",
                       epilog=_EVALUATE_EXAMPLES + "\n" + _EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_inputs(p)
    p.add_argument("--method", action="append", default=[], metavar="NAME", help="a saliency method (repeat)")
    p.add_argument("--preset", default=None, metavar="NAME", help="a named set of methods: quick, sumer2023")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="a metric (repeat; default: deletion, insertion, cascading_randomization, sparseness)")
    p.add_argument("--metric-param", action="append", default=[], metavar="METRIC:KEY=VALUE",
                   help="a metric parameter, e.g. deletion:steps=16 (JSON value; repeat)")
    p.add_argument("--target", default="pred", metavar="pred|label|INDEX",
                   help="explain the predicted class (default), the true label (manifest input), or class INDEX")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the CIs and tests (default 1000)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="run on a Dask LocalCluster of N worker processes (default: this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster of this scheduler (tcp://host:8786)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve predict/explain over HTTP (FastAPI + uvicorn)",
                       description="An HTTP service: POST /predict and /explain with an uploaded image; GET /health, "
                                   "/methods, /docs. Binds 127.0.0.1 unless told otherwise.",
                       epilog=_SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, metavar="MODEL.pt", help="an xaikit checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-env", default="XAIKIT_TOKEN", metavar="VAR",
                   help="environment variable holding the bearer token; when set, every request but /health "
                        "needs 'Authorization: Bearer <token>' (default XAIKIT_TOKEN)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest accepted request body (default 32)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a request may take (default 60) -> 504")
    p.add_argument("--queue", type=int, default=8, help="requests held at once (default 8); more get 503")


def _demo_parser(sub) -> None:
    from ..demo import STAGES

    demo = sub.add_parser("demo", help="run the pipeline on the shipped sample data and write an HTML report")
    demo.add_argument("--out", type=Path, default=Path("xaikit-demo"), help="report folder (default: xaikit-demo)")
    demo.add_argument("--samples", type=Path, default=None, help="sample data folder (default: the shipped one)")
    demo.add_argument("--smoke", action="store_true", help="a fast, reduced run (for CI)")
    demo.add_argument("--stages", nargs="+", default=None, metavar="STAGE", choices=list(STAGES),
                      help=f"run only these stages, in this order (default: all): {', '.join(STAGES)}")


def exit_code(err: XaikitError) -> int:
    """The process exit status for an xaikit error (see :data:`EXIT_CODES`)."""
    if isinstance(err, (ImageReadError, ManifestError, DatasetError)):
        return EXIT_CODES["input"]
    if isinstance(err, (CheckpointError, ModelError, PreprocessMismatchError)):
        return EXIT_CODES["model"]
    if isinstance(err, ExplanationError):
        return EXIT_CODES["explain"]
    if isinstance(err, ArgumentError):
        return EXIT_CODES["usage"]
    return EXIT_CODES["error"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xaikit`` and ``python -m xaikit``; returns the exit status."""
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return EXIT_CODES["ok"]
    from . import commands

    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(args.command)  # restored when the block ends
        try:
            return getattr(commands, args.command)(args)
        except XaikitError as err:
            print(f"xaikit {args.command}: error: {err}", file=sys.stderr)
            return exit_code(err)


def _one_line_warning(command: str):
    """Print a warning as one line on stderr, ``xaikit explain: warning (OutOfDomainWarning): ...``, without
    Python's source location and code line (meaningless to a command-line user)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"xaikit {command}: warning ({category.__name__}): {text}", file=file or sys.stderr)

    return show
