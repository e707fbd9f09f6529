"""Saliency engine benchmark: time per method as a multiple of the physical limit, overhead vs direct calls.

The physical limit is one forward + one backward to the input with frozen weights (same batch, same run).

Default: the issue-16 table (resnet18, 224 px, batch 8). Every row times three things in rounds
(limit, library called directly, xaikit, limit, direct, xaikit, ...) and reports the median over rounds of each
round's ratio to the limit of the same round (integrated gradients: per step), and of xaikit / direct. Like with
like: both sides get the same fixed target tensor (the predicted classes, computed once before timing), so neither
makes a forward the other does not.
Goals: gradient <= 1.05x, Grad-CAM (layer4) <= 0.55x, IG <= 1.05x per step, LRP eps+flat <= 2.0x, LRP eps
alpha2beta1 <= 2.5x, xaikit <= 5 % over the direct call.

``--all``: every method, ratio per pass and overhead vs direct captum/zennit where one exists, peak memory
(RSS sampled every 2 ms; CUDA: max allocated).
Also: DenseNet-121 at 224 px with integrated gradients at 200 steps under the default 2 GiB budget
(``--densenet``), and the SaliencyExplorer's Python time per slider move (``--widget``).
``--new`` (also part of the default run, short: batch 2, 64 px, 2 rounds): the methods of issue 24 (layer
methods, pytorch-grad-cam CAMs, FullGrad, RISE, Shapley sampling, Expected Gradients, contrastive EB, NoiseTunnel)
at their bench settings, each as a ratio to the limit measured in the same rounds, in total and per pass.
``--bound``: the explain phase of a study against its compute bound, per method: the ``sumer2023`` preset on the
shipped phantom model and test images (``--bound-size`` px, ``--bound-batch`` images), each method timed in rounds
with one bare forward + input backward (A, B, A, B, ...) and reported as its time over ``passes`` x that pass
(``METHODS[m].passes``: what :func:`xaikit.evaluation.plan` counts) and over one pass. Why a method sits where it
does (the ``why`` column):

* every method called through :func:`explain` alone first checks the inputs against the model's training domain
  (one forward over the batch; the shipped models carry a domain): about half a pass (cProfile: 0.15 s of a
  0.47 s gradient call, phantom CNN, 128 px, batch 8), much of what a one-pass method shows here (gradient
  about 1.9x on a loaded machine). ``explain_many`` checks once per call, not per method.
* gradient, guided backprop, deconvnet: one pass (+ captum's hooks on every ReLU for the modified backprops);
  Grad-CAM is counted as half a pass (forward + a backward to the layer only).
* integrated gradients, SmoothGrad: ``n`` passes over ``n`` copies of the batch, chunked by the memory plan's
  speed chunk (:mod:`xaikit.saliency.memory`): about 1.1x the bound. With the memory bound as chunk (the phantom
  CNN at 128 px fits 256 samples in 2 GiB) they ran 1.7-1.8x (one interleaved run, CPU time, loaded machine):
  activations past the caches, big tensors page-faulted in on every pass.
* LRP: counted as 2 passes; epsilon/z+ rules cost a forward, one modified forward and one input gradient per
  layer (about 1.9x a pass, 0.95x the bound); alpha-beta two modified forwards and two input gradients (stacked
  into one of each: :mod:`xaikit.saliency.direct_rules`), 2.4-2.8x a pass. Excitation backprop (z+ with the
  ReLU gradients kept) now also runs the direct rules: 3.13x -> 1.85x a pass (CPU time, one interleaved run).
* DeepLIFT (captum): a forward of inputs and baselines together, and captum's hooks on every activation.
* occlusion: forward-only passes, counted as 1/3 each; the ratio shows what that assumption misses (a forward
  of a small CNN is more than a third of its forward + backward). Its perturbed copies also go by the speed chunk:
  2.48x -> 1.52x the bound (CPU time, one thread, one interleaved run, loaded machine); forwards of 3x the chunk
  (no activations are saved, so more would fit) were slower, 2.29x.

``--chunks``: what :data:`xaikit.saliency.memory.CPU_TENSOR_BYTES` was measured from: CPU time per sample of a
forward + input backward against the samples per pass (``--chunk-model`` resnet18 or phantom, ``--size`` px), with
the largest saved activation of a pass and the chunk :func:`xaikit.saliency.memory.plan` picks. Use
``--threads 1`` on a shared machine (CPU time of one thread is what the load disturbs least).

``--volumes``: every 3D-capable method on a 3D network (``r3d_18`` or ``small_cnn3d``, ``--volume-size`` voxels per
side), each timed interleaved with the 3D physical limit (ratio per pass) and its peak memory.

Usage::

    python benchmarks/bench_saliency.py                    # issue-16 table, resnet18, 224 px, batch 8
    python benchmarks/bench_saliency.py --new              # only the issue-24 methods, short
    python benchmarks/bench_saliency.py --all --quick      # subset of methods, batch 2
    python benchmarks/bench_saliency.py --all              # all methods, resnet18, 224 px, batch 8
    python benchmarks/bench_saliency.py --densenet --widget
    python benchmarks/bench_saliency.py --no-methods --bound          # explain phase vs its bound, per method
    python benchmarks/bench_saliency.py --no-methods --chunks --chunk-model phantom --size 128 --threads 1
    python benchmarks/bench_saliency.py --no-methods --volumes --volume-arch small_cnn3d --volume-size 32
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings

import torch
import torch.nn.functional as F
import torchvision

from xaikit.saliency import METHODS, explain

QUICK = ["gradient", "integrated_gradients", "gradcam", "lrp_epsilon_plus", "smoothgrad"]
SETTINGS = {"integrated_gradients": {"n_steps": 20}, "smoothgrad": {"n_samples": 10},
            "smoothgrad_sq": {"n_samples": 10}, "vargrad": {"n_samples": 10}, "gradient_shap": {"n_samples": 10},
            "lime": {"n_samples": 50}, "kernel_shap": {"n_samples": 50}}


# The methods added in issue 24 with bench settings (sampling counts cut so the short run stays short); label ->
# (method, explain() keywords). The last row is NoiseTunnel over Grad-CAM.
NEW = {
    "layer_activation": ("layer_activation", {}),
    "layer_conductance": ("layer_conductance", {"n_steps": 8}),
    "internal_influence": ("internal_influence", {"n_steps": 8}),
    "layer_gradient_x_activation": ("layer_gradient_x_activation", {}),
    "layer_integrated_gradients": ("layer_integrated_gradients", {"n_steps": 8}),
    "layer_gradient_shap": ("layer_gradient_shap", {"n_samples": 8}),
    "xgradcam": ("xgradcam", {}),
    "gradcam_elementwise": ("gradcam_elementwise", {}),
    "eigencam": ("eigencam", {}),
    "eigengradcam": ("eigengradcam", {}),
    "ablationcam (layer4, 512 ch)": ("ablationcam", {}),
    "fullgrad": ("fullgrad", {}),
    "gradient_shap": ("gradient_shap", {"n_samples": 8}),
    "expected_gradients": ("expected_gradients", {"n_samples": 8}),
    "rise": ("rise", {"n_masks": 64}),
    "shapley_value_sampling": ("shapley_value_sampling", {"n_segments": 16, "n_samples": 2}),
    "linear_approximation": ("linear_approximation", {"n_samples": 32}),
    "contrastive_excitation_backprop": ("contrastive_excitation_backprop", {}),
    "gradcam + noise_tunnel n=8": ("gradcam", {"noise_tunnel": {"type": "smoothgrad", "n": 8, "sigma": 0.1}}),
}


class PeakRSS:
    """Peak resident set size growth while the block runs (sampled from /proc every 2 ms)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitives, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired(fn_a, fn_b, repeats: int) -> tuple[float, float | None]:
    """Median times of two functions run alternately (A, B, A, B, ...): load drift on a shared machine hits both."""
    fn_a()
    if fn_b:
        fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn_a()
        ta.append(time.perf_counter() - start)
        if fn_b:
            start = time.perf_counter()
            fn_b()
            tb.append(time.perf_counter() - start)
    return statistics.median(ta), (statistics.median(tb) if fn_b else None)


