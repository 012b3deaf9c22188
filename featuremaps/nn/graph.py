"""`Graph`: a directed acyclic model of named nodes, each a layer applied to the outputs of others.

A graph has named inputs (each with an optional per-example shape), nodes `(name, layer, inputs)`
where `inputs` names graph inputs or other nodes, and named outputs — Keras's functional API in
data form::

    g = Graph(inputs={"image": (32, 32, 3)},
              nodes=[("conv", Conv2D(3, 8, 3, padding="same"), "image"),
                     ("act", ReLU(), "conv"),
                     ("sum", Add(), ["image_proj", "act"]), ...],
              outputs="sum")

A merge layer (`role == "merge"`) takes 2 or more inputs, every other layer exactly one. Nodes may
be listed in any order; they run in a topological order (the given order where it is one), which
is also the order of `names()`, `named_children()`, `state_dict()` and every inspection tool.
Calling a graph with one output returns that output; with several, a tuple in `outputs` order.
Several inputs are passed positionally in `inputs` order or as one dict name → array.

`Sequential.nodes()` describes a chain in the same terms (its input is called "input"), so a tool
written against `nodes()` reads both kinds of model.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

from .._json import jsonable
from .module import Module, ShapeError, from_config, register

__all__ = ["Graph", "Node", "model_nodes", "input_names", "value_shapes", "is_container"]


class Node(NamedTuple):
    """One node of a model: its `name`, its `layer` and the names of the values it reads."""
    name: str
    layer: Module
    inputs: tuple


def _check_name(name, what: str, seen: set) -> str:
    if not isinstance(name, str) or not name or "." in name or name in seen:
        why = ("not a str" if not isinstance(name, str) else "empty" if not name
               else "contains '.'" if "." in name else "repeated")
        raise ValueError(f"Graph: {what} names must be unique, non-empty str without '.'; received {name!r} ({why})")
    seen.add(name)
    return name


def _per_example_shape(shape, name: str):
    if shape is None:
        return None
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        out = ()
    if not out or any(s < 1 for s in out):
        raise ValueError(f"Graph: the shape of input {name!r} must be a per-example shape (H, W, C) or (F,) of "
                         f"positive ints, without the batch dimension; received {shape!r}")
    return out


def _inputs_spec(inputs) -> dict:
    """`inputs` given as a name, a list of names, a list of (name, shape) or a dict name → shape."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, dict):
        pairs = list(inputs.items())
    elif isinstance(inputs, (list, tuple)):
        pairs = [(item, None) if isinstance(item, str) else tuple(item) for item in inputs]
    else:
        raise TypeError(f"Graph: inputs must be a name, a list of names or (name, shape) pairs, or a dict "
                        f"name → shape; received {type(inputs).__name__}")
    if not pairs:
        raise ValueError("Graph: inputs must name at least one input")
    seen: set = set()
    return {_check_name(n, "input", seen): _per_example_shape(s, n) for n, s in pairs}


def _arity_ok(layer: Module, n: int) -> str | None:
    """None when `layer` can take `n` inputs, else what it takes."""
    if isinstance(layer, Graph):
        want = len(layer.input_names)
        return None if n == want else f"{want} input{'s' if want != 1 else ''} (its graph inputs)"
    if layer.role == "merge":
        return None if n >= 2 else "2 or more inputs (a merge layer)"
    return None if n == 1 else "exactly 1 input"


def _topological(nodes: list[Node], known: set) -> list[Node]:
    """`nodes` in an order where each comes after what it reads (stable: the given order when it is one)."""
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        missing = [i for i in n.inputs if i not in by_name and i not in known]
        if missing:
            raise ValueError(f"Graph: node {n.name!r} reads {missing}, which is neither a graph input "
                             f"({sorted(known)}) nor a node")
    order, done, state = [], set(known), {}

    def visit(n: Node, path: list):
        if n.name in done:
            return
        if state.get(n.name) == "open":
            cycle = path[path.index(n.name):] + [n.name]
            raise ValueError(f"Graph: the nodes form a cycle {' → '.join(cycle)}; a graph model must be acyclic")
        state[n.name] = "open"
        for i in n.inputs:
            if i not in done:
                visit(by_name[i], path + [n.name])
        done.add(n.name)
        order.append(n)

    for n in nodes:
        visit(n, [])
    return order


