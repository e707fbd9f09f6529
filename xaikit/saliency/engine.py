"""The engine behind :func:`explain`: checks, model scoping, memory chunking, target handling, reduction."""
from __future__ import annotations

import functools
import importlib.metadata
import inspect
import warnings
import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import check_preprocess
from ..domain import check_domain
from ..errors import ExplanationError, ModelError
from ..models import cam_layer
from .explanation import Explanation, plain
from .memory import MemoryPlan, plan
from .noise_tunnel import check_noise_tunnel, run_tunnel
from .params import check_params
from .registry import METHODS, MethodInfo, get_method
from .safety import guarded, hook_count, private_copy, register_cache, state_fingerprint
from .targets import Target, TargetSpec, resolve_target

__all__ = ["explain", "MethodContext", "REDUCTIONS", "resolve_layer"]

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda a: a.sum(1),
    "mean": lambda a: a.mean(1),
    "abs_sum": lambda a: a.abs().sum(1),
    "l2": lambda a: a.pow(2).sum(1).sqrt(),
    "max_abs": lambda a: a.abs().amax(1),
}


class _Head(nn.Module):
    """The forward handed to captum: the model, then the target folded in; records clean logits for free."""

    def __init__(self, model: nn.Module, spec: TargetSpec, clean: torch.Tensor, store: dict):
        super().__init__()
        self.model = model
        self.spec = spec
        self._clean = clean
        self._store = store

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if "logits" not in self._store and _same_tensor(x, self._clean):
            self._store["logits"] = logits.detach()
        return self.spec.head(logits)


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.shape == b.shape and a.data_ptr() == b.data_ptr() and a.dtype == b.dtype)


@dataclass
class MethodContext:
    """Everything a method function gets (besides its own parameters).

    Attributes
    ----------
    model : torch.nn.Module
        The model to run (the user's model, or the private copy for ``private_copy`` methods).
    head : torch.nn.Module
        ``model`` followed by the target: give it to captum as the forward function.
    inputs : torch.Tensor
        ``n x C x H x W`` chunk, detached.
    spec : TargetSpec
        The resolved target for this chunk; ``spec.indices`` is what captum's ``target=`` gets.
    layer : torch.nn.Module or None
        The resolved layer (in ``model``) for layer methods.
    memory : MemoryPlan
        ``memory.max_batch`` samples fit one forward+backward; ``memory.chunk`` (<= max_batch) is the
        number one pass should take for speed.
    seed : int
        Seed for this chunk (global RNG is also seeded and restored around the call).
    index : torch.Tensor
        One stream number per input (CRC-32 of its image id): per-image random draws do not depend on
        batching or the memory budget.
    store : dict
        Engine scratch space: ``"logits"`` when the method saw the clean inputs.
    record : dict
        What the method decided (canonizers, baselines...): merged into ``Explanation.params``.
    """

    model: nn.Module
    head: nn.Module
    inputs: torch.Tensor
    spec: TargetSpec
    layer: nn.Module | None
    memory: MemoryPlan
    seed: int
    index: torch.Tensor
    store: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)

    @property
    def target(self) -> torch.Tensor | None:
        """captum's ``target=`` argument."""
        return self.spec.captum_target()

    def generator(self, offset: int = 0) -> torch.Generator:
        g = torch.Generator(device=self.inputs.device)
        g.manual_seed(self.seed * 1_000_003 + offset)
        return g


def _outside_inference_mode(fn: Callable) -> Callable:
    """Run ``fn`` with inference mode off: gradients, hooks and captum need autograd, which
    ``torch.inference_mode()`` disables for good (``no_grad`` the methods handle themselves). Inputs made in
    inference mode are cloned per chunk by the engine; weights made there cannot take part in a backward pass."""

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        if not torch.is_inference_mode_enabled():
            return fn(model, *args, **kwargs)
        frozen = [n for n, t in (*model.named_parameters(), *model.named_buffers())
                  if t.is_inference()] if isinstance(model, nn.Module) else []
        if frozen:
            raise ExplanationError(
                f"explain: the model's weights ({', '.join(frozen[:3])}{', ...' if len(frozen) > 3 else ''}) were "
                "created inside torch.inference_mode(), so no gradient can flow through them. Build or load the "
                "model outside inference mode (torch.no_grad() is fine), then call explain().")
        with torch.inference_mode(False):
            return fn(model, *args, **kwargs)

    return wrapper


