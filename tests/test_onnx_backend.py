"""The ONNX package's own node test cases (onnx.backend.test, generated in memory from the
installed onnx) for every op featuremaps.onnx supports, run through `run` and compared with the
outputs the ONNX project computed. The failures that remain are listed in XFAIL with the reason."""
from __future__ import annotations

import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from featuremaps.onnx import run, supported_ops  # noqa: E402

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10, np.dtype(np.float16): 1e-3}

# Node tests that fail, matched by name pattern, with the reason (strict: one that starts to pass
# fails the run until it leaves this table).
XFAIL: list[tuple[str, str]] = [
    (r"(averagepool|maxpool|convtranspose|conv)_3d",
     "3-D (volumetric) pooling and convolution: featuremaps' ops are 2-D (1-D runs as H = 1)"),
    (r"training_dropout(_default|_mask|$)", "random dropout in training mode: run() is inference only"),
    (r"batchnorm_.*training_mode", "BatchNormalization in training mode: run() is inference only"),
    (r"cast_e8m0_FLOAT(16)?_to_FLOAT8E8M0",
     "Cast to FLOAT8E8M0 (a scale type with its own rounding) is not implemented"),
    (r"celu_bfloat16$",
     "bfloat16 (ml_dtypes' type) is not a NumPy floating dtype; featuremaps' ops take float16/32/64"),
    (r"resize_.*cubic", "Resize mode 'cubic' is not implemented (nearest and linear are)"),
    (r"resize_.*antialias", "Resize antialias=1 is not implemented"),
    (r"resize_.*half_pixel_symmetric", "Resize coordinate mode half_pixel_symmetric (opset 19) is not implemented"),
    (r"resize_tf_crop_and_resize", "Resize coordinate mode tf_crop_and_resize (with roi) is not implemented"),
    (r"resize_downsample_scales_linear_align_corners",
     "align_corners with a scale that gives a fractional size (2·0.6, 4·0.6): the ONNX reference uses "
     "scale·in (2.4) as the resized length, featuremaps.functional.resize the whole output size (2)"),
]


def _cases():
    import warnings
    from onnx.backend.test.case import node
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    supported = set(supported_ops())
    keep = []
    for c in cases:
        ops = {(n.domain, n.op_type) for n in c.model.graph.node}
        if c.data_sets and all(d in ("", "ai.onnx") and op in supported for d, op in ops):
            keep.append(c)
    return sorted(keep, key=lambda c: c.name)


CASES = _cases()


def _param(c):
    reasons = [why for pattern, why in XFAIL if re.search(pattern, c.name)]
    marks = [pytest.mark.xfail(reason=reasons[0], strict=True)] if reasons else []
    return pytest.param(c, id=c.name, marks=marks)


def test_the_node_tests_were_found():
    assert len(CASES) > 150, len(CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_onnx_node_case(case):
    inputs, outputs = ([numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else a for a in part]
                       for part in case.data_sets[0])
    names = [i.name for i in case.model.graph.input if i.name not in {t.name for t in case.model.graph.initializer}]
    got = run(case.model, dict(zip(names, inputs)))
    assert len(got) == len(outputs)
    for g, r in zip(got, outputs):
        r = np.asarray(r)
        assert g.shape == r.shape, (g.shape, r.shape)
        if r.dtype.kind not in "fc":
            np.testing.assert_array_equal(g, r)
            continue
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        rtol = RTOL.get(r.dtype, 1e-4)
        finite = np.isfinite(r)
        scale = float(np.max(np.abs(r[finite]))) if finite.any() else 1.0
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * max(scale, 1e-30))  # atol from the magnitudes
