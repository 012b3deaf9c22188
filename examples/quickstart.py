"""Quickstart: build a two-layer conv net, check one value by hand, train LeNet briefly, explain it.

Run:  python examples/quickstart.py        (NumPy only; about 15 s on 2 cores)
"""
import numpy as np

import featuremaps as fm
from featuremaps import functional as F

rng = np.random.default_rng(0)

# 1. The textbook computation: a 100×100 grey image, 32 kernels of 3×3, then 64 kernels of 3×3×32.
image = rng.random((1, 100, 100, 1), dtype=np.float32)            # NHWC
w1 = rng.standard_normal((3, 3, 1, 32), dtype=np.float32)         # HWIO: [kh, kw, in, out]
w2 = rng.standard_normal((3, 3, 32, 64), dtype=np.float32)
maps1 = F.relu(F.conv2d(image, w1))
maps2 = F.conv2d(maps1, w2)
print("layer 1:", maps1.shape[1:], " layer 2:", maps2.shape[1:], "(64 maps, not 32 × 64)")

# Output map n of layer 2 at (i, j) is one 3-D dot product over ALL 32 input maps: w2[:, :, :, n].
n, i, j = 5, 40, 17
by_hand = np.sum(maps1[0, i:i + 3, j:j + 3, :] * w2[:, :, :, n])
print(f"maps2[{i}, {j}, {n}] = {maps2[0, i, j, n]:.5f}; explicit triple sum = {by_hand:.5f}")
assert abs(by_hand - maps2[0, i, j, n]) < 1e-3

# 2. Autograd: gradients flow through Tensors.
x = fm.Tensor(image)
w = fm.Tensor(w1, requires_grad=True)
loss = F.relu(F.conv2d(x, w)).mean()
loss.backward()
print("dL/dw1 has shape", w.grad.shape)

# 3. A model from the zoo, its summary, one quick epoch on the embedded MNIST sample.
model = fm.models.get("lenet", rng=rng)
print(fm.summary(model))
train, val = fm.data.load("sample", "train"), fm.data.load("sample", "val")
opt = fm.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
result = fm.train.fit(model, train, val, epochs=1, batch_size=64, optimizer=opt, seed=0)
print("after 1 epoch:", result.final)

# 4. Explain one value of the trained model: output map 3 of conv2 at (2, 5).
x0 = fm.train.normalize_images(val.images[:1], fm.train.normalization_for(val))
print(fm.inspect.explain(model, x0, "conv2", 3, (2, 5)).to_text())