@_outside_inference_mode
def explain(
    model: nn.Module,
    inputs: torch.Tensor | Mapping | Sequence[Mapping],
    method: str,
    target: Target = "pred",
    *,
    labels: torch.Tensor | Sequence[int] | None = None,
    image_ids: Sequence[str] | None = None,
    layer: str | None = None,
    preprocess: Any = None,
    memory_budget: int | None = None,
    seed: int = 0,
    reduction: str = "sum",
    keep_raw: bool = True,
    noise_tunnel: Mapping | None = None,
    **params: Any,
) -> Explanation:
    """Explain the model's outputs for ``inputs`` with one saliency ``method``.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits ``N x K``. Left exactly as it was (mode, ``requires_grad``, hooks,
        weights), also when the method raises.
    inputs : torch.Tensor or dict or list of dict
        float tensor ``N x C x H x W`` (``N x C x D x H x W`` for 3D-capable methods), or a collated batch of
        dataset samples (``{"image", "label", "id"}``), or a list of samples.
    method : str
        A key of :data:`METHODS` (``sorted(METHODS)`` lists them).
    target : "pred", "label", int, torch.Tensor or callable
        What to explain: the predicted class, the true label (needs ``labels``), a class index, one index
        per input, or a callable mapping logits ``N x K`` to one score per input.
        Segmentation models (outputs ``N x K x H x W``): ``targets.segmentation(class_index, mask=...)``
        (:mod:`xaikit.saliency.seg_targets`); detectors: ``targets.detection(...)``.
    labels, image_ids : optional
        Stored in the Explanation (taken from sample dicts when given).
    layer : str, optional
        Dotted module name (``model.get_submodule``) for layer methods; default: the last layer with a
        spatial output.
    preprocess : xaikit.data.Preprocess, optional
        Checked against the preprocessing saved with the model (mismatch raises).
    memory_budget : int, optional
        Bytes the method may use for activations; default about 2 GiB on CPU, half the free memory on GPU.
    seed : int
        Seed for random methods; results do not depend on the global RNG, which is left untouched.
    reduction : str
        Channel reduction of the stored map: ``"sum"`` (default), ``"mean"``, ``"abs_sum"``, ``"l2"``,
        ``"max_abs"``.
    keep_raw : bool
        Keep the per-channel attribution in ``Explanation.raw``.
    noise_tunnel : dict, optional
        Run the method on noisy copies and combine (captum's NoiseTunnel, for any method):
        ``{"type": "smoothgrad" | "smoothgrad_sq" | "vargrad", "n": 16, "sigma": 0.15}``
        (:mod:`xaikit.saliency.noise_tunnel`); noise seeded per image.
    **params
        Method parameters (see ``METHODS[method].defaults``).

    Returns
    -------
    Explanation

    Examples
    --------
    >>> import torch, torchvision
    >>> from xaikit.saliency import explain
    >>> net = torchvision.models.resnet18(num_classes=2).eval()
    >>> exp = explain(net, torch.rand(2, 3, 64, 64), "integrated_gradients", n_steps=8)
    >>> tuple(exp.maps.shape)
    (2, 64, 64)
    """
    info = get_method(method)
    params = _check_params(info, params)
    if reduction not in REDUCTIONS:
        raise ExplanationError(f"reduction={reduction!r} is not known; use one of {sorted(REDUCTIONS)}.")
    _check_run_args(seed, memory_budget)
    x, labels, image_ids = _unpack_inputs(inputs, labels, image_ids)
    _check_tensor(x, info)
    if isinstance(model, nn.Module):
        _check_dims(model, x)  # a volume for a 2-D model: say that, not that a parameter does not fit the volume
    check_params(info.fn, params, info.name, x)
    tunnel = check_noise_tunnel(noise_tunnel, info)
    checked = model  # the checkpoint's own model: UNets and box models carry a training domain too
    if _bindable(target) and isinstance(model, nn.Module):
        model = target.prepare(model, info)  # detection: a wrapper with tensor outputs
    _check_model(model, x, logits=not _bindable(target))

    check_domain(checked, x, where="explain")
    if preprocess is not None:

        check_preprocess(model, preprocess)
    request = _Request(model=model, x=x, info=info, target=target, labels=labels, image_ids=tuple(image_ids),
                       layer_name=_layer_name(model, info, layer, x), budget=memory_budget, seed=seed,
                       reduction=reduction, keep_raw=keep_raw, params=params, tunnel=tunnel)
    with guarded(model):
        return _run(request)


