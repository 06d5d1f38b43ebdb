"""The rebinding guard's reading of a cell (rlm_kernel.protect), on the host (no Docker)."""

from __future__ import annotations

import ast

import pytest

from rlm_kernel.protect import PROTECTED, ProtectedNameError, RebindGuard, bound_names


def names(code: str) -> set[str]:
    return bound_names(ast.parse(code))


@pytest.mark.parametrize(("code", "bound"), [
    ("context = context[:1000]", {"context"}),
    ("x += 1\ndel y", {"x", "y"}),
    ("a, *b = c", {"a", "b"}),
    ("import os.path\nimport re as regex\nfrom json import loads as peek", {"os", "regex", "peek"}),
    ("for i in range(3):\n    with open('f') as fh:\n        pass", {"i", "fh"}),
    ("if (n := 3):\n    pass", {"n"}),
    ("match cmd:\n    case [first, *rest]:\n        pass\n    case other:\n        pass", {"first", "rest", "other"}),
])
def test_top_level_bindings_are_found(code: str, bound: set[str]) -> None:
    """Assignment, augmented assignment, del, imports, loop and with targets, walrus and match captures bind."""
    assert names(code) == bound


def test_function_and_class_bodies_are_their_own_scopes() -> None:
    """A def or class binds its own name; what its body or a lambda assigns stays inside."""
    code = "def f():\n    context = 1\nclass C:\n    search = 2\ng = lambda peek: peek"
    assert names(code) == {"f", "C", "g"}


def test_global_declarations_count_wherever_they_are() -> None:
    """A name declared global inside a function is bound at module level."""
    assert names("def f():\n    global context\n    context = ''") == {"f", "context"}


def test_attribute_and_item_assignment_bind_nothing() -> None:
    """Changing an object (context.x = 1, documents[0] = d) binds no name."""
    assert names("documents[0] = d\ncontext.attr = 1") == set()


def test_the_guard_refuses_a_protected_name_and_says_what_to_do() -> None:
    """RebindGuard refuses a cell that rebinds a provided name, and lets a new name through."""
    assert "context" in PROTECTED and "llm_query" in PROTECTED
    with pytest.raises(ProtectedNameError, match=r"store your result under a new name \(e\.g\. my_context = \.\.\.\)"):
        RebindGuard().visit(ast.parse("context = context[:1000]"))
    tree = ast.parse("my_context = context[:1000]")
    assert RebindGuard().visit(tree) is tree
