"""emohrnet_fast/_C.pyi, the type stub of the compiled core, agrees with the binding.

pybind11 writes each function's signature into its docstring. The stub gives the same
functions the same keyword-only parameters, in the same order and of the same kind (int,
float, bool, a sequence), so mypy checks every call into the compiled core; the comparison
reads kinds, not pybind11's spelling of them, which changes between its versions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import emohrnet_fast._C as compiled

STUB = Path(__file__).resolve().parents[1] / "emohrnet_fast" / "_C.pyi"


def _kind(annotation: ast.expr | None) -> str:
    text = ast.unparse(annotation) if annotation is not None else ""
    for kind, marks in (
        ("sequence", ("Sequence", "list", "List", "FixedSize")),
        ("bool", ("bool",)),
        ("float", ("float", "Float")),
        ("dict", ("dict", "Dict")),
        ("int", ("int", "Int", "Index")),
    ):
        if any(mark in text for mark in marks):
            return kind
    return text or "none"


def _shape(function: ast.FunctionDef) -> tuple:
    args = function.args
    return (
        [(a.arg, _kind(a.annotation)) for a in args.posonlyargs + args.args],
        [(a.arg, _kind(a.annotation)) for a in args.kwonlyargs],
        _kind(function.returns),
    )


def _binding() -> dict[str, tuple]:
    shapes = {}
    for name in sorted(n for n in dir(compiled) if not n.startswith("_")):
        signature = (getattr(compiled, name).__doc__ or "").partition("\n")[0]
        assert signature.startswith(f"{name}("), f"_C.{name}: no signature in its docstring"
        function = ast.parse(f"def {signature}: ...").body[0]
        assert isinstance(function, ast.FunctionDef)
        shapes[name] = _shape(function)
    return shapes


def test_stub_matches_the_binding():
    stub = {
        node.name: _shape(node)
        for node in ast.parse(STUB.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    assert stub == _binding(), "emohrnet_fast/_C.pyi differs from csrc/bindings.cpp's functions"
    assert set(stub) >= {"log_mel", "spec_augment", "hr_fuse", "hr_fuse_backward"}