def physical_limit(model, x, target=None):
    """Forward + backward to the input (weights frozen) of the target scores (default: the arg-max, same pass)."""
    def run():
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        idx = out.argmax(1, keepdim=True) if target is None else target.view(-1, 1)
        out.gather(1, idx).sum().backward()

    return run


def direct_calls(model, x, target, n_steps: int = 20):
    """The same computations written straight against captum / zennit, given the same fixed ``target`` tensor."""
    from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlus, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    def gradient():
        Saliency(model).attribute(x, target=target, abs=False)

    def ig():
        IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=n_steps)

    def gradcam():
        cam = LayerGradCam(model, model.layer4).attribute(x, target=target)
        F.interpolate(cam, size=x.shape[2:], mode="bilinear")

    def zennit_lrp(composite_cls):
        def run():
            with Gradient(model, composite_cls(canonizers=[ResNetCanonizer()])) as attributor:
                attributor(x, attr_output=lambda y: F.one_hot(target, y.shape[1]) * y)
        return run

    def smoothgrad():
        NoiseTunnel(Saliency(model)).attribute(x.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=10,
                                               stdevs=0.1, target=target, abs=False)

    return {"gradient": gradient, "integrated_gradients": ig, "gradcam": gradcam,
            "lrp_epsilon_plus": zennit_lrp(EpsilonPlus), "lrp_epsilon_plus_flat": zennit_lrp(EpsilonPlusFlat),
            "lrp_epsilon_alpha2_beta1": zennit_lrp(EpsilonAlpha2Beta1), "smoothgrad": smoothgrad}


