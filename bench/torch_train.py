#!/usr/bin/python3
"""Side-by-side reference: trains the same architecture with PyTorch on Fashion-MNIST with the
same batch size, optimizer and learning rate as `condenser train`, and prints samples/s,
test accuracy and peak RSS as one JSON line. Used by scripts/bench; never by Condenser itself.

usage: torch_train.py --arch mlp|cnn|mbnet --epochs N --batch B --threads T [--lr X] [--subset N] [--test N]

mbnet is the MobileNetV2-style graph student of docs/benchmarks.md, the Condenser spec
  conv2d(16,3,pad=1) batchnorm relu6 mbconv(1,16,1) mbconv(4,24,2) mbconv(4,24,1)
  mbconv(4,40,2) mbconv(4,40,1) conv2d(128,1) batchnorm relu6 gap dense(10)
(40,218 parameters; every convolution has a bias, as Condenser's do).
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

class MBConv(nn.Module):
    """Condenser's mbconv(E,OUT,STRIDE) (docs/layers.md): MobileNetV2's inverted residual."""
    def __init__(self, c, e, out, stride):
        super().__init__()
        hid, layers = c * e, []
        if e != 1:
            layers += [nn.Conv2d(c, hid, 1), nn.BatchNorm2d(hid), nn.ReLU6()]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid), nn.BatchNorm2d(hid), nn.ReLU6(),
                   nn.Conv2d(hid, out, 1), nn.BatchNorm2d(out)]
        self.f = nn.Sequential(*layers)
        self.res = stride == 1 and c == out

    def forward(self, x):
        y = self.f(x)
        return x + y if self.res else y

def model(arch):
    if arch == "mbnet":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                             MBConv(16, 1, 16, 1), MBConv(16, 4, 24, 2), MBConv(24, 4, 24, 1),
                             MBConv(24, 4, 40, 2), MBConv(40, 4, 40, 1), nn.Conv2d(40, 128, 1),
                             nn.BatchNorm2d(128), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(128, 10))
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
    ap.add_argument("--subset", type=int, default=0, help="train on the first N samples")
    ap.add_argument("--test", type=int, default=0, help="test on the first N samples")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load("train")
    xte, yte = load("test")
    if a.subset:
        xtr, ytr = xtr[:a.subset], ytr[:a.subset]
    if a.test:
        xte, yte = xte[:a.test], yte[:a.test]
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
    with torch.no_grad():  # in chunks: a whole test set through a conv net at once takes GBs
        acc = sum((m(xte[i:i + 500]).argmax(1) == yte[i:i + 500]).sum().item()
                  for i in range(0, len(xte), 500)) / len(xte)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "arch": a.arch,
                      "threads": a.threads, "batch": a.batch, "epochs": a.epochs,
                      "samples_per_s": len(xtr) * a.epochs / el, "seconds": el,
                      "test_accuracy": acc,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

if __name__ == "__main__":
    main()
