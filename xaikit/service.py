"""A small HTTP service: upload an image, get the prediction and its saliency map (FastAPI served by uvicorn).

``POST /predict`` and ``POST /explain`` take a multipart upload (field ``file``: DICOM, NIfTI, PNG/JPEG/TIFF,
``.npy``) and return JSON, always with a ``domain`` field (is the upload like the model's training data:
``distance``, ``in_domain``, ``flag``, ``warning``; :mod:`xaikit.domain`); ``GET /health``, ``GET /methods``
and the OpenAPI docs (``/docs``) describe the service. The same package functions as the command line do the
work (:mod:`xaikit.inference`, :func:`xaikit.saliency.explain`); the service only adds what a network front door needs:

- it binds ``127.0.0.1`` unless told otherwise (and warns when it listens beyond this machine without a token);
- optional bearer-token authentication (``Authorization: Bearer <token>``, compared in constant time);
  ``/health`` stays open for load balancers;
- a request size limit, enforced on ``Content-Length`` and on the bytes actually received (413);
- a bounded queue: at most ``queue_size`` requests are held (running or waiting for the one model worker);
  beyond that a request gets 503 with ``Retry-After`` at once, never a hang;
- a per-request timeout (504). The computation cannot be killed mid-way (a Python thread), so its queue slot
  stays taken until it really ends: the bound on held work is kept;
- uploads live only in a fresh temporary folder (under ``upload_dir``, default the system's) that is deleted
  before the response is sent; responses and logs name an upload only by the SHA-256 of its bytes, and image
  metadata is never returned.

Example
-------
>>> from xaikit.service import create_app, ServiceConfig
>>> app = create_app("data_samples/models/phantom_small_cnn.pt", ServiceConfig(token="s3cret"))  # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)  or  xaikit serve MODEL.pt
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image

from .checkpoint import Checkpoint
from .domain import assess_domain, domain_badge, domain_message, prediction_caption
from .errors import ArgumentError, XaikitError
from .inference import content_id, load_model, map_sign, map_summary, overlay_rgb, planes, predict, titled, to_batch
from .io import SUPPORTED_EXTENSIONS, read_image

__all__ = ["ServiceConfig", "create_app", "serve"]

_log = logging.getLogger("xaikit.service")
_ENDINGS = tuple(e for endings in SUPPORTED_EXTENSIONS.values() for e in endings)


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and settings of the service.

    Parameters
    ----------
    max_upload_bytes : int
        Largest request body accepted (413 beyond).
    timeout_s : float
        Seconds a request may take before it is answered 504.
    queue_size : int
        Requests held at once (running + waiting); more get 503 with ``Retry-After: retry_after_s``.
    token : str, optional
        When set, every endpoint but ``/health`` needs ``Authorization: Bearer <token>`` (401 otherwise).
    retry_after_s : int
        Value of the ``Retry-After`` header on 503.
    upload_dir : path, optional
        Where the per-request temporary folders are made (default: the system temporary folder).
    """

    max_upload_bytes: int = 32 * 2**20
    timeout_s: float = 60.0
    queue_size: int = 8
    token: str | None = field(default=None, repr=False)  # never in a repr, log or error message
    retry_after_s: int = 2
    upload_dir: str | None = None

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.queue_size < 1 or not self.timeout_s > 0 or self.retry_after_s < 0:
            raise ArgumentError(f"ServiceConfig: max_upload_bytes, queue_size and timeout_s must be positive and "
                                f"retry_after_s >= 0; got {self.max_upload_bytes}, {self.queue_size}, "
                                f"{self.timeout_s}, {self.retry_after_s}.")


class _TooLarge(Exception):
    pass


