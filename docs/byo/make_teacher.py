# Trains a small CNN on Fashion-MNIST with PyTorch, exports it to ONNX (opset 13), and writes
# some of the images as a folder of PNGs and as a CSV, as a user's own data would be.
import gzip, os, struct, zlib
import numpy as np
import torch
from torch import nn

D = "/usr/share/datasets/fashion-mnist"
def idx(name):
    with gzip.open(os.path.join(D, name)) as f:
        b = f.read()
    if struct.unpack(">I", b[:4])[0] == 0x803:
        n, h, w = struct.unpack(">III", b[4:16])
        return np.frombuffer(b, np.uint8, offset=16).reshape(n, h, w)
    return np.frombuffer(b, np.uint8, offset=8)

x, y = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
xt = (torch.tensor(x[:20000], dtype=torch.float32) / 255 - 0.286) / 0.353
yt = torch.tensor(y[:20000], dtype=torch.long)
opt = torch.optim.Adam(net.parameters(), 2e-3)
for epoch in range(2):
    for i in range(0, len(xt), 64):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(xt[i:i + 64, None]), yt[i:i + 64])
        loss.backward()
        opt.step()
net.eval()
torch.onnx.export(net, torch.zeros(1, 1, 28, 28), "teacher.onnx", opset_version=13,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})

def png(path, img):  # 8-bit grayscale PNG, no library needed
    raw = b"".join(b"\0" + img[r].tobytes() for r in range(img.shape[0]))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    hdr = struct.pack(">IIBBBBB", img.shape[1], img.shape[0], 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))

names = ["0-top", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt",
         "7-sneaker", "8-bag", "9-boot"]
for split, lo, hi in (("train", 20000, 26000), ("test", 26000, 27000)):
    for n in names:
        os.makedirs(f"images/{split}/{n}", exist_ok=True)
    for i in range(lo, hi):
        png(f"images/{split}/{names[y[i]]}/{i:05d}.png", x[i])
with open("records.csv", "w") as f:
    f.write(",".join(f"p{k}" for k in range(784)) + ",garment\n")
    for i in range(27000, 28000):
        f.write(",".join(str(v) for v in x[i].reshape(-1)) + f",{names[y[i]]}\n")
print("wrote teacher.onnx, images/train (6000), images/test (1000), records.csv (1000 rows)")
