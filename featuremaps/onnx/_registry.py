"""One small converter per ONNX op, registered by op type and the range of schema versions it
implements (onnx2torch's design). A converter takes (ctx, node, inputs, attrs, version) where
`inputs` are `Value`s (None for an omitted optional input) and returns a list of `Value`s.
"""
from __future__ import annotations

CONVERTERS: dict[str, list[tuple[int, int, object]]] = {}

# The schema versions we implement run to 21 (opsets 7–21). The later versions of these ops
# (22–28) only added element types (bfloat16, float8, float4, int4, int2) and, for Cast, the
# float8 `round_mode`, so their since-version is accepted up to this.
LATEST = 28


def converter(op_type: str, lo: int = 1, hi: int = LATEST):
    """Register `fn` for `op_type` schema versions lo..hi (inclusive)."""
    def deco(fn):
        CONVERTERS.setdefault(op_type, []).append((lo, hi, fn))
        return fn
    return deco


def lookup(op_type: str, version: int):
    for lo, hi, fn in CONVERTERS.get(op_type, ()):
        if lo <= version <= hi:
            return fn
    return None


def supported_ops() -> list[str]:
    return sorted(CONVERTERS)