class _SizeLimit:
    """ASGI middleware: refuse bodies above ``limit`` bytes, by ``Content-Length`` and by bytes received."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, self._message())
        state = {"received": 0, "over": False, "answered": False}

        async def counting_receive():
            message = await receive()
            state["received"] += len(message.get("body", b""))
            if state["received"] > self.limit:
                state["over"] = True
                raise _TooLarge
            return message

        async def guarded_send(message):
            if not state["over"]:
                state["answered"] = state["answered"] or message["type"] == "http.response.start"
                return await send(message)
            if not state["answered"]:  # the app turned the interruption into its own error (FastAPI: 400)
                state["answered"] = True
                await _send_json(send, 413, self._message())

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if state["over"] and not state["answered"]:
            await _send_json(send, 413, self._message())

    def _message(self) -> str:
        return (f"the request body is larger than the limit of {self.limit} bytes; send a smaller image "
                "(or start the service with a larger --max-upload-mb).")


async def _send_json(send, status: int, detail: str, headers: dict | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class _Gate:
    """At most ``size`` requests held; a slot is freed when the work really ends (not when it times out)."""

    def __init__(self, size: int):
        self.size, self.held = size, 0

    def try_acquire(self) -> bool:
        if self.held >= self.size:
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1


class _Worker:
    """The model and the one thread that runs it (explain scopes hooks on the model: one call at a time)."""

    def __init__(self, ckpt: Checkpoint, config: ServiceConfig):
        self.ckpt, self.config = ckpt, config
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaikit-model")

    def run(self, kind: str, data: bytes, filename: str, options: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="xaikit-upload-", dir=self.config.upload_dir) as tmp:
            path = Path(tmp) / ("upload" + _ending(filename))
            path.write_bytes(data)
            image = planes(read_image(path), "middle")[0][1]
        x = to_batch(self.ckpt, [image])
        probs = predict(self.ckpt.model, x)[0]
        domain = _domain(self.ckpt, x, kind)
        out = {"upload_sha256": content_id(data), "prediction": _prediction(probs, self.ckpt.classes),
               "domain": domain, "model": {"arch": self.ckpt.arch, "sha256": self.ckpt.sha256[:16]}}
        if kind == "explain":
            caption = prediction_caption(out["prediction"]["class"], float(probs.max()), domain["distance"])
            out |= _explain(self.ckpt, x, image, options, caption, alert=domain["in_domain"] is False)
        return out


def _ending(filename: str) -> str:
    """The upload's recognized extension (the reader picks the format by it), else none (read by content)."""
    name = (filename or "").lower()
    return next((e for e in sorted(_ENDINGS, key=len, reverse=True) if name.endswith(e)), "")


def _prediction(probs, classes) -> dict:
    k = int(probs.argmax())
    return {"class_index": k, "class": classes[k], "probabilities": {c: float(p) for c, p in zip(classes, probs)}}


def _domain(ckpt: Checkpoint, x, kind: str) -> dict:
    """Is the upload like the model's training data? ``distance`` above 1 is out of domain (``None``: the
    checkpoint stores no domain); ``warning`` is the warning's text (also logged), ``None`` when in domain."""
    distances = assess_domain(ckpt.model, x)
    distance = None if distances is None else round(float(distances[0]), 4)
    message = domain_message(ckpt.model, x, distances, where=f"xaikit service /{kind}")
    if message:
        _log.warning("%s", message)
    return {"distance": distance, "in_domain": None if distance is None else distance <= 1.0,
            "flag": domain_badge(distance), "trained_on": (ckpt.model.xaikit_domain or {}).get("description")
            if distance is not None else None, "warning": message}


def _explain(ckpt: Checkpoint, x, image, options: dict, caption: str, *, alert: bool) -> dict:
    from .domain import OutOfDomainWarning
    from .saliency import explain
    from .saliency.explanation import plain

    with warnings.catch_warnings():  # the response's "domain" field and the log say it once
        warnings.simplefilter("ignore", OutOfDomainWarning)
        exp = explain(ckpt.model, x, options["method"], options["target"], image_ids=["upload"], **options["params"])
    m = exp.maps[0].numpy().astype(np.float32)
    npy, png = io.BytesIO(), io.BytesIO()
    np.save(npy, m)
    rgb = titled(overlay_rgb(image, m, ckpt.preprocess), caption, alert=alert)
    Image.fromarray(rgb).save(png, format="PNG")  # in memory, not on disk
    return {"method": exp.method, "params": plain(exp.params), "target": int(exp.targets[0]),
            "target_policy": exp.target_policy, "map_shape": list(m.shape), "map_sign": map_sign(m),
            "map_summary": map_summary(m), "overlay_png_base64": base64.b64encode(png.getvalue()).decode(),
            "map_npy_base64": base64.b64encode(npy.getvalue()).decode(), "versions": plain(exp.versions)}


