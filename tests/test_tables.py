"""Connection tables, including LeNet-5's C3 table checked against the paper's figure."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from featuremaps import tables

# LeCun et al. 1998, Table I: rows are the six S2 maps, columns the sixteen C3 maps; X = connected.
PAPER_TABLE_I = [
    "X---XXX--XXXX-XX",
    "XX---XXX--XXXX-X",
    "XXX---XXX--X-XXX",
    "-XXX--XXXX--X-XX",
    "--XXX--XXXX-XX-X",
    "---XXX--XXXX-XXX",
]


def test_lenet5_c3_matches_paper_figure():
    t = tables.lenet5_c3()
    assert t.dtype == bool and t.shape == (6, 16)
    for row, pattern in zip(t, PAPER_TABLE_I):
        assert "".join("X" if v else "-" for v in row) == pattern
    assert tables.links(t) == 60  # the 60 X marks
    np.testing.assert_array_equal(tables.fan_in(t), [3] * 6 + [4] * 6 + [4] * 3 + [6])


def test_lenet5_c3_column_structure():
    t = tables.lenet5_c3()
    cols = [set(np.flatnonzero(t[:, n])) for n in range(16)]
    for i in range(6):
        assert cols[i] == {i, (i + 1) % 6, (i + 2) % 6}
        assert cols[6 + i] == {(i + k) % 6 for k in range(4)}
    assert cols[12:15] == [{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5}]
    assert cols[15] == set(range(6))


def test_full_one_to_one_groups():
    assert tables.full(3, 4).all() and tables.full(3, 4).shape == (3, 4)
    np.testing.assert_array_equal(tables.one_to_one(3), np.eye(3, dtype=bool))
    g = tables.groups(4, 6, 2)
    expected = np.zeros((4, 6), bool)
    expected[:2, :3] = expected[2:, 3:] = True
    np.testing.assert_array_equal(g, expected)
    with pytest.raises(ValueError, match="g must divide"):
        tables.groups(4, 6, 3)


@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 8), cout=st.integers(1, 8), data=st.data())
def test_random_table_fan_in_exact(cin, cout, data):
    k = data.draw(st.integers(1, cin))
    t = tables.random(cin, cout, k, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))))
    assert t.dtype == bool and t.shape == (cin, cout)
    np.testing.assert_array_equal(t.sum(axis=0), np.full(cout, k))


def test_random_table_deterministic_and_varied():
    a = tables.random(8, 30, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(a, tables.random(8, 30, 3, np.random.default_rng(0)))
    assert len({tuple(np.flatnonzero(a[:, n])) for n in range(30)}) > 10  # not all columns the same
    with pytest.raises(ValueError, match="fan_in must be ≤ cin"):
        tables.random(3, 2, 4, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        tables.random(3, 2, 1, 0)


def test_check():
    t = tables.check([[1, 0], [0, 1], [1, 1]], 3, 2)
    assert t.dtype == bool
    with pytest.raises(ValueError, match=r"shape \(in_channels, out_channels\) = \(2, 3\); received shape \(3, 2\)"):
        tables.check(np.ones((3, 2)), 2, 3)
    with pytest.raises(ValueError, match=r"output map\(s\) \[1\] have none"):
        tables.check([[1, 0], [1, 0]], 2, 2)
    with pytest.raises(ValueError, match="0/1"):
        tables.check([[2, 1]], 1, 2)
