"""Keep model code from rebinding ``context`` and the helpers.

Small models often write ``context = context[:1000]`` and lose the input. A
cell that binds a protected name at module level (assignment, del, import as,
def, class, for/with targets, walrus, ``global``) is refused before it runs,
with a message that says what to do instead. Anything that slips past the
syntax check (``globals()[...] = ...``, ``exec``) is undone after the cell and
reported. This is a guard rail for the model, not a security boundary.
"""

from __future__ import annotations

import ast
import sys
from typing import Any

from IPython.core.error import InputRejected

from .helpers import PROVIDED

PROTECTED = tuple(sorted(PROVIDED))


class ProtectedNameError(InputRejected):
    """A cell tried to rebind a name rlm-host provides."""


def _message(name: str) -> str:
    return (f"'{name}' is provided by rlm-host and cannot be rebound; "
            f"store your result under a new name (e.g. my_{name.lower()} = ...)")


def bound_names(tree: ast.AST) -> set[str]:
    """Names a module binds at its top level, plus any declared ``global`` anywhere."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.update(node.names)
    _collect(tree, found)
    return found


def _collect(node: ast.AST, found: set[str]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(child.name)
            continue  # their bodies are their own scopes
        if isinstance(child, ast.Lambda):
            continue
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            found.add(child.id)
        elif isinstance(child, ast.alias):
            found.add((child.asname or child.name).split(".")[0])
        elif isinstance(child, (ast.MatchAs, ast.MatchStar)) and child.name:
            found.add(child.name)
        _collect(child, found)


class RebindGuard(ast.NodeTransformer):
    """An IPython AST transformer refusing cells that bind a protected name."""

    def visit_Module(self, node: ast.Module) -> ast.Module:
        clash = sorted(bound_names(node) & set(PROTECTED))
        if clash:
            raise ProtectedNameError(_message(clash[0]))
        return node


class RestoreGuard:
    """After each cell, put back any protected name that was replaced some other way."""

    def __init__(self, namespace: dict[str, Any], originals: dict[str, Any]) -> None:
        self.namespace = namespace
        self.originals = originals

    def __call__(self, *_args: Any) -> None:
        for name, value in self.originals.items():
            if self.namespace.get(name) is not value:
                self.namespace[name] = value
                print(f"rlm-host: {_message(name)}; it has been restored", file=sys.stderr)