def create_app(model: str | os.PathLike | Checkpoint, config: ServiceConfig | None = None):
    """The FastAPI application serving ``model`` (a checkpoint path or a loaded :class:`Checkpoint`)."""
    config = config or ServiceConfig()
    ckpt = model if isinstance(model, Checkpoint) else load_model(model)
    if ckpt.preprocess_dict is None:
        raise ArgumentError("create_app: the checkpoint holds no Preprocess; save it with one.")
    worker, gate = _Worker(ckpt, config), _Gate(config.queue_size)
    app = FastAPI(title="xaikit", version=_version(),
                  description="Predictions and saliency maps for uploaded medical images (DICOM, NIfTI, PNG).")

    authorized, held = _authorizer(config), _holder(config, worker, gate)

    @app.get("/health")
    def health() -> dict:
        """Liveness and load: requests held now, the limit, the model served."""
        return {"status": "ok", "in_flight": gate.held, "queue_size": config.queue_size,
                "model": {"arch": ckpt.arch, "classes": ckpt.classes, "sha256": ckpt.sha256[:16]}}

    @app.get("/methods", dependencies=[Depends(authorized)])
    def methods() -> dict:
        """The saliency methods and their default parameters."""
        from .saliency import METHODS
        from .saliency.explanation import plain

        return {name: {"family": info.family, "library": info.library, "signed": info.signed,
                       "defaults": plain(dict(info.defaults))} for name, info in sorted(METHODS.items())}

    @app.post("/predict", dependencies=[Depends(authorized)])
    async def predict_endpoint(file: UploadFile = File(..., description="DICOM, NIfTI, PNG/JPEG/TIFF or .npy")):
        """The predicted class and the class probabilities of an uploaded 2D image (volumes: the middle slice)."""
        return await held("predict", file, {})

    @app.post("/explain", dependencies=[Depends(authorized)])
    async def explain_endpoint(file: UploadFile = File(..., description="DICOM, NIfTI, PNG/JPEG/TIFF or .npy"),
                               method: str = Query("gradcam", description="a key of GET /methods"),
                               target: str = Query("pred", description="'pred' or a class index"),
                               params: str = Form("{}", description="method parameters as a JSON object")):
        """Prediction plus one saliency map: overlay PNG and raw float32 ``.npy``, both base64, with provenance."""
        return await held("explain", file, _options(method, target, params, len(ckpt.classes)))

    return _SizeLimit(app, config.max_upload_bytes)


def _authorizer(config: ServiceConfig):
    """The endpoint dependency that checks the bearer token (no token configured: every request passes)."""

    def authorized(request: Request) -> None:
        if config.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {config.token}".encode()):
            raise HTTPException(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})

    return authorized


def _holder(config: ServiceConfig, worker: _Worker, gate: _Gate):
    """``held(kind, upload, options)``: one request on the model thread (503 when busy, 504 on timeout)."""

    async def held(kind: str, upload: UploadFile, options: dict) -> JSONResponse:
        if not gate.try_acquire():
            return JSONResponse({"detail": f"the service is busy ({config.queue_size} requests held); retry "
                                           f"after {config.retry_after_s} s."}, 503,
                                headers={"Retry-After": str(config.retry_after_s)})
        loop = asyncio.get_running_loop()
        try:
            data = await upload.read()
            future = worker.pool.submit(worker.run, kind, data, upload.filename or "", options)
        except BaseException:
            gate.release()
            raise
        future.add_done_callback(lambda _: _call_soon(loop, gate.release))
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), config.timeout_s)
        except asyncio.TimeoutError:
            _log.warning("%s request timed out after %.1f s", kind, config.timeout_s)
            return JSONResponse({"detail": f"the request took longer than {config.timeout_s} s and was "
                                           "abandoned; try a cheaper method or a longer --timeout."}, 504)
        except XaikitError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        return JSONResponse(result)

    return held


def _call_soon(loop: asyncio.AbstractEventLoop, fn) -> None:
    """Run ``fn`` on the server's event loop (from the model thread); a stopped server has no queue to free."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(fn)


def _options(method: str, target: str, params: str, n_classes: int) -> dict:
    from .saliency import METHODS

    if method not in METHODS:
        raise HTTPException(422, f"method {method!r} is not known; GET /methods lists them.")
    if target != "pred" and not (target.isdigit() and int(target) < n_classes):
        raise HTTPException(422, f"target {target!r}: use 'pred' or a class index 0..{n_classes - 1}.")
    try:
        parsed = json.loads(params)
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"params is not valid JSON ({exc.msg}); send an object like {{\"n_steps\": 16}}.")
    if not isinstance(parsed, dict):
        raise HTTPException(422, "params must be a JSON object of method parameters.")
    unknown = sorted(set(parsed) - set(METHODS[method].defaults))
    if unknown:  # only the method's own parameters: a client must not set memory budgets, layers or seeds
        raise HTTPException(422, f"params {unknown} are not parameters of {method}; it takes "
                                 f"{sorted(METHODS[method].defaults)} (GET /methods).")
    return {"method": method, "target": "pred" if target == "pred" else int(target), "params": parsed}


def _version() -> str:
    from . import __version__

    return __version__


def serve(model: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          config: ServiceConfig | None = None, log_level: str = "info") -> None:
    """Serve ``model`` with uvicorn until interrupted (``xaikit serve MODEL.pt``)."""
    import uvicorn

    config = config or ServiceConfig()
    if host not in ("127.0.0.1", "localhost", "::1") and config.token is None:
        warnings.warn(f"serving on {host} without a token: anyone who can reach this port can use the model. "
                      "Set XAIKIT_TOKEN.", stacklevel=2)
    uvicorn.run(create_app(model, config), host=host, port=port, log_level=log_level)
