"""The registry and Gradients as containers: lookup, membership, iteration, length and repr."""

from __future__ import annotations

from refgrad import Gradients, Value, registry
from refgrad.ops import ADD, EXP, MUL
from refgrad.ops.spec import Registry


def test_a_registry_is_its_specs_in_order() -> None:
    """A new Registry iterates, counts, looks up and lists exactly the specs it was given, in order."""
    ops = Registry((MUL, EXP))
    assert tuple(ops) == (MUL, EXP)
    assert len(ops) == 2
    assert ops["mul"] is MUL
    assert ops["exp"] is EXP
    assert ops.names == ("mul", "exp")
    assert repr(ops) == "Registry(mul, exp)"


def test_registry_membership_by_name_or_by_identity() -> None:
    """A name is in a registry if an op has it; a spec only if that very object is there."""
    ops = Registry((MUL, EXP))
    assert "mul" in ops
    assert "add" not in ops
    assert MUL in ops
    assert ADD not in ops
    assert 3 not in ops
    assert all(spec in registry for spec in registry)
    assert all(name in registry for name in registry.names)


def test_gradients_repr_shows_four_entries_and_counts_the_rest() -> None:
    """repr lists the first four node: gradient pairs and says how many more there are."""
    leaves = [Value(float(i)) for i in range(6)]
    six = Gradients({leaf: 2.0 * leaf.data for leaf in leaves})
    assert repr(six) == (
        "Gradients({Value(data=0.0): 0.0, Value(data=1.0): 2.0, Value(data=2.0): 4.0, "
        "Value(data=3.0): 6.0, ... (2 more)})"
    )
    four = Gradients(dict.fromkeys(leaves[:4], 1.0))
    assert repr(four) == (
        "Gradients({Value(data=0.0): 1.0, Value(data=1.0): 1.0, Value(data=2.0): 1.0, Value(data=3.0): 1.0})"
    )
    assert repr(Gradients({})) == "Gradients({})"


def test_gradients_is_a_copy_of_the_mapping_it_was_given() -> None:
    """Changing the dict afterwards does not change the Gradients; lookups, length and iteration agree."""
    x, y = Value(1.0), Value(2.0)
    source = {x: 3.0}
    grads = Gradients(source)
    source[y] = 4.0
    assert len(grads) == 1
    assert list(grads) == [x]
    assert grads[x] == 3.0
    assert grads[y] == 0.0
    assert y not in grads
