"""Each detector family module keeps the family contract (families/contract.py):
every name of `Family` (and of `TFLiteFamily` for the families the TFLite exporter
converts) present, constants of the declared type, functions with the protocol's
parameters (names, kinds, defaults)."""

from __future__ import annotations

import inspect
import types
import typing

import pytest

from train_lib.families import FAMILIES, TFLITE_ARCHITECTURES, faster_rcnn, retinanet
from train_lib.families.contract import Family, TFLiteFamily


def _members(protocol: type) -> tuple[dict[str, object], dict[str, typing.Callable]]:
    """The protocol's constants (name -> type) and functions (name -> function),
    its bases' included."""
    constants = typing.get_type_hints(protocol)
    functions = {}
    for cls in reversed(protocol.__mro__):
        if cls in (object, typing.Protocol, typing.Generic):
            continue
        functions.update({name: value for name, value in vars(cls).items()
                          if inspect.isfunction(value) and not name.startswith("_")})
    return constants, functions


def _of_type(value: object, declared: object) -> bool:
    if typing.get_origin(declared) is tuple:  # tuple[X, ...]
        (item, _) = typing.get_args(declared)
        return isinstance(value, tuple) and all(isinstance(v, item) for v in value)
    return isinstance(value, declared)


def contract_problems(module: types.ModuleType, protocol: type) -> list[str]:
    """What `module` lacks or gets wrong of `protocol`, one line each (none: it keeps it)."""
    constants, functions = _members(protocol)
    problems = []
    for name, declared in constants.items():
        if not hasattr(module, name):
            problems.append(f"{name} missing")
        elif not _of_type(getattr(module, name), declared):
            problems.append(f"{name} is not {declared}")
    for name, method in functions.items():
        function = getattr(module, name, None)
        if not callable(function):
            problems.append(f"{name}() missing")
            continue
        wanted = [(p.name, p.kind, p.default)
                  for p in list(inspect.signature(method).parameters.values())[1:]]  # no self
        given = [(p.name, p.kind, p.default)
                 for p in inspect.signature(function).parameters.values()]
        if given != wanted:
            problems.append(f"{name}{inspect.signature(function)} is not "
                            f"{name}({', '.join(n for n, _, _ in wanted)})")
    return problems


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_keeps_the_contract(name):
    family = FAMILIES[name]
    assert family.NAME == name
    assert contract_problems(family, Family) == []
    if name in TFLITE_ARCHITECTURES:
        assert contract_problems(family, TFLiteFamily) == []


def test_the_families_are_the_modules():
    assert FAMILIES == {"retinanet": retinanet, "faster_rcnn": faster_rcnn}
    assert set(TFLITE_ARCHITECTURES) <= set(FAMILIES)


def test_the_check_finds_what_a_family_gets_wrong():
    broken = types.ModuleType("broken")
    broken.__dict__.update({k: v for k, v in vars(retinanet).items() if k != "detect"})
    broken.LOSS_KEYS = ["total_loss"]  # a list, not a tuple

    def build_model(model, dtype="float32"):  # a renamed parameter
        return None

    broken.build_model = build_model
    assert contract_problems(broken, Family) == [
        "LOSS_KEYS is not tuple[str, ...]",
        "build_model(model, dtype='float32') is not build_model(model, precision)",
        "detect() missing",
    ]
    assert contract_problems(faster_rcnn, TFLiteFamily) == ["decoded_detections() missing"]