@dataclass(frozen=True, kw_only=True)
class _Request:
    """One checked :func:`explain` call: what :func:`_run` and :func:`_build` need, by name (not 12 positions)."""

    model: nn.Module
    x: torch.Tensor
    info: MethodInfo
    target: Any
    labels: torch.Tensor | None
    image_ids: tuple[str, ...]
    layer_name: str | None
    budget: int | None
    seed: int
    reduction: str
    keep_raw: bool
    params: dict
    tunnel: dict | None = None


@dataclass(frozen=True, kw_only=True)
class _Attributions:
    """What the method produced over all chunks, with the target and memory plan it ran under."""

    spec: TargetSpec
    memory: MemoryPlan
    logits: torch.Tensor
    attrs: list
    raws: list
    record: dict


def _run(req: _Request) -> Explanation:
    model, x, info, target = req.model, req.x, req.info, req.target
    memory = plan(model, x, req.budget, info.name)
    pre_logits = None
    if _bindable(target):  # mask/box targets: fixed on the clean outputs, one image per chunk
        pre_logits = _logits(model, x, memory.max_batch)
        target = target.bind(pre_logits)
    elif memory.output_ndim != 2:
        raise ExplanationError(
            f"{type(model).__name__} returns outputs of {memory.output_ndim} dimensions, not logits N x K; "
            "explain a segmentation model with target=targets.segmentation(class_index, mask=...) and a detector "
            "with target=targets.detection(...) (from xaikit.saliency import targets).")
    clean = info.clean_forward and req.tunnel is None  # noisy copies: "pred" is fixed on the clean input first
    spec = resolve_target(target, len(x), memory.n_classes, req.labels, needs_indices=not clean)
    if spec.policy == "pred" and not clean:
        pre_logits = _logits(model, x, memory.max_batch)
        spec = TargetSpec("pred", pre_logits.argmax(1))
    streams = torch.tensor([zlib.crc32(i.encode()) for i in req.image_ids])  # per-image random streams
    run_model, run_layer = _model_for(model, info, req.layer_name, x[: min(len(x), 2)])
    attrs, raws, logits, record = [], [], [], {}
    step = 1 if getattr(spec.fn, "per_image", False) else memory.max_batch
    for start in range(0, len(x), step):
        sl = slice(start, start + step)
        chunk = x[sl].detach().clone()
        store: dict = {}
        ctx = MethodContext(model=run_model, head=_Head(run_model, spec.subset(sl), chunk, store), inputs=chunk,
                            spec=spec.subset(sl), layer=run_layer, memory=memory, seed=req.seed, index=streams[sl],
                            store=store)
        attr, raw = _call(info, ctx, req.params, req.seed + start, req.tunnel)
        attrs.append(attr.detach().float())
        raws.append(None if raw is None else raw.detach().float())
        logits.append(store.get("logits"))
        record.update(ctx.record)
    logits = _assemble_logits(model, x, logits, pre_logits, memory.max_batch)
    return _build(req, _Attributions(spec=spec, memory=memory, logits=logits, attrs=attrs, raws=raws,
                                     record={**req.params, **record}))


