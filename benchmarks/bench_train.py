"""Throughput of ``xaikit.train.fit`` against a bare PyTorch loop on the same data and model, in one run.

Both loops train the same architecture from the same initial weights on the same in-memory dataset of sample
dicts, with the same DataLoader settings, optimizer and batch size; the bare loop has no validation, no history,
no progress bar. fit's validation pass is part of what a user pays, so it is timed too, but the ratio compares
training throughput only: fit's per-epoch ``train_seconds`` (the training pass) against the bare loop's time
per epoch. Goal: ratio >= 0.95. Epochs of the two loops alternate and medians are reported.

Usage::

    python benchmarks/bench_train.py               # CPU, small_cnn, 128 px
    python benchmarks/bench_train.py --device cuda --arch resnet18 --size 224 --n 2048
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from xaikit.models import build_model
from xaikit.train import fit
from xaikit.train._data import collate_xy


class Synthetic(Dataset):
    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        self.x = torch.randn(n, 1, size, size, generator=g)
        self.x[self.labels == 1, :, size // 4: size // 2, size // 4: size // 2] += 1.0
        self.classes = ["a", "b"]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": int(self.labels[i]), "id": str(i), "patient_id": str(i),
                "masks": {}, "meta": {}}


def bare_epoch(model, loader, opt, device, amp) -> float:
    criterion = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.train()
    sync(device)
    tic = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = criterion(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sync(device)
    return time.perf_counter() - tic


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6, help="measured epochs of each loop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    train, val = Synthetic(args.n, args.size, 0), Synthetic(max(64, args.n // 8), args.size, 1)
    torch.manual_seed(0)
    init = build_model(args.arch, num_classes=2).state_dict()

    def fresh():
        model = build_model(args.arch, num_classes=2)
        model.load_state_dict(init)
        return model.to(device)

    bare_model, fit_model = fresh(), fresh()
    opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate_xy,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    bare, ours, whole = [], [], []
    for i in range(args.epochs + 1):  # interleaved epoch by epoch, so load from other processes hits both
        if i % 2:  # alternate which loop goes first
            t_bare = bare_epoch(bare_model, loader, opt, device, amp)
        result = fit(fit_model, train, val, epochs=1, batch_size=args.batch_size, scheduler=None, lr=1e-3,
                     device=device, progress=False, monitor="val_loss", seed=i)
        if not i % 2:
            t_bare = bare_epoch(bare_model, loader, opt, device, amp)
        if i:  # the first epoch of each warms up (allocator, cuDNN autotune)
            bare.append(t_bare)
            ours.append(float(result.history_wide()["train_seconds"].iloc[0]))
            whole.append(result.seconds)
    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    ips = lambda s: args.n / s  # noqa: E731
    print(f"device={device} arch={args.arch} size={args.size} n={args.n} batch={args.batch_size} amp={amp} "
          f"threads={torch.get_num_threads()}")
    print(f"bare loop : {bare_s:.3f} s/epoch  {ips(bare_s):8.1f} img/s")
    print(f"fit()     : {ours_s:.3f} s/epoch  {ips(ours_s):8.1f} img/s  (training pass; whole epoch with "
          f"validation and set-up {statistics.median(whole):.3f} s)")
    pairs = statistics.median(b / o for b, o in zip(bare, ours))
    print(f"ratio fit/bare throughput = {bare_s / ours_s:.3f}  (median of per-epoch ratios {pairs:.3f}; "
          "goal >= 0.95)")


if __name__ == "__main__":
    main()
