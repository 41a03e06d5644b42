"""Evaluate the constant string/int expressions of the templates, for the contract tests.

No Bicep compiler runs here (see test_bicep.py), so the storage and deployment contract tests
need the *values* names resolve to: a container's ``name: segmentsContainerName`` is a param of
storage.bicep whose value main.bicep passes as ``'segments'``. This follows exactly the shapes the
templates use: string literals (with ``${}`` interpolation of resolvable parts), integers, params
(the caller's argument, else the default), vars, ``<module>.outputs.<name>`` and
``<resource>.name``. Anything else (function calls, runtime properties) evaluates to ``None``, so a
contract can never pass on a value it could not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from test_bicep import DECL, BicepFile, load, matching, object_keys

Ctx = dict[str, tuple["Scope", str]]  # param name -> (scope of the caller, argument expression)


@dataclass
class Scope:
    """One template as instantiated: the file and the arguments its caller passed."""

    file: BicepFile
    args: Ctx = field(default_factory=dict)


def _line_rest(bf: BicepFile, offset: int) -> str:
    end = bf.text.find("\n", offset)
    return bf.text[offset : end if end >= 0 else len(bf.text)].strip()


def decl_expr(bf: BicepFile, kind: str, name: str) -> str | None:
    """The expression after ``=`` of `param|var|output <name> ... = <expr>` (None: no default)."""
    for m in DECL.finditer(bf.masked):
        if m.group(1) == kind and m.group(2) == name:
            eq = bf.masked.find("=", m.end(), bf.masked.find("\n", m.end()))
            if eq < 0:
                return None
            expr_start = eq + 1
            rest = bf.masked[expr_start:].lstrip()
            start = len(bf.masked) - len(rest)
            if rest[:1] in "[{":  # multi-line literal: take the whole bracket
                return bf.text[start : matching(bf.masked, start) + 1]
            return _line_rest(bf, expr_start)
    return None


def resource_body(bf: BicepFile, symbol: str) -> dict[str, str]:
    """Top-level properties of `resource <symbol> '...' = {...}` -> expression (single line)."""
    m = re.search(rf"^resource\s+{symbol}\s+'[^']*'\s*(?:existing\s*)?=\s*\{{", bf.masked, re.M)
    assert m, f"resource {symbol} not in {bf.path.name}"
    return {k: _line_rest(bf, off) for k, off in object_keys(bf.text, bf.masked, m.end() - 1).items()}


def resources_of_type(bf: BicepFile, type_prefix: str) -> list[str]:
    """Symbols of the resources whose type starts with ``type_prefix`` (before the @version)."""
    return re.findall(rf"^resource\s+(\w+)\s+'{re.escape(type_prefix)}@", bf.text, re.M)


class Evaluator:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = load(root)
        self.main = Scope(self.files[(root / "main.bicep").resolve()])

    def module_scope(self, scope: Scope, symbol: str) -> Scope:
        mod = scope.file.modules[symbol]
        target = self.files[(scope.file.path.parent / mod.path).resolve()]
        m = re.search(rf"^module\s+{symbol}\s+'[^']*'\s*=\s*\{{", scope.file.masked, re.M)
        assert m
        body = object_keys(scope.file.text, scope.file.masked, m.end() - 1)
        args: Ctx = {}
        if "params" in body:
            popen = scope.file.masked.index("{", body["params"])
            for k, off in object_keys(scope.file.text, scope.file.masked, popen).items():
                args[k] = (scope, _line_rest(scope.file, off))
        return Scope(target, args)

    def scope_of(self, rel: str) -> Scope:
        """The module file ``rel`` as main.bicep instantiates it."""
        target = (self.root / rel).resolve()
        for symbol, mod in self.main.file.modules.items():
            if (self.root / mod.path).resolve() == target:
                return self.module_scope(self.main, symbol)
        raise AssertionError(f"main.bicep does not use {rel}")

    def value(self, scope: Scope, expr: str | None) -> str | int | None:
        if expr is None:
            return None
        expr = expr.strip()
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        if expr.startswith("'") and expr.endswith("'") and "'" not in expr[1:-1].replace("\\'", ""):
            return self._interpolate(scope, expr[1:-1])
        if m := re.fullmatch(r"(\w+)\.outputs\.(\w+)", expr):
            if m.group(1) not in scope.file.modules:
                return None
            inner = self.module_scope(scope, m.group(1))
            return self.value(inner, decl_expr(inner.file, "output", m.group(2)))
        if m := re.fullmatch(r"(\w+)\.name", expr):
            if m.group(1) not in scope.file.resources:
                return None
            return self.value(scope, resource_body(scope.file, m.group(1)).get("name"))
        if re.fullmatch(r"\w+", expr):
            if expr in scope.file.params:
                if expr in scope.args:
                    caller, arg = scope.args[expr]
                    return self.value(caller, arg)
                return self.value(scope, decl_expr(scope.file, "param", expr))
            if expr in scope.file.vars:
                return self.value(scope, decl_expr(scope.file, "var", expr))
        return None

    def _interpolate(self, scope: Scope, body: str) -> str | None:
        out, i = "", 0
        while (j := body.find("${", i)) >= 0:
            k = body.index("}", j)
            part = self.value(scope, body[j + 2 : k])
            if part is None:
                return None
            out += body[i:j] + str(part)
            i = k + 1
        return out + body[i:]

    def array_of_objects(self, scope: Scope, var: str) -> list[dict[str, str | int | None]]:
        """A `var x = [ {k: v ...} ... ]` with every value evaluated."""
        text = decl_expr(scope.file, "var", var)
        assert text and text.startswith("["), f"var {var} is not an array literal"
        bf = scope.file
        start = bf.text.index(text)
        end = start + len(text)
        items = []
        k = start + 1
        while (o := bf.masked.find("{", k, end)) >= 0:
            keys = object_keys(bf.text, bf.masked, o)
            items.append({key: self.value(scope, _line_rest(bf, off)) for key, off in keys.items()})
            k = matching(bf.masked, o) + 1
        return items

    def object_var(self, scope: Scope, var: str) -> dict[str, str | int | None]:
        """A `var x = { k: v ... }` with every value evaluated (app settings blocks)."""
        m = re.search(rf"^var\s+{var}\s*=\s*\{{", scope.file.masked, re.M)
        assert m, f"var {var} not in {scope.file.path.name}"
        keys = object_keys(scope.file.text, scope.file.masked, m.end() - 1)
        return {k: self.value(scope, _line_rest(scope.file, off)) for k, off in keys.items()}
