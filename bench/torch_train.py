#!/usr/bin/python3
"""Side-by-side reference: trains the same architecture with PyTorch on Fashion-MNIST with the
same batch size, optimizer and learning rate as `condenser train`, and prints samples/s,
test accuracy and peak RSS as one JSON line. Used by scripts/bench; never by Condenser itself.

usage: torch_train.py --arch mlp|cnn --epochs N --batch B --threads T [--lr X]
"""
import argparse, gzip, json, resource, time
import numpy as np
import torch
import torch.nn as nn

def load(split, d="/usr/share/datasets/fashion-mnist"):
    pre = "train" if split == "train" else "t10k"
    with gzip.open(f"{d}/{pre}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32)
    with gzip.open(f"{d}/{pre}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y

def model(arch):
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load("train")
    xte, yte = load("test")
    mean, std = xtr.mean(), xtr.std()
    xtr = torch.from_numpy((xtr - mean) / std)
    xte = torch.from_numpy((xte - mean) / std)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    m = model(a.arch)
    opt = torch.optim.Adam(m.parameters(), lr=a.lr)
    steps = a.epochs * ((len(xtr) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    lossf = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for ep in range(a.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad()
            loss = lossf(m(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
    el = time.perf_counter() - t0
    m.eval()
    with torch.no_grad():
        acc = (m(xte).argmax(1) == yte).float().mean().item()
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "arch": a.arch,
                      "threads": a.threads, "batch": a.batch, "epochs": a.epochs,
                      "samples_per_s": len(xtr) * a.epochs / el, "seconds": el,
                      "test_accuracy": acc,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

if __name__ == "__main__":
    main()
