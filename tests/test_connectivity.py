"""connections / filters_for_output / filters_from_input / fan_in / fan_out for full, grouped,
depthwise and tabled conv layers: against hand-built expectations and against the engine itself
(a dense convolution with the expanded kernels must reproduce the layer's output; torch float64)."""
import numpy as np
import pytest
import torch

from featuremaps import nn, tables
from featuremaps.tensor import as_array
from featuremaps.inspect import connections, fan_in, fan_out, filters_for_output, filters_from_input
from tests.oracles import assert_sum_close

RNG = np.random.default_rng(7)


def _layers():
    return {
        "full": nn.Conv2D(4, 6, 3, rng=1),
        "grouped": nn.Conv2D(6, 4, (3, 2), groups=2, rng=2),
        "depthwise": nn.Conv2D(3, 3, 3, groups=3, rng=3),
        "depthwise_x2": nn.Conv2D(3, 6, 2, groups=3, rng=4),
        "tabled": nn.Conv2D(6, 16, 5, connections=tables.lenet5_c3(), rng=5),
        "random_table": nn.Conv2D(5, 7, 3, connections=tables.random(5, 7, 2, np.random.default_rng(3)), rng=6),
    }


def test_full_layer_is_all_true_and_filters_are_the_weight():
    layer = nn.Conv2D(4, 6, 3, rng=1)
    w = layer.weight.data
    assert connections(layer).dtype == bool and connections(layer).shape == (4, 6) and connections(layer).all()
    for o in range(6):
        k, conn = filters_for_output(layer, o)
        np.testing.assert_array_equal(k, w[:, :, :, o])
        assert conn == [0, 1, 2, 3]
    for i in range(4):
        np.testing.assert_array_equal(filters_from_input(layer, i), w[:, :, i, :])
    np.testing.assert_array_equal(fan_in(layer), [4] * 6)
    np.testing.assert_array_equal(fan_out(layer), [6] * 4)


def test_grouped_layer_is_block_diagonal_with_zeros_outside_the_group():
    layer = nn.Conv2D(6, 4, (3, 2), groups=2, rng=2)
    w = layer.weight.data  # (3, 2, 3, 4)
    expected = np.zeros((6, 4), dtype=bool)
    expected[0:3, 0:2] = True
    expected[3:6, 2:4] = True
    np.testing.assert_array_equal(connections(layer), expected)
    for o in range(4):
        g = o // 2
        k, conn = filters_for_output(layer, o)
        assert k.shape == (3, 2, 6)
        assert conn == list(range(3 * g, 3 * g + 3))
        np.testing.assert_array_equal(k[:, :, 3 * g:3 * g + 3], w[:, :, :, o])  # the group's filters in place
        outside = np.delete(k, np.s_[3 * g:3 * g + 3], axis=2)
        assert np.all(outside == 0)
    for i in range(6):
        g = i // 3
        f = filters_from_input(layer, i)
        assert f.shape == (3, 2, 4)
        np.testing.assert_array_equal(f[:, :, 2 * g:2 * g + 2], w[:, :, i - 3 * g, 2 * g:2 * g + 2])
        assert np.all(np.delete(f, np.s_[2 * g:2 * g + 2], axis=2) == 0)
    np.testing.assert_array_equal(fan_in(layer), [3, 3, 3, 3])
    np.testing.assert_array_equal(fan_out(layer), [2] * 6)