@register
class Graph(Module):
    """A DAG of named nodes; see the module docstring.

    `nodes` is a list of `(name, layer, inputs)` (inputs: one name or a list of names); `outputs`
    one name or a list of them. `graph["conv"]` is a layer, `graph.node("conv")` its `Node`.
    """

    def __init__(self, inputs, nodes, outputs):
        super().__init__()
        spec = _inputs_spec(inputs)
        seen = set(spec)
        parsed, owner = [], {}
        for item in nodes:
            if not isinstance(item, (tuple, list, Node)) or len(item) != 3:
                raise TypeError(f"Graph: each node must be (name, layer, inputs); received {item!r:.120}")
            name, layer, ins = item
            _check_name(name, "node (and input)", seen)
            if not isinstance(layer, Module):
                raise TypeError(f"Graph: node {name!r}: the layer must be a featuremaps Module; "
                                f"received {type(layer).__name__}")
            if id(layer) in owner:
                raise ValueError(f"Graph: node {name!r} uses the same layer object as node {owner[id(layer)]!r}; "
                                 "each node needs its own layer (shared weights would be updated once per node)")
            owner[id(layer)] = name
            ins = (ins,) if isinstance(ins, str) else tuple(ins)
            if not all(isinstance(i, str) for i in ins):
                raise TypeError(f"Graph: node {name!r}: inputs must be names (str); received {ins!r:.120}")
            why = _arity_ok(layer, len(ins))
            if why:
                raise ValueError(f"Graph: node {name!r} ({type(layer).__name__}) takes {why}; "
                                 f"received {len(ins)}: {list(ins)}")
            parsed.append(Node(name, layer, ins))
        ordered = _topological(parsed, set(spec))
        outs = [outputs] if isinstance(outputs, str) else list(outputs)
        if not outs or any(o not in seen for o in outs) or len(set(outs)) != len(outs):
            raise ValueError(f"Graph: outputs must name distinct nodes or inputs; received {outputs!r}; "
                             f"names are {sorted(seen)}")
        object.__setattr__(self, "_inputs", spec)
        object.__setattr__(self, "_nodes", ordered)
        object.__setattr__(self, "_outputs", tuple(outs))
        for n in ordered:
            self._modules[n.name] = n.layer

    # --- structure ----------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def input_shapes(self) -> dict:
        """Graph input name → per-example shape (None where not given)."""
        return dict(self._inputs)

    @property
    def input_shape(self):
        """The per-example shape of the graph's only input (None with several inputs or none given)."""
        return next(iter(self._inputs.values())) if len(self._inputs) == 1 else None

    def nodes(self) -> list[Node]:
        """Every node, in execution (topological) order."""
        return list(self._nodes)

    def node(self, name: str) -> Node:
        for n in self._nodes:
            if n.name == name:
                return n
        raise KeyError(f"Graph: no node named {name!r}; nodes are {self.names()}")

    def consumers(self, name: str) -> list[str]:
        """Names of the nodes that read `name` (a node or a graph input), in execution order."""
        return [n.name for n in self._nodes if name in n.inputs]

    def names(self) -> list[str]:
        return [n.name for n in self._nodes]

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Module]:
        return iter([n.layer for n in self._nodes])

    def __contains__(self, name) -> bool:
        return name in self._modules

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._modules:
                raise KeyError(f"Graph: no node named {key!r}; nodes are {self.names()}")
            return self._modules[key]
        raise TypeError(f"Graph: index a graph with a node name (str); received {type(key).__name__}")

    # --- running ------------------------------------------------------------------------------------
    def _feeds(self, xs) -> dict:
        names = self.input_names
        if len(xs) == 1 and isinstance(xs[0], dict):
            given = xs[0]
            missing, extra = [n for n in names if n not in given], [n for n in given if n not in names]
            if missing or extra:
                raise ValueError(f"Graph: inputs are {names}; missing {missing}, unknown {extra}")
            return dict(given)
        if len(xs) != len(names):
            raise ValueError(f"Graph: takes {len(names)} input{'s' if len(names) != 1 else ''} {names} (positionally "
                             f"or as a dict name → array); received {len(xs)}")
        return dict(zip(names, xs))

    def trace(self, *xs, upto: str | None = None) -> dict:
        """Run the graph and return every value by name: the inputs, then each node's output in order
        (stopping after node `upto` when given)."""
        env = self._feeds(xs)
        for n in self._nodes:
            env[n.name] = n.layer(*[env[i] for i in n.inputs])
            if n.name == upto:
                break
        return env

    def __call__(self, *xs):
        return self.forward(*xs)

    def forward(self, *xs):
        from . import fused
        env = self._feeds(xs)
        keep = {}  # how many nodes still read each value, so that memory is freed as the graph runs
        for n in self._nodes:
            for i in n.inputs:
                keep[i] = keep.get(i, 0) + 1
        # No autograd and the compiled kernels on: each simple chain of nodes runs as the fused
        # inference plan, at its first node's place (its inner values are read by nothing else).
        chains = fused.graph_chains(self._nodes, self._outputs) if fused.applies() else {}
        inner = {c.name for chain in chains.values() for c in chain[1:]}
        for n in self._nodes:
            if n.name in inner:
                continue
            args = [env[i] for i in n.inputs]
            if n.name in chains:
                chain = chains[n.name]
                env[chain[-1].name] = fused.run_chain([c.layer for c in chain], *args)
            else:
                env[n.name] = n.layer(*args)
            for i in n.inputs:
                keep[i] -= 1
                if keep[i] == 0 and i not in self._outputs:
                    del env[i]
        outs = tuple(env[o] for o in self._outputs)
        return outs[0] if len(outs) == 1 else outs

    # --- shapes and config --------------------------------------------------------------------------
    def _given_shapes(self, input_shape) -> dict:
        if input_shape is None:
            shapes = dict(self._inputs)
        elif isinstance(input_shape, dict):
            shapes = {n: input_shape.get(n, s) for n, s in self._inputs.items()}
        elif len(self._inputs) == 1:
            shapes = {self.input_names[0]: input_shape}
        else:
            shapes = dict(zip(self.input_names, input_shape))
        unknown = [n for n, s in shapes.items() if s is None]
        if unknown:
            raise ValueError(f"Graph.compute_output_shape: no shape for inputs {unknown}; pass input_shape=... or "
                             "build the graph with inputs={name: (H, W, C)}")
        return {n: tuple(int(d) for d in s) for n, s in shapes.items()}

    def node_shapes(self, input_shape=None) -> dict:
        """Per-example shape of every value by name (inputs, then nodes), computed without running.

        `input_shape` is the only input's shape, a list in input order or a dict name → shape; it
        defaults to the shapes the graph was built with. A node that cannot take its input raises
        `ShapeError` naming it."""
        return value_shapes(self, self._given_shapes(input_shape))

    def compute_output_shape(self, input_shape=None):
        """The output's per-example shape (a tuple of them with several outputs)."""
        shapes = self.node_shapes(input_shape)
        outs = tuple(shapes[o] for o in self._outputs)
        return outs[0] if len(outs) == 1 else outs

    def get_config(self) -> dict:
        return {"class": "Graph",
                "inputs": [{"name": n, "shape": jsonable(s)} for n, s in self._inputs.items()],
                "nodes": [{"name": n.name, "inputs": list(n.inputs), "config": n.layer.get_config()}
                          for n in self._nodes],
                "outputs": list(self._outputs)}

    @classmethod
    def from_config(cls, config: dict) -> "Graph":
        inputs, nodes = config.get("inputs"), config.get("nodes")
        if not isinstance(inputs, list) or not isinstance(nodes, list):
            raise ValueError("Graph.from_config: 'inputs' and 'nodes' must be lists; received "
                             f"{type(inputs).__name__} and {type(nodes).__name__}")
        try:
            spec = [(i["name"], i.get("shape")) for i in inputs]
            built = [(n["name"], from_config(n["config"]), n["inputs"]) for n in nodes]
        except (TypeError, KeyError) as e:
            raise ValueError("Graph.from_config: each input must be {'name', 'shape'} and each node "
                             f"{{'name', 'inputs', 'config'}}; missing {e}") from None
        return cls(spec, built, config.get("outputs", []))

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {s}" for n, s in self._inputs.items())
        lines = [f"Graph(inputs={{{ins}}}, outputs={list(self._outputs)},"]
        for n in self._nodes:
            body = repr(n.layer).replace("\n", "\n  ")
            lines.append(f"  ({n.name} ← {', '.join(n.inputs)}): {body}")
        lines.append(")")
        return "\n".join(lines)


def model_nodes(model) -> list[Node]:
    """The `Node`s of a `Graph` or a `Sequential` (a chain whose input is called "input")."""
    nodes = getattr(model, "nodes", None)
    if callable(nodes):
        return nodes()
    raise TypeError(f"model must be a featuremaps.nn.Sequential or Graph; received a {type(model).__name__}")


def value_shapes(model, input_shapes: dict) -> dict:
    """Per-example shape of every value of a Graph or Sequential (its inputs, then each node's output),
    from the shapes of its inputs (name → shape), without running it. A node that cannot take its
    input raises `ShapeError` naming it."""
    shapes = {n: tuple(s) for n, s in input_shapes.items()}
    for n in model_nodes(model):
        try:
            shapes[n.name] = tuple(n.layer.compute_output_shape(*[shapes[i] for i in n.inputs]))
        except ShapeError as e:
            raise e.within(n.name) from None
    return shapes


def is_container(layer) -> bool:
    """Whether `layer` holds other layers (a Sequential or a Graph) rather than computing itself."""
    return callable(getattr(layer, "nodes", None))


def input_names(model) -> list[str]:
    """The names of a model's inputs: a Graph's, or ["input"] for a Sequential."""
    return list(getattr(model, "input_names", ["input"]))
