"""The report's view of a model's structure: each entry's inputs, and the blocks a graph folds into.

Entries are the report's layers in execution order (`featuremaps.inspect.activations`): the model's
inputs first, then one per node. `entry_inputs` gives, for each entry, the indices of the entries it
reads (from `featuremaps.nn.graph.model_nodes`, so a Sequential is the chain `k - 1 → k`).

`blocks` cuts a graph into foldable groups without looking at layer classes: after node k, the
values still waiting to be read are "live"; where the only live value is node k itself, everything
before k is finished, so k closes a block (a ResNet block ends at its Add, an Inception block at its
Concatenate). Single-node blocks are joined: the first one right after a multi-node block joins it
(the activation after a merge), and the next ones form chains of at most `CHAIN` nodes (a stem, a
head). A block is named by the longest name prefix, up to a separator, that its nodes share (else by its
first and last node).
"""
from __future__ import annotations

import os

from ..nn.graph import input_names, model_nodes

__all__ = ["entry_inputs", "blocks", "CHAIN"]

#: The most nodes a chain of single-node blocks (a stem, a head) holds before a new group starts.
CHAIN = 6
_SEPARATORS = "_/.-:"


def entry_inputs(model, names: list[str]) -> list[list[int]]:
    """For each entry name (inputs, then nodes in execution order), the indices of the entries it reads."""
    index = {n: k for k, n in enumerate(names)}
    ins = {n: [] for n in input_names(model)}
    for node in model_nodes(model):
        ins[node.name] = [index[i] for i in node.inputs]
    return [ins[n] for n in names]


def _segments(inputs: list[list[int]], first: int) -> list[list[int]]:
    """Entries `first`..end cut where exactly one value (the entry just run) is still to be read."""
    last_read = {}
    for k, ins in enumerate(inputs):
        for i in ins:
            last_read[i] = max(last_read.get(i, -1), k)
    segments, current, live = [], [], set(range(first))
    for k in range(first, len(inputs)):
        current.append(k)
        live = {i for i in live if last_read.get(i, -1) > k}
        if k in last_read:
            live.add(k)
        if live <= {k}:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return segments


def _join(segments: list[list[int]]) -> list[list[int]]:
    groups: list[list[int]] = []
    last = None  # what the last group is: "block" (may take one more node), "closed" or "chain"
    for seg in segments:
        if len(seg) > 1:
            groups.append(list(seg))
            last = "block"
        elif last == "block":
            groups[-1].extend(seg)
            last = "closed"
        elif last == "chain" and len(groups[-1]) < CHAIN:
            groups[-1].extend(seg)
        else:
            groups.append(list(seg))
            last = "chain"
    return groups


def _prefix(names: list[str]) -> str:
    """The longest prefix of every name that ends at a separator or at the end of each name ('' if none)."""
    common = os.path.commonprefix(names)
    while common:
        if all(len(n) == len(common) or n[len(common)] in _SEPARATORS for n in names):
            return common.rstrip(_SEPARATORS)
        cut = max(common.rfind(s) for s in _SEPARATORS)
        common = common[:cut] if cut > 0 else ""
    return ""


def blocks(names: list[str], inputs: list[list[int]], n_inputs: int) -> list[dict]:
    """The foldable groups of a graph's nodes: `{"name", "members"}` with members as entry indices."""
    groups = _join(_segments(inputs, n_inputs))
    out = []
    for members in groups:
        label = _prefix([names[k] for k in members]) or f"{names[members[0]]} … {names[members[-1]]}"
        out.append({"name": label, "members": members})
    return out