def test_depthwise_each_output_reads_one_input():
    layer = nn.Conv2D(3, 6, 2, groups=3, rng=4)  # channel multiplier 2
    c = connections(layer)
    np.testing.assert_array_equal(c, np.repeat(np.eye(3, dtype=bool), 2, axis=1))
    for o in range(6):
        k, conn = filters_for_output(layer, o)
        assert conn == [o // 2]
        np.testing.assert_array_equal(k[:, :, o // 2], layer.weight.data[:, :, 0, o])
    np.testing.assert_array_equal(fan_in(layer), [1] * 6)
    np.testing.assert_array_equal(fan_out(layer), [2, 2, 2])


def test_lenet5_c3_connections_equal_the_table():
    table = tables.lenet5_c3()
    layer = nn.Conv2D(6, 16, 5, connections=table, rng=5)
    np.testing.assert_array_equal(connections(layer), table)
    np.testing.assert_array_equal(fan_in(layer), [3] * 6 + [4] * 9 + [6])
    np.testing.assert_array_equal(fan_in(layer), tables.fan_in(table))
    np.testing.assert_array_equal(fan_out(layer), table.sum(axis=1))
    assert int(connections(layer).sum()) == 60
    # output map 7 reads {1, 2, 3, 4} (the paper's Table I, column 7)
    assert filters_for_output(layer, 7)[1] == [1, 2, 3, 4]
    assert filters_for_output(layer, 15)[1] == [0, 1, 2, 3, 4, 5]


def test_tabled_filters_are_zero_where_unconnected_whatever_the_weight_holds():
    table = tables.lenet5_c3()
    layer = nn.Conv2D(6, 16, 5, connections=table, rng=5)
    layer.weight.data = RNG.standard_normal(layer.weight.shape).astype(np.float32)  # nonzero everywhere
    for o in range(16):
        k, conn = filters_for_output(layer, o)
        assert np.all(k[:, :, ~table[:, o]] == 0)
        np.testing.assert_array_equal(k[:, :, table[:, o]], layer.weight.data[:, :, table[:, o], o])
    for i in range(6):
        f = filters_from_input(layer, i)
        assert np.all(f[:, :, ~table[i]] == 0)


def test_connections_returns_a_copy():
    table = tables.lenet5_c3()
    layer = nn.Conv2D(6, 16, 5, connections=table, rng=5)
    c = connections(layer)
    c[:] = False
    assert connections(layer).sum() == 60


@pytest.mark.parametrize("name", list(_layers()))
def test_expanded_kernels_reproduce_the_engine(name):
    """A plain (groups=1) convolution with filters_for_output's kernels must give the layer's own
    output: this checks the placement of every filter against the engine (oracle: torch float64)."""
    layer = _layers()[name]
    if layer.connections is not None:  # make unconnected weights nonzero: the engine must ignore them
        layer.weight.data = RNG.standard_normal(layer.weight.shape).astype(np.float32)
    layer.bias.data = RNG.standard_normal(layer.bias.shape).astype(np.float32)
    c_in, c_out = layer.in_channels, layer.out_channels
    full = np.stack([filters_for_output(layer, o)[0] for o in range(c_out)], axis=-1)  # (kh, kw, c_in, c_out)
    x = RNG.standard_normal((2, 9, 8, c_in)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64),
                                     torch.tensor(full.transpose(3, 2, 0, 1), dtype=torch.float64),
                                     torch.tensor(layer.bias.data, dtype=torch.float64))
    ref = ref.numpy().transpose(0, 2, 3, 1)
    magnitudes = torch.nn.functional.conv2d(torch.tensor(abs(x).transpose(0, 3, 1, 2), dtype=torch.float64),
                                            torch.tensor(abs(full).transpose(3, 2, 0, 1), dtype=torch.float64),
                                            torch.tensor(abs(layer.bias.data), dtype=torch.float64))
    out = as_array(layer(x))
    # float32 work against float64: the rounding of the engine's kh·kw·c_in-term sums (+ the bias)
    assert_sum_close(out, ref, magnitudes.numpy().transpose(0, 2, 3, 1), np.float32, full[..., 0].size + 1)
    # and filters_from_input is the same array read the other way
    for i in range(c_in):
        np.testing.assert_array_equal(filters_from_input(layer, i), full[:, :, i, :])


def test_index_errors_give_the_valid_range():
    layer = nn.Conv2D(6, 16, 5, connections=tables.lenet5_c3(), rng=5)
    with pytest.raises(ValueError, match=r"o must be in \[0, 15\].*received 16"):
        filters_for_output(layer, 16)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        filters_for_output(layer, -1)
    with pytest.raises(ValueError, match=r"i must be in \[0, 5\].*received 6"):
        filters_from_input(layer, 6)
    with pytest.raises(TypeError, match="must be an int"):
        filters_for_output(layer, 1.5)
    with pytest.raises(TypeError, match="must be an int"):
        filters_from_input(layer, True)


@pytest.mark.parametrize("fn", [connections, fan_in, fan_out, lambda l: filters_for_output(l, 0),
                                lambda l: filters_from_input(l, 0)])
@pytest.mark.parametrize("layer", [nn.Dense(3, 4), nn.MaxPool2D(2), nn.ReLU(), "C3"])
def test_non_conv_layer_names_the_supported_kinds(fn, layer):
    with pytest.raises(TypeError, match=r"conv layer \(Conv2D.*received a (Dense|MaxPool2D|ReLU|str)"):
        fn(layer)
