"""The model zoo: `get(name, rng=None, **kwargs)` → a `Sequential` with named layers and `input_shape`.

All models output logits (no softmax at the end): train with `functional.cross_entropy`, predict
with `functional.softmax`.
"""
from __future__ import annotations

from typing import Callable

from . import nn, tables
from .nn.module import as_rng

__all__ = ["get", "names", "describe", "lenet5", "lenet", "cnn", "vgg_small"]


def lenet5(rng=None, *, num_classes: int = 10, scaled_tanh: bool = False) -> nn.Sequential:
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, section II.B) for 28×28×1 input.

    The 28×28 digit is zero-padded to the paper's 32×32 (`pad`), then
    C1 conv 6@5×5 → S2 subsampling → C3 conv 16@5×5 through the Table I connection table
    (`tables.lenet5_c3`) → S4 subsampling → C5 conv 120@5×5 (1×1 maps) → F6 dense 84 → OUTPUT dense 10.
    Each of C1, S2, C3, S4, C5 and F6 is followed by its squashing function (`C1_act`, ...).

    Departures from the paper, on purpose: OUTPUT is a dense layer giving logits for a softmax
    cross-entropy, not the paper's Euclidean RBF units with fixed codes; the squashing function is
    plain tanh unless `scaled_tanh=True` (the paper's 1.7159·tanh(2x/3)); weights start from
    'lecun_uniform' (variance 1/fan-in) rather than the paper's U(±2.4/F_i).
    """
    rng = as_rng(rng, "lenet5")
    act = nn.ScaledTanh if scaled_tanh else nn.Tanh
    layers = [
        ("pad", nn.ZeroPad2D(2)),
        ("C1", nn.Conv2D(1, 6, 5, rng=rng)), ("C1_act", act()),
        ("S2", nn.Subsampling2D(6)), ("S2_act", act()),
        ("C3", nn.Conv2D(6, 16, 5, connections=tables.lenet5_c3(), rng=rng)), ("C3_act", act()),
        ("S4", nn.Subsampling2D(16)), ("S4_act", act()),
        ("C5", nn.Conv2D(16, 120, 5, rng=rng)), ("C5_act", act()),
        ("flatten", nn.Flatten()),
        ("F6", nn.Dense(120, 84, rng=rng)), ("F6_act", act()),
        ("OUTPUT", nn.Dense(84, num_classes, rng=rng)),
    ]
    return nn.Sequential(layers, input_shape=(28, 28, 1))


def lenet(rng=None, *, num_classes: int = 10) -> nn.Sequential:
    """The LeNet of the deeplearning.net Theano tutorial ("Convolutional Neural Networks (LeNet)").

    conv 20@5×5 → max-pool 2×2 → tanh, conv 50@5×5 → max-pool 2×2 → tanh, flatten (4·4·50 = 800),
    dense 500 → tanh, dense 10. As in the tutorial's `LeNetConvPoolLayer`, tanh comes after the
    pooling (the tutorial adds the bias after pooling too; max(x) + b = max(x + b), so a conv bias
    is the same thing). Conv and hidden weights use 'glorot_uniform' (the tutorial's
    U(±√(6/(fan_in + fan_out)))); the output layer starts at zero, like the tutorial's logistic
    regression layer.
    """
    rng = as_rng(rng, "lenet")
    layers = [
        ("conv1", nn.Conv2D(1, 20, 5, rng=rng, init="glorot_uniform")),
        ("pool1", nn.MaxPool2D(2)), ("pool1_act", nn.Tanh()),
        ("conv2", nn.Conv2D(20, 50, 5, rng=rng, init="glorot_uniform")),
        ("pool2", nn.MaxPool2D(2)), ("pool2_act", nn.Tanh()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Dense(800, 500, rng=rng, init="glorot_uniform")), ("fc1_act", nn.Tanh()),
        ("fc2", nn.Dense(500, num_classes, rng=rng, init="zeros")),
    ]
    return nn.Sequential(layers, input_shape=(28, 28, 1))


def cnn(rng=None, *, num_classes: int = 10, dropout: float = 0.5, width: int = 32) -> nn.Sequential:
    """A small modern CNN for 28×28×1 digits: two blocks of two 3×3 convs (`width` = 32, then 64
    maps), each conv followed by BatchNorm and ReLU and each block by a 2×2 max-pool, then dense 128
    with BatchNorm, ReLU and Dropout, then dense 10. About 10 M multiply-adds per image at width 32
    (`width=16` costs about a quarter); aims at ≥ 99% on MNIST in a few epochs. Convs before
    BatchNorm have no bias (BatchNorm's β is the bias); weights use 'he_uniform'.
    """
    rng = as_rng(rng, "cnn")
    layers: list = []
    cin = 1
    for block, maps in ((1, width), (2, 2 * width)):
        for j in (1, 2):
            i = 2 * (block - 1) + j
            layers += [(f"conv{i}", nn.Conv2D(cin, maps, 3, bias=False, rng=rng, init="he_uniform")),
                       (f"bn{i}", nn.BatchNorm2D(maps)), (f"relu{i}", nn.ReLU())]
            cin = maps
        layers.append((f"pool{block}", nn.MaxPool2D(2)))
    # 28 → 26 → 24 → pool 12 → 10 → 8 → pool 4: 4·4·(2·width) features (1024 at width 32)
    layers += [("flatten", nn.Flatten()),
               ("fc1", nn.Dense(16 * cin, 128, bias=False, rng=rng, init="he_uniform")), ("bn5", nn.BatchNorm2D(128)),
               ("fc1_act", nn.ReLU()), ("dropout", nn.Dropout(dropout)),
               ("fc2", nn.Dense(128, num_classes, rng=rng))]
    model = nn.Sequential(layers, input_shape=(28, 28, 1))
    return model.set_rng(rng)


def vgg_small(rng=None, *, num_classes: int = 10, input_shape=(32, 32, 3)) -> nn.Sequential:
    """A small VGG-style net for 32×32×3 images (CIFAR-10): three blocks of two 3×3 'same' convs
    (32, 64, 128 maps), each conv followed by BatchNorm and ReLU, each block by a 2×2 max-pool;
    then global average pooling and dense 10. Convs have no bias (BatchNorm's β is the bias);
    weights use 'he_uniform'.
    """
    rng = as_rng(rng, "vgg_small")
    layers: list = []
    cin = int(input_shape[-1])
    for block, width in enumerate((32, 64, 128), start=1):
        for j in (1, 2):
            layers += [(f"conv{block}_{j}", nn.Conv2D(cin, width, 3, padding=1, bias=False, rng=rng,
                                                      init="he_uniform")),
                       (f"bn{block}_{j}", nn.BatchNorm2D(width)), (f"relu{block}_{j}", nn.ReLU())]
            cin = width
        layers.append((f"pool{block}", nn.MaxPool2D(2)))
    layers += [("gap", nn.GlobalAvgPool2D()), ("fc", nn.Dense(cin, num_classes, rng=rng))]
    return nn.Sequential(layers, input_shape=tuple(input_shape))


_ZOO: dict[str, tuple[Callable, str]] = {
    "lenet5": (lenet5, "LeNet-5 (LeCun et al. 1998): C1-S2-C3(Table I)-S4-C5-F6, tanh, 28×28 padded to 32×32; "
                       "60,850 parameters"),
    "lenet": (lenet, "Theano-tutorial LeNet: conv 20@5×5, pool, tanh, conv 50@5×5, pool, tanh, dense 500, "
                     "dense 10; 431,080 parameters"),
    "cnn": (cnn, "Modern small MNIST CNN: 3×3 convs 32-32-pool-64-64-pool with BatchNorm+ReLU, dense 128, "
                 "dropout; aims at ≥ 99% on MNIST"),
    "vgg-small": (vgg_small, "Small VGG for 32×32×3 (CIFAR-10): 3 blocks of 2×(conv3×3+BN+ReLU)+maxpool "
                             "(32/64/128), global average pool, dense 10"),
}


def names() -> list[str]:
    """The model names `get` accepts."""
    return list(_ZOO)


def describe(name: str) -> str:
    """One-line description of model `name`."""
    return _lookup(name)[1]


def _lookup(name: str):
    if name not in _ZOO:
        raise ValueError(f"models: unknown model {name!r}; expected one of {names()}")
    return _ZOO[name]


def get(name: str, rng=None, **kwargs) -> nn.Sequential:
    """Build model `name` with weights drawn from `rng` (a Generator or int seed; None means
    `np.random.default_rng(0)`). Keyword arguments go to the builder (e.g. `num_classes`)."""
    builder = _lookup(name)[0]
    rng = as_rng(rng, "models.get")
    try:
        return builder(rng, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        import inspect
        allowed = [p for p, v in inspect.signature(builder).parameters.items() if v.kind == v.KEYWORD_ONLY]
        raise TypeError(f"models.get({name!r}): unexpected keyword arguments {sorted(kwargs)}; "
                        f"this model takes {allowed}") from None