# (row label, xaikit method, explain() keywords besides target, goal ratio to the limit per pass)
TABLE = [
    ("gradient", "gradient", {}, 1.05),
    ("Grad-CAM (layer4)", "gradcam", {"layer": "layer4"}, 0.55),
    ("integrated gradients, per step", "integrated_gradients", {}, 1.05),
    ("LRP eps+flat (ResNet canonizer)", "lrp_epsilon_plus_flat", {}, 2.0),
    ("LRP eps alpha2beta1", "lrp_epsilon_alpha2_beta1", {}, 2.5),
]


def rounds(fns: list, repeats: int) -> list[list[float]]:
    """Times of each function, run in rounds (f0, f1, f2, f0, f1, f2, ...) after one warm-up round."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b: each round's pair ran back to back, so slow drift of the load cancels."""
    return statistics.median(x / y for x, y in zip(a, b))


def _resnet_batch(args):
    """resnet18 with frozen weights, a random batch, and its fixed predicted target (computed once, before timing,
    so that neither side adds a forward the other does not make)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def bench_table(args) -> None:
    """The issue-16 table: library direct vs xaikit, as ratios to the limit measured in the same rounds."""
    model, x, target = _resnet_batch(args)
    direct = direct_calls(model, x, target, args.ig_steps)
    limit = physical_limit(model, x, target)
    print(f"resnet18, batch {args.batch}, {args.size} px, {torch.get_num_threads()} threads, {args.repeats} rounds "
          f"(limit, direct, xaikit) per row; medians; limit = forward + input-only backward, weights frozen")
    print(f"| {'method':33s} | {'limit ms':>8s} | {'library direct':>14s} | {'xaikit':>7s} | {'overhead':>8s} | goal |")
    print(f"|{'-' * 35}|{'-' * 10}|{'-' * 16}|{'-' * 9}|{'-' * 10}|------|")
    names = args.methods or [row[1] for row in TABLE]
    for label, name, kw, goal in TABLE:
        if name not in names:
            continue
        params = {"n_steps": args.ig_steps} if name == "integrated_gradients" else {}
        steps = params.get("n_steps", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tl, td, tx = rounds([limit, direct[name], lambda: explain(model, x, name, target, **kw, **params)],
                                args.repeats)
        print(f"| {label:33s} | {statistics.median(tl) * 1e3:8.0f} | {median_ratio(td, tl) / steps:13.2f}x | "
              f"{median_ratio(tx, tl) / steps:6.2f}x | {(median_ratio(tx, td) - 1) * 100:+7.1f}% | {goal:.2f}x |",
              flush=True)


def bench_methods(args) -> None:
    model, x, target = _resnet_batch(args)
    limit = timed(physical_limit(model, x, target), args.repeats)
    print(f"resnet18, batch {args.batch}, {args.size} px, {torch.get_num_threads()} threads: physical limit "
          f"(forward+backward to input) {limit * 1e3:.0f} ms")
    direct = direct_calls(model, x, target, SETTINGS['integrated_gradients']['n_steps'])
    methods = args.methods or (QUICK if args.quick else sorted(METHODS))
    print(f"{'method':32s} {'ms':>9s} {'passes':>7s} {'ratio/pass':>10s} {'direct ms':>10s} {'overhead':>9s} "
          f"{'peak MiB':>9s}")
    for name in methods:
        params = SETTINGS.get(name, {})
        passes = max(METHODS[name].passes({**params, "input_size": args.size}), 1e-9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakRSS() as mem:
                explain(model, x, name, target, **params)
            t, td = paired(lambda: explain(model, x, name, target, **params), direct.get(name), args.repeats)
        ratio = t / limit / (passes if passes >= 1 else 1)
        over = f"{(t / td - 1) * 100:+8.1f}%" if td else "       -"
        print(f"{name:32s} {t * 1e3:9.0f} {passes:7.1f} {ratio:10.2f} {td * 1e3 if td else float('nan'):10.0f} "
              f"{over} {mem.mib:9.0f}", flush=True)


def bench_new(args) -> None:
    """Issue-24 methods: explain() time as a multiple of the physical limit measured in the same rounds."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(args.new_batch, 3, args.new_size, args.new_size)
    with torch.no_grad():
        target = model(x).argmax(1)
    limit = physical_limit(model, x, target)
    print(f"issue-24 methods: resnet18, batch {args.new_batch}, {args.new_size} px, {torch.get_num_threads()} "
          f"threads, {args.new_repeats} rounds (limit, xaikit); medians of per-round ratios")
    print(f"| {'method':33s} | {'limit ms':>8s} | {'xaikit ms':>9s} | {'x limit':>8s} | {'passes':>6s} | "
          f"{'per pass':>8s} |")
    print(f"|{'-' * 35}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 8}|{'-' * 10}|")
    for label, (name, kw) in NEW.items():
        if args.methods and name not in args.methods:
            continue
        params = {k: v for k, v in kw.items() if k != "noise_tunnel"}
        passes = METHODS[name].passes({**params, "input_size": args.new_size}) * kw.get("noise_tunnel", {}).get("n", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tl, tx = rounds([limit, lambda: explain(model, x, name, target, **kw)], args.new_repeats)
        ratio = median_ratio(tx, tl)
        print(f"| {label:33s} | {statistics.median(tl) * 1e3:8.0f} | {statistics.median(tx) * 1e3:9.0f} | "
              f"{ratio:7.2f}x | {passes:6.1f} | {ratio / max(passes, 1):7.2f}x |", flush=True)


WHY = {"gradient": "1 pass", "guided_backprop": "1 pass, captum hooks", "deconvnet": "1 pass, captum hooks",
       "gradcam": "forward + layer backward", "guided_gradcam": "guided backprop + Grad-CAM",
       "smoothgrad": "n noisy passes, speed chunk", "integrated_gradients": "n path passes, speed chunk",
       "excitation_backprop": "z+ (direct), ReLU grads kept", "lrp_epsilon_plus": "z+: 1 modified fwd + grad",
       "lrp_epsilon_plus_flat": "z+, flat first layer", "lrp_epsilon_alpha2_beta1": "2 modified fwd + 2 grads",
       "lrp_epsilon_alpha2_beta1_flat": "alpha-beta, flat first layer",
       "deeplift": "inputs + baselines, captum hooks", "layer_deeplift": "inputs + baselines, layer hooks",
       "occlusion": "forward-only passes counted 1/3"}


def bench_bound(args) -> None:
    """Each ``sumer2023`` method's explain() time over its compute bound (passes x one bare pass, same rounds)."""
    from xaikit.checkpoint import load_checkpoint
    from xaikit.data import ManifestDataset
    from xaikit.saliency import PRESETS
    from xaikit.samples import MODELS, sample_dir

    ckpt = load_checkpoint(sample_dir() / "models" / MODELS["clean"])
    model = ckpt.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    test = ManifestDataset(sample_dir() / "manifest.csv", split="test", preprocess=ckpt.preprocess)
    x = torch.stack([test[i]["image"] for i in range(args.bound_batch)])
    if x.shape[-1] != args.bound_size:
        x = F.interpolate(x, size=(args.bound_size,) * 2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        target = model(x).argmax(1)
    bare = physical_limit(model, x, target)
    print(f"explain vs compute bound: shipped phantom model, batch {len(x)}, {args.bound_size} px, "
          f"{torch.get_num_threads()} threads, {args.bound_repeats} rounds (pass, method); medians of per-round ratios")
    print(f"| {'method':30s} | {'passes':>6s} | {'pass ms':>7s} | {'method ms':>9s} | {'x 1 pass':>8s} | "
          f"{'x bound':>7s} | why |")
    print(f"|{'-' * 32}|{'-' * 8}|{'-' * 9}|{'-' * 11}|{'-' * 10}|{'-' * 9}|-----|")
    for label, spec in PRESETS["sumer2023"].items():
        name = spec.get("method", label)
        if args.methods and name not in args.methods:
            continue
        params = {k: v for k, v in spec.items() if k != "method"}
        passes = METHODS[name].passes({**params, "input_size": args.bound_size})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tl, tx = rounds([bare, lambda: explain(model, x, name, target, **params)], args.bound_repeats)
        ratio = median_ratio(tx, tl)
        print(f"| {label:30s} | {passes:6.1f} | {statistics.median(tl) * 1e3:7.1f} | "
              f"{statistics.median(tx) * 1e3:9.0f} | {ratio:7.2f}x | {ratio / passes:6.2f}x | {WHY.get(name, '')} |",
              flush=True)


def bench_chunks(args) -> None:
    """CPU time per sample of forward + input backward for several samples per pass (rounds over the sizes)."""
    from xaikit.saliency.memory import plan, probe

    torch.manual_seed(0)
    if args.chunk_model == "phantom":
        from xaikit.checkpoint import load_checkpoint
        from xaikit.samples import MODELS, sample_dir

        model, channels = load_checkpoint(sample_dir() / "models" / MODELS["clean"]).model.eval(), 1
    else:
        model, channels = torchvision.models.resnet18(num_classes=2).eval(), 3
    for p in model.parameters():
        p.requires_grad_(False)
    sizes = [int(b) for b in args.chunk_sizes.split(",")]
    x = torch.rand(max(sizes), channels, args.size, args.size)
    largest = probe(model, x[:1])[3]
    fns = [lambda b=b: [physical_limit(model, x[:b])() for _ in range(max(sizes) // b)] for b in sizes]
    times: list[list[float]] = [[] for _ in sizes]
    for fn in fns:
        fn()
    for _ in range(args.repeats):
        for fn, out in zip(fns, times):
            start = time.process_time()
            fn()
            out.append(time.process_time() - start)
    best = min(statistics.median(t) for t in times)
    print(f"{args.chunk_model} {args.size} px, {torch.get_num_threads()} thread(s): largest saved activation "
          f"{largest / 2**20:.2f} MiB a sample; plan's chunk {plan(model, x, None, 'bench').chunk}")
    for b, t in zip(sizes, times):
        print(f"  {b:4d} per pass: {statistics.median(t) / max(sizes) * 1e3:7.2f} ms CPU a sample, "
              f"{statistics.median(t) / best:.2f}x the fastest (largest activation {b * largest / 2**20:6.1f} MiB)")


def bench_densenet(args) -> None:
    torch.manual_seed(0)
    model = torchvision.models.densenet121(num_classes=2).eval()
    x = torch.rand(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PeakRSS() as mem:
            start = time.perf_counter()
            exp = explain(model, x, "integrated_gradients", n_steps=args.densenet_steps)
            took = time.perf_counter() - start
    print(f"densenet121 224 px IG {args.densenet_steps} steps: {took:.1f} s, peak RSS growth {mem.mib:.0f} MiB, "
          f"budget {exp.params['memory_budget'] / 2**20:.0f} MiB, chunk {exp.params['max_batch']} samples, "
          f"per-sample estimate {exp.params['per_sample_bytes'] / 2**20:.0f} MiB")


def bench_widget(args) -> None:
    from xaikit.widgets.saliency import SaliencyExplorer

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    x = torch.rand(8, 3, 224, 224)
    exps = {m: explain(model, x, m) for m in ("gradient", "gradcam", "input_x_gradient")}
    ex = SaliencyExplorer(x, exps)
    for i in range(40):
        ex.image.value = i % 8
        ex.method.value = list(exps)[i % 3]
        ex.alpha.value = 0.3 + 0.01 * i
        ex.threshold.value = float(i % 90)
        ex.sign.value = ("signed", "positive", "absolute")[i % 3]
    ms = sorted(t * 1e3 for t in ex.timings)
    print(f"SaliencyExplorer: {len(ms)} slider moves, median {statistics.median(ms):.1f} ms, "
          f"95th percentile {ms[int(0.95 * len(ms))]:.1f} ms, max {ms[-1]:.1f} ms (Python time per callback)")


def bench_volumes(args) -> None:
    """3D methods on a 3D network: explain() time over the 3D physical limit, measured interleaved (A, B, A, B)."""
    from xaikit.models import build_model

    torch.manual_seed(0)
    model = build_model(args.volume_arch, num_classes=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    n = args.volume_size
    x = torch.rand(args.volume_batch, 1, n, n, n)
    limit_fn = physical_limit(model, x)
    names = args.methods or sorted(m for m, info in METHODS.items() if info.supports_3d)
    print(f"{args.volume_arch}, batch {args.volume_batch}, {n}^3 voxels, {torch.get_num_threads()} threads")
    print(f"{'method':32s} {'ms':>9s} {'limit ms':>9s} {'passes':>7s} {'ratio/pass':>10s} {'peak MiB':>9s}")
    for name in names:
        params = {**SETTINGS.get(name, {}), **({"window": n // 4, "stride": n // 4} if name == "occlusion" else {})}
        passes = max(METHODS[name].passes({**params, "input_size": n, "spatial_dims": 3}), 1e-9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakRSS() as mem:
                explain(model, x, name, **params)
            t, limit = paired(lambda: explain(model, x, name, **params), limit_fn, args.repeats)
        ratio = t / limit / (passes if passes >= 1 else 1)
        print(f"{name:32s} {t * 1e3:9.0f} {limit * 1e3:9.0f} {passes:7.1f} {ratio:10.2f} {mem.mib:9.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="every method (ratio per pass, overhead, memory)")
    ap.add_argument("--quick", action="store_true", help="with --all: 5 methods, batch 2")
    ap.add_argument("--ig-steps", type=int, default=20, help="integrated gradients steps in the table")
    ap.add_argument("--methods", nargs="*")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--densenet", action="store_true", help="DenseNet-121 IG memory check")
    ap.add_argument("--densenet-steps", type=int, default=200)
    ap.add_argument("--widget", action="store_true", help="SaliencyExplorer callback time")
    ap.add_argument("--no-methods", action="store_true")
    ap.add_argument("--new", action="store_true", help="only the issue-24 methods (also in the default run)")
    ap.add_argument("--new-batch", type=int, default=2)
    ap.add_argument("--new-size", type=int, default=64)
    ap.add_argument("--new-repeats", type=int, default=2)
    ap.add_argument("--bound", action="store_true", help="sumer2023 methods vs their compute bound, per method")
    ap.add_argument("--bound-size", type=int, default=128)
    ap.add_argument("--bound-batch", type=int, default=8)
    ap.add_argument("--bound-repeats", type=int, default=3)
    ap.add_argument("--chunks", action="store_true", help="CPU time per sample vs samples per pass")
    ap.add_argument("--chunk-model", default="phantom", choices=["phantom", "resnet18"])
    ap.add_argument("--chunk-sizes", default="1,2,4,8,12,16,24,32,64,128")
    ap.add_argument("--volumes", action="store_true", help="3D methods on a 3D network")
    ap.add_argument("--volume-arch", default="r3d_18", help="small_cnn3d or r3d_18")
    ap.add_argument("--volume-size", type=int, default=32)
    ap.add_argument("--volume-batch", type=int, default=1)
    args = ap.parse_args()
    args.batch = args.batch or (2 if args.quick else 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.new:
        bench_new(args)
        return
    if not args.no_methods:
        (bench_methods if args.all else bench_table)(args)
        if not args.all:
            bench_new(args)
    if args.widget:
        bench_widget(args)
    if args.densenet:
        bench_densenet(args)
    if args.bound:
        bench_bound(args)
    if args.chunks:
        bench_chunks(args)
    if args.volumes:
        bench_volumes(args)


if __name__ == "__main__":
    main()