# captum's notes about what it does internally (we require grads and hook a private copy on purpose)
_CAPTUM_CHATTER = (".*did not already require gradients.*", ".*Setting forward, backward hooks.*",
                   ".*Setting backward hooks on ReLU.*")


def _call(info: MethodInfo, ctx: MethodContext, params: dict, seed: int, tunnel: dict | None = None):
    devices = [ctx.inputs.device] if ctx.inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        for message in _CAPTUM_CHATTER:
            warnings.filterwarnings("ignore", message=message)
        torch.manual_seed(seed)
        out = info.fn(ctx, **params) if tunnel is None else run_tunnel(info, ctx, params, tunnel)
    return out if isinstance(out, tuple) else (out, None)


def _bindable(target: Any) -> bool:
    """Mask and box targets (:mod:`.seg_targets`, :mod:`.detection`) resolve against the clean outputs."""
    return hasattr(target, "bind") and hasattr(target, "prepare")


def _logits(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def _assemble_logits(model, x, parts, pre_logits, batch):
    if pre_logits is not None:
        return pre_logits
    if all(p is not None for p in parts):
        return torch.cat(parts)
    return _logits(model, x, batch)


def _model_for(model: nn.Module, info: MethodInfo, layer_name: str | None, probe_x: torch.Tensor):
    if not info.private_copy:
        return model, (model.get_submodule(layer_name) if layer_name else None)
    dup, layer_module = private_copy(model, layer_name)
    # once per copy (rebuilt when the weights change) and input shape: two forwards of two inputs per call were
    # about a sixth of a pass for the one-pass methods that use the copy
    key = ("private_copy", id(dup), layer_name, tuple(probe_x.shape[1:]), probe_x.dtype, str(probe_x.device))
    _once(model, key, lambda: _check_copy(model, dup, probe_x, info))
    return dup, layer_module


def _check_copy(model: nn.Module, dup: nn.Module, probe_x: torch.Tensor, info: MethodInfo) -> None:
    """The private copy gives the model's outputs on ``probe_x`` (else :class:`ModelError`)."""
    with torch.no_grad():
        ref, got = model(probe_x), dup(probe_x)
    if not torch.allclose(ref, got, rtol=1e-5, atol=1e-5 * max(1.0, float(ref.abs().max()))):
        raise ModelError(
            f"the private copy of {type(model).__name__} built for {info.name!r} (fresh non-in-place ReLUs) "
            f"does not reproduce the model's outputs (max difference {float((ref - got).abs().max()):.3g}); "
            "the model's forward probably relies on an in-place activation side effect. Use a method that "
            "does not need the copy (see METHODS[name].private_copy)."
        )


def _build(req: _Request, out: _Attributions) -> Explanation:
    x, info, spec, logits, memory, reduction = req.x, req.info, out.spec, out.logits, out.memory, req.reduction
    attr = _to_input_size(torch.cat(out.attrs), x.shape[2:])
    raw = None if not req.keep_raw or any(r is None for r in out.raws) else _to_input_size(torch.cat(out.raws),
                                                                                          x.shape[2:])
    if attr.shape[1] == 1:
        maps, reduction = attr[:, 0], ("none" if info.needs_layer else reduction)
    else:
        maps = REDUCTIONS[reduction](attr)
    _check_finite(maps, info.name, req.image_ids)
    classify = logits.ndim == 2  # segmentation / detection outputs have no per-image class or probabilities
    preds = logits.argmax(1).cpu() if classify else torch.full((len(x),), -1, dtype=torch.long)
    probs = torch.softmax(logits.float(), 1).cpu() if classify else torch.zeros(len(x), 0)
    targets = _targets(spec, preds)
    record = {**out.record, "layer": req.layer_name, "seed": req.seed, "memory_budget": memory.budget,
              "max_batch": memory.max_batch, "per_sample_bytes": memory.per_sample}
    return Explanation(
        maps=maps.float().cpu(), method=info.name, params=plain(record), target_policy=spec.policy,
        targets=targets, preds=preds, probs=probs, image_ids=list(req.image_ids),
        labels=req.labels, raw=(raw if raw is not None else attr).cpu() if req.keep_raw else None,
        reduction=reduction, versions=_versions(),
    )


def _targets(spec: TargetSpec, preds: torch.Tensor) -> torch.Tensor:
    if spec.fn is not None:
        return getattr(spec.fn, "targets", torch.full_like(preds, -1)).cpu().long()
    return preds.clone() if spec.indices is None else spec.indices.cpu().long()


def _to_input_size(a: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if a.shape[2:] == size:
        return a
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(a, size=tuple(size), mode=mode, align_corners=False)


def _check_finite(maps: torch.Tensor, method: str, image_ids: Sequence[str]) -> None:
    bad = (~torch.isfinite(maps.reshape(len(maps), -1))).any(1)
    if bool(bad.any()):
        names = [image_ids[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise ExplanationError(
            f"method {method!r} produced non-finite values (NaN/inf) for image(s) {names[:10]}"
            f"{' ...' if len(names) > 10 else ''}. Check the inputs and model outputs for NaN/inf, or try a "
            "larger epsilon/stabilizer."
        )


def _versions() -> dict:
    return dict(_installed_versions())


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple:
    """Package versions, read once per process (importlib.metadata scans sys.path: milliseconds per call)."""
    out = {}
    for name in ("torch", "torchvision", "captum", "zennit", "xaikit"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return tuple(out.items())


def _check_params(info: MethodInfo, params: dict) -> dict:
    sig = inspect.signature(info.fn)
    accepted = [p for p in sig.parameters if p != "ctx"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ExplanationError(
            f"method {info.name!r} has no parameter(s) {unknown}; it accepts {accepted or 'no parameters'}."
        )
    return {**info.defaults, **params}


def _unpack_inputs(inputs, labels, image_ids):
    if isinstance(inputs, Sequence) and inputs and all(isinstance(s, Mapping) for s in inputs):
        inputs = {"image": torch.stack([torch.as_tensor(s["image"]) for s in inputs]),
                  "label": torch.tensor([int(s["label"]) for s in inputs]) if all("label" in s for s in inputs)
                  else None,
                  "id": [str(s["id"]) for s in inputs] if all("id" in s for s in inputs) else None}
    if isinstance(inputs, Mapping):
        if "image" not in inputs:
            raise ExplanationError("a sample-dict batch must have an 'image' entry (float tensor N x C x H x W).")
        labels = inputs.get("label") if labels is None else labels
        image_ids = inputs.get("id") if image_ids is None else image_ids
        inputs = inputs["image"]
    if not isinstance(inputs, torch.Tensor):
        raise ExplanationError(
            f"inputs must be a float tensor N x C x H x W or a batch of sample dicts; got {type(inputs).__name__}."
        )
    n = len(inputs) if inputs.ndim else 0
    if labels is not None:
        try:
            labels = torch.as_tensor(labels).long().reshape(-1)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ExplanationError(f"labels must be class indices (ints), one per input; got {labels!r:.80} "
                                   f"({exc}).") from exc
        if len(labels) != n:
            raise ExplanationError(f"labels has {len(labels)} entries but there are {n} inputs.")
    image_ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
    if len(image_ids) != n:
        raise ExplanationError(f"image_ids has {len(image_ids)} entries but there are {n} inputs.")
    return inputs, labels, image_ids


def _check_run_args(seed: Any, memory_budget: Any) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ExplanationError(f"seed={seed!r} must be an int (it seeds the random methods' per-image streams).")
    if memory_budget is not None and (not isinstance(memory_budget, int) or isinstance(memory_budget, bool)):
        raise ExplanationError(f"memory_budget={memory_budget!r} must be a number of bytes (int), e.g. 2 * 2**30, "
                               "or None for the default.")


def _check_tensor(x: torch.Tensor, info: MethodInfo) -> None:
    ndims = (4, 5) if info.supports_3d else (4,)
    if x.ndim not in ndims:
        shape = "N x C x H x W" + (" or N x C x D x H x W" if info.supports_3d else "")
        volume_hint = "" if info.supports_3d or x.ndim != 5 else (
            f" {info.name!r} does not run on volumes; 3D methods: {', '.join(_methods_3d())}.")
        raise ExplanationError(
            f"inputs must have shape {shape} for {info.name!r}; got shape {tuple(x.shape)}.{volume_hint} "
            "Add the batch axis with x[None] or the channel axis with x[:, None]."
        )
    if not x.dtype.is_floating_point:
        raise ExplanationError(f"inputs must be a floating-point tensor; got dtype {x.dtype}. Use x.float().")
    if x.shape[0] == 0:
        raise ExplanationError("inputs is empty (batch size 0).")
    if not bool(torch.isfinite(x).all()):
        raise ExplanationError("inputs contain NaN or inf values; clean the images before explaining them.")


def _methods_3d() -> list[str]:
    return sorted(name for name, m in METHODS.items() if m.supports_3d)


def _check_dims(model: nn.Module, x: torch.Tensor) -> None:
    """A 2-D model (Conv2d only) given volumes, or a 3-D model (Conv3d) given images: say so before running."""
    kinds = {type(m) for m in model.modules()}
    has3d, has2d = any(issubclass(k, nn.Conv3d) for k in kinds), any(issubclass(k, nn.Conv2d) for k in kinds)
    if x.ndim == 5 and has2d and not has3d:
        raise ModelError(
            f"{type(model).__name__} is a 2-D model (Conv2d layers) but the inputs are a volume batch "
            f"{tuple(x.shape)} (N x C x D x H x W). Explain slices (x[:, :, k]) with it, or use a 3D model "
            "(xaikit.models.build_model('small_cnn3d' or 'r3d_18')).")
    if x.ndim == 4 and has3d and not has2d:
        raise ModelError(
            f"{type(model).__name__} is a 3-D model (Conv3d layers) but the inputs are images {tuple(x.shape)}; "
            "give it volumes N x C x D x H x W (e.g. from xaikit.data.VolumePreprocess).")


def _check_model(model: nn.Module, x: torch.Tensor, logits: bool = True) -> None:
    """The model can take ``x`` and returns logits ``N x K`` (any tensor with ``logits=False``: segmentation and
    wrapped detection outputs, checked by their targets): dtype, channels, dimensions, then one probe forward."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"model must be a torch.nn.Module returning logits N x K; got {type(model).__name__}.")
    weight = next((p for p in model.parameters() if p.dtype.is_floating_point), None)
    if weight is not None and weight.dtype != x.dtype:
        raise ExplanationError(f"inputs are {x.dtype} but the model's weights are {weight.dtype}; convert one to "
                               f"the other, e.g. x.to({weight.dtype}).")
    _check_dims(model, x)
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if conv is not None and conv.in_channels != x.shape[1]:
        raise ExplanationError(f"inputs have {x.shape[1]} channel(s) (shape {tuple(x.shape)}) but the model's first "
                               f"convolution takes {conv.in_channels}; use the Preprocess the model was trained "
                               "with (channel handling), e.g. x.mean(1, keepdim=True) or x.expand(-1, 3, ...).")
    _once(model, ("output", tuple(x.shape[1:]), x.dtype, str(x.device), logits),
          lambda: _check_output(model, x, logits))


_PROBED: "weakref.WeakKeyDictionary[nn.Module, dict]" = register_cache(weakref.WeakKeyDictionary())


def _once(model: nn.Module, key: tuple, fn: Callable[[], Any]) -> Any:
    """``fn()`` once per model state (weights, buffers, hooks) and ``key``; its result is cached, errors are not.

    The probe forwards of the checks (one input each) cost 1/N of a forward per call, 4-8 % of a gradient on a
    batch of 8; a model whose state did not change answers them the same way.
    """
    full = (state_fingerprint(model), hook_count(model), key)
    try:
        cache = _PROBED.setdefault(model, {})
    except TypeError:  # not weak-referenceable: check every time
        return fn()
    if full not in cache:
        if len(cache) > 32:
            cache.clear()
        cache[full] = fn()
    return cache[full]


def _check_output(model: nn.Module, x: torch.Tensor, logits: bool) -> None:
    try:
        with guarded(model), torch.no_grad():
            out = model(x[:1])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ModelError(f"{type(model).__name__} cannot run on inputs of shape {tuple(x.shape)} and dtype {x.dtype}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}. Check the input shape, channels and "
                         "size against what the model was trained on.") from exc
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{type(model).__name__} returns a {type(out).__name__}, not a logits tensor N x K; wrap it "
                         "so that forward returns the logits only (e.g. a module whose forward is "
                         "`return self.net(x)[0]` or `['logits']`); explain a torchvision detector (a list of "
                         "dicts) with target=targets.detection(...) (from xaikit.saliency import targets).")
    if logits and out.ndim > 2 and out.shape[0] == 1:
        raise ExplanationError(
            f"{type(model).__name__} returns outputs of {out.ndim} dimensions, not logits N x K; explain a "
            "segmentation model with target=targets.segmentation(class_index, mask=...) and a detector with "
            "target=targets.detection(...) (from xaikit.saliency import targets).")
    if logits and (out.ndim != 2 or out.shape[0] != 1):
        raise ModelError(f"{type(model).__name__} returns shape {tuple(out.shape)} for one input; saliency needs "
                         "logits N x K (one row per input, one column per class). Do not squeeze the batch axis; "
                         "for a single-logit binary model return N x 1.")


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists nearby names (never ``eval``)."""
    if not isinstance(name, str):
        raise ModelError(f"layer must be a dotted module name (str), e.g. 'layer4'; got {type(name).__name__}.")
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        head = name.split(".")[0]
        near = [n for n in names if n.startswith(head)][:8] or names[-8:]
        raise ModelError(f"layer {name!r} does not exist in {type(model).__name__}; names include {near}.") from None


def _layer_name(model: nn.Module, info: MethodInfo, layer: str | None, x: torch.Tensor) -> str | None:
    if not info.needs_layer:
        if layer is not None:
            raise ExplanationError(f"method {info.name!r} does not use a layer; drop layer={layer!r}.")
        return None
    key = ("layer", layer, tuple(x.shape[1:]), x.dtype, str(x.device))
    if layer is not None:
        module = resolve_layer(model, layer)
        return _once(model, key, lambda: _check_layer_output(model, module, layer, x) or layer)
    if hasattr(model, "cam_layer"):  # wrappers (detection) name the backbone layer that fed their outputs
        return model.cam_layer(x[:1])
    return _once(model, key, lambda: cam_layer(model, x[:1]))


def _check_layer_output(model: nn.Module, module: nn.Module, name: str, x: torch.Tensor) -> None:
    """A layer method needs a layer whose output keeps the input's spatial axes (N x C x H x W)."""
    seen: list = []
    handle = module.register_forward_hook(_shape_recorder(name, seen))
    try:
        with guarded(model), torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    if not seen:
        raise ModelError(f"layer {name!r} is not used by {type(model).__name__}'s forward; pick a layer it runs.")
    shape = seen[0][1]
    if len(shape) != x.ndim:
        raise ModelError(f"layer {name!r} ({type(module).__name__}) outputs shape {tuple(shape)}, without the spatial "
                         f"axes of the inputs {tuple(x.shape)}; layer methods need a convolutional layer, e.g. "
                         f"{cam_layer(model, x[:1])!r} (the default when layer is not given).")




def _shape_recorder(name: str, out: list):
    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            out.append((name, output.shape))
    return hook
