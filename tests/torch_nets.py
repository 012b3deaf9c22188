"""Small torch modules with random weights that stand for the classic CNN families, and `export`,
which writes one to ONNX with either torch exporter. Shared by the ONNX tests (run, load, export).

Import this module only after `pytest.importorskip("torch")`: it imports torch at the top."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

nn = torch.nn


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), _bn(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return self.fc(torch.flatten(x, 1))


class MobileNetV2Block(nn.Module):
    def __init__(self, c=8, t=4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c * t, 1, bias=False), _bn(c * t), nn.ReLU6(),
            nn.Conv2d(c * t, c * t, 3, 1, 1, groups=c * t, bias=False), _bn(c * t), nn.ReLU6(),
            nn.Conv2d(c * t, c, 1, bias=False), _bn(c))
        self.head = nn.Sequential(nn.Conv2d(c, 12, 3, 2, 1, groups=4), nn.Hardswish(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5), nn.Softmax(dim=1))

    def forward(self, x):
        return self.head(x + self.body(x))


class DenseBlock(nn.Module):
    def __init__(self, c=6, growth=4, layers=3):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(_bn(c + i * growth), nn.ReLU(), nn.Conv2d(c + i * growth, growth, 3, padding=1, bias=False))
            for i in range(layers))
        self.trans = nn.Sequential(_bn(c + layers * growth), nn.Conv2d(c + layers * growth, 8, 1), nn.AvgPool2d(2))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.trans(x)


class ShuffleUnit(nn.Module):
    def __init__(self, c=12, groups=3):
        super().__init__()
        self.g = groups
        self.a = nn.Sequential(nn.Conv2d(c, c, 1, groups=groups, bias=False), _bn(c), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), _bn(c))
        self.b = nn.Sequential(nn.Conv2d(c, c, 1, groups=groups, bias=False), _bn(c))

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, self.g, c // self.g, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return torch.relu(x + self.b(self.dw(y)))


class Fire(nn.Module):
    def __init__(self, cin=8, s=4, e=6):
        super().__init__()
        self.sq = nn.Conv2d(cin, s, 1)
        self.e1, self.e3 = nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)

    def forward(self, x):
        s = torch.relu(self.sq(x))
        return self.pool(torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1))


class Inception(nn.Module):
    def __init__(self, cin=6):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(cin, 3, 1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(cin, 3, 1))
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)

    def forward(self, x):
        y = torch.cat([torch.relu(b(x)) for b in (self.b1, self.b3, self.b5, self.bp)], 1)
        return self.avg(self.pool(y))  # (torch exports LRN as If/Pow ops, not LRN)


class VGGLike(nn.Module):
    """Two stages of (conv 3×3 – ReLU) ×2 – max-pool 2×2, then a classifier with dropout."""

    def __init__(self):
        super().__init__()
        def stage(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(),
                    nn.MaxPool2d(2)]
        self.features = nn.Sequential(*stage(3, 8), *stage(8, 16))
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


# name → (module class, NCHW input shape)
TORCH_NETS = {"lenet": (LeNet, (2, 1, 28, 28)), "resnet_like": (ResNetLike, (2, 3, 32, 32)),
              "vgg_like": (VGGLike, (2, 3, 16, 16)),
              "mobilenetv2_block": (MobileNetV2Block, (2, 8, 9, 9)), "densenet_block": (DenseBlock, (2, 6, 8, 8)),
              "shufflenet_unit": (ShuffleUnit, (2, 12, 7, 7)), "squeezenet_fire": (Fire, (2, 8, 11, 11)),
              "inception_block": (Inception, (2, 6, 12, 13))}


def build(name: str, seed: int = 0, dtype=torch.float32) -> tuple[nn.Module, tuple[int, ...]]:
    """The net `name` of TORCH_NETS with seeded random weights, in eval mode, and its input shape."""
    cls, shape = TORCH_NETS[name]
    torch.manual_seed(seed)
    return cls().to(dtype).eval(), shape


def export(module: nn.Module, path, x, *, dynamo: bool, opset: int | None = None,
           input_names=("x",), output_names=("y",)) -> Path:
    """Write `module`, traced at the example input `x` (an array or a tensor), to the ONNX file `path`.

    dynamo=False is the legacy TorchScript exporter (one self-contained file; BatchNorm folded into
    the conv in eval mode). dynamo=True is torch's default exporter: it writes local functions and
    puts the weights in an external-data file next to `path` (`<name>.data`). opset defaults to 17
    for the legacy exporter and 18 for dynamo (its lowest; asking it for less runs a version
    converter that fails on some graphs). Returns `path`."""
    path = Path(path)
    opset = opset or (18 if dynamo else 17)
    xs = x if isinstance(x, tuple) else (x,)
    xs = tuple(torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in xs)
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript")]
    levels = [q.level for q in quiet]
    with warnings.catch_warnings():  # deprecation notices and the dynamo exporter's chatter
        warnings.simplefilter("ignore")
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            torch.onnx.export(module, xs, str(path), dynamo=dynamo, opset_version=opset,
                              input_names=list(input_names), output_names=list(output_names),
                              **({"external_data": True, "verbose": False} if dynamo else {}))
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    return path
