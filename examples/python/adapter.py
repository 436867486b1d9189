"""A protocol adapter (docs/protocol.md) for any micrograd-style Python class.

    python -m refgrad verify --engine-cmd "python examples/python/adapter.py MODULE:CLASS"

gives the same report card as ``--engine MODULE:CLASS``, through the protocol any language can
speak. After MODULE:CLASS, ``--ends-only`` answers with the output's value and the inputs'
gradients alone, as an engine that cannot list its nodes would; ``--strict`` turns every
non-finite value or gradient into an error answer with ``"domain": true`` (and says ``"strict":
true``), as an engine that never returns a non-finite number would. It needs nothing of refgrad:
only the standard library and the class, imported with the current directory on the path.
"""

import importlib
import json
import math
import operator
import sys

BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv, "vpow": operator.pow}
METHODS = ("exp", "log", "tanh", "sigmoid", "relu", "abs")
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def number(x):
    """A result as the protocol writes it: a round-trip exact JSON number, or a string if not finite."""
    x = float(x)  # a complex result raises TypeError: answered as an error
    return "NaN" if math.isnan(x) else NON_FINITE.get(x, x)


class NotFiniteError(ArithmeticError):
    """A strict adapter's refusal of a non-finite value or gradient."""


def apply(op, args, params):
    if op in BINARY:
        return BINARY[op](*args)
    if op == "neg":
        return -args[0]
    if op == "pow":
        return args[0] ** params[0]
    return getattr(args[0], op)()


def main(spec, ends_only=False, strict=False):
    module, _, name = spec.partition(":")
    sys.path.insert(0, "")
    Value = getattr(  # noqa: N806  # the class, named as micrograd names it
        importlib.import_module(module), name
    )
    probe = Value(0.5)
    ops = [*BINARY, "neg", "pow", *(op for op in METHODS if callable(getattr(probe, op, None)))]
    out = sys.stdout
    handshake = {"protocol": 1, "engine": f"{spec} (adapter)", "ops": ops, "nodes": not ends_only, "strict": strict}
    out.write(json.dumps(handshake) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("shutdown"):
            break
        program, nodes, stage = request["program"], [], "forward"
        try:
            nodes = [Value(x) for x in program["inputs"]]
            for step in program["steps"]:
                args = [nodes[o["node"]] if "node" in o else o["const"] for o in step["operands"]]
                nodes.append(apply(step["op"], args, step["params"]))
                if not math.isfinite(nodes[-1].data):
                    if strict:
                        refused = nodes.pop()  # the error names the node being built
                        raise NotFiniteError(f"the value would be {refused.data}")
                    break  # the engine's way of saying "not a finite real": nothing after it is built
            count, inputs = len(program["inputs"]) + len(program["steps"]), len(program["inputs"])
            values = [number(n.data) for n in nodes] + ["NaN"] * (count - len(nodes))
            if len(nodes) < count or not math.isfinite(nodes[-1].data):
                grads = ["NaN"] * count
            else:
                stage = "backward"
                nodes[-1].backward()
                grads = [number(n.grad) for n in nodes]
                if strict and not all(math.isfinite(n.grad) for n in nodes):
                    raise NotFiniteError("a gradient would not be finite")
            answer = {"value": values[-1], "gradients": grads[:inputs]}
            if not ends_only:
                answer["nodes"] = {"values": values, "gradients": grads}
        except Exception as error:  # the engine's refusal, whatever it raises
            domain = isinstance(error, (ArithmeticError, ValueError, TypeError))
            where = {"node": len(nodes)} if stage == "forward" and len(nodes) >= len(program["inputs"]) else {}
            answer = {
                "error": {
                    "message": str(error),
                    "domain": domain,
                    "stage": stage,
                    "type": type(error).__name__,
                    **where,
                }
            }
        out.write(json.dumps({"id": request["id"], **answer}) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], ends_only="--ends-only" in sys.argv[2:], strict="--strict" in sys.argv[2:])
