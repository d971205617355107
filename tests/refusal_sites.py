"""Where the source gives a refusal code: an AST walk of the packages, for tests/test_refusals.py.

A *site* is a call of a constructor or helper that takes a code (`DomainError(code, message, status?)`,
`Invalid`, `Rejection`, `PledgeError`, `send_problem(scope, send, status, code, ...)`, ...), a problem
document written as a dict (keys "code" and "status"), or a refusal tuple of the request edge
(`refusal = (status, code, message)`, and what the `*_refusal` helpers of api/security/middleware.py
return: `(code, message)`, answered 422). Each site's code expression is resolved to the literal codes
it can be -- a string, `Refusal.X`, `R.X` (matching.reasons), a conditional of those, a name assigned
only such values in the function or module, `*NAME` of a module-level tuple -- or it is *dynamic*.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matching import reasons

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exchange", "api", "pledges", "ledger", "matching")


@dataclass(frozen=True, slots=True)
class Taker:
    code: int  # index of the code argument (or the `code=` keyword)
    status: int | None = None  # index of an argument restating the status (or `status=`), if any
    implied: int | None = None  # the status the taker gives when none is restated


# Everything in the source that takes a refusal code, by the name it is called by.
TAKERS = {
    "DomainError": Taker(0, 2),
    "Invalid": Taker(0, implied=422),
    "SignatureError": Taker(0, implied=401),
    "BodyRefused": Taker(0, implied=422),
    "PledgeError": Taker(0, 2, implied=409),
    "Rejection": Taker(0),
    "_reason_error": Taker(0),
    "send_problem": Taker(3, 2),
    "problem": Taker(1, 0),
    "Refusal.of": Taker(0, 1),
}
REFUSAL_HELPER_SUFFIX = "_refusal"  # api/security/middleware.py: helpers returning (code, message), 422


@dataclass(frozen=True, slots=True)
class Site:
    path: str
    line: int
    function: str  # the enclosing function ("" at module level)
    taker: str
    expr: str  # the code expression as written
    codes: tuple[str, ...] | None  # the literal codes it can be; None: dynamic
    status: int | None  # the status the site restates or implies, if known
    passthrough: bool = False  # a taker handing its own `code` parameter on (its callers are sites)

    def where(self) -> str:
        return f"{self.path}:{self.line} ({self.function or 'module'}) {self.taker}({self.expr})"


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id == "Refusal":
            return f"Refusal.{func.attr}"
        return func.attr
    return None


class _Walker(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.sites: list[Site] = []
        self.refusal_attrs: set[str] = set()  # Refusal.X used anywhere
        self.reason_attrs: set[str] = set()  # R.X used anywhere
        self.module_assigns = _assigns(tree.body)
        self.stack: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.classes: list[ast.ClassDef] = []

    # ------------------------------------------------------------------ resolution

    def _assigns(self) -> dict[str, list[ast.expr]]:
        return _assigns(ast.walk(self.stack[-1])) if self.stack else {}

    def resolve(self, node: ast.expr, depth: int = 0) -> tuple[str, ...] | None:
        if depth > 4:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return (node.value,)
        if isinstance(node, ast.IfExp):
            a, b = self.resolve(node.body, depth + 1), self.resolve(node.orelse, depth + 1)
            return None if a is None or b is None else a + b
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "Refusal":
                return (node.attr.lower(),)
            if node.value.id == "R" and isinstance(getattr(reasons, node.attr, None), str):
                return (getattr(reasons, node.attr),)
        if isinstance(node, ast.Name):
            values = self._assigns().get(node.id) or self.module_assigns.get(node.id)
            if not values:
                return None
            out: tuple[str, ...] = ()
            for v in values:
                got = self.resolve(v, depth + 1)
                if got is None:
                    return None
                out += got
            return out
        return None

    def _tuple_of(self, node: ast.expr) -> ast.Tuple | None:
        """`NAME` (a module-level tuple) or a tuple display."""
        if isinstance(node, ast.Tuple):
            return node
        if isinstance(node, ast.Name):
            values = self.module_assigns.get(node.id, [])
            if len(values) == 1 and isinstance(values[0], ast.Tuple):
                return values[0]
        return None

    def _params(self) -> set[str]:
        if not self.stack:
            return set()
        a = self.stack[-1].args
        return {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}

    def _function(self) -> str:
        names = [c.name for c in self.classes] + [f.name for f in self.stack]
        return ".".join(names)

    def _in_taker(self) -> bool:
        """Inside the definition of a taker (DomainError.__init__, Invalid.__init__, problem, ...)."""
        if not self.stack:
            return False
        fn = self.stack[-1].name
        owner = self.classes[-1].name if self.classes else None
        return fn in TAKERS or (fn == "__init__" and owner in TAKERS)

    def add(self, line: int, taker: str, expr: ast.expr | None, status: int | None) -> None:
        if expr is None:
            return
        codes = self.resolve(expr)
        passthrough = (codes is None and isinstance(expr, ast.Name) and expr.id in self._params()
                       and self._in_taker())
        self.sites.append(Site(self.path, line, self._function(), taker, ast.unparse(expr), codes, status,
                               passthrough))

    # ------------------------------------------------------------------ visits

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node)
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "Refusal" and node.attr.isupper():
            self.refusal_attrs.add(node.attr)
        if isinstance(node.value, ast.Name) and node.value.id == "R" and node.attr.isupper():
            self.reason_attrs.add(node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        if (name == "__init__" and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
                and _name(node.func.value.func) == "super" and self.classes):
            # super().__init__(...) in a subclass of a taker: the base's call.
            bases = [_name(b) for b in self.classes[-1].bases]
            name = next((b for b in bases if b in TAKERS), None)
        taker = TAKERS.get(name or "")
        if taker is not None:
            self._call(node, name, taker)  # type: ignore[arg-type]
        self.generic_visit(node)

    def _call(self, node: ast.Call, name: str, taker: Taker) -> None:
        args = list(node.args)
        code: ast.expr | None = None
        status_expr: ast.expr | None = None
        if args and isinstance(args[0], ast.Starred) and taker.code == 0:
            spread = self._tuple_of(args[0].value)  # Invalid(*_INVALID)
            if spread is not None:
                args = [*spread.elts, *args[1:]]
        if len(args) > taker.code:
            code = args[taker.code]
        if taker.status is not None and len(args) > taker.status:
            status_expr = args[taker.status]
        for kw in node.keywords:
            if kw.arg == "code":
                code = kw.value
            if kw.arg == "status":
                status_expr = kw.value
        status = taker.implied
        if status_expr is not None:
            status = status_expr.value if isinstance(status_expr, ast.Constant) else None
        self.add(node.lineno, name, code, status)

    def visit_Dict(self, node: ast.Dict) -> None:
        keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if "code" in keys and "status" in keys and ("detail" in keys or "type" in keys):  # a problem document
            status = keys["status"]
            self.add(node.lineno, "problem document", keys["code"],
                     status.value if isinstance(status, ast.Constant) else None)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if (len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "refusal"
                and isinstance(node.value, ast.Tuple) and len(node.value.elts) >= 2):
            status, code = node.value.elts[0], node.value.elts[1]
            if isinstance(status, ast.Constant):
                self.add(node.lineno, "refusal tuple", code, status.value)
            else:
                self.add(node.lineno, "refusal tuple", node.value, None)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if (self.stack and self.stack[-1].name.endswith(REFUSAL_HELPER_SUFFIX) and isinstance(node.value, ast.Tuple)
                and node.value.elts):
            self.add(node.lineno, f"{self.stack[-1].name} return", node.value.elts[0], 422)
        self.generic_visit(node)


def _assigns(nodes: object) -> dict[str, list[ast.expr]]:
    out: dict[str, list[ast.expr]] = {}
    for n in nodes:  # type: ignore[attr-defined]
        if isinstance(n, ast.Assign):
            for t in n.targets:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, []).append(n.value)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value is not None:
            out.setdefault(n.target.id, []).append(n.value)
    return out


@dataclass(slots=True)
class Scan:
    sites: list[Site]
    refusal_attrs: set[str]
    reason_attrs: set[str]


def files(packages: tuple[str, ...] = PACKAGES) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def scan(packages: tuple[str, ...] = PACKAGES) -> Scan:
    out = Scan([], set(), set())
    for path in files(packages):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        w = _Walker(str(path.relative_to(ROOT)), tree)
        w.visit(tree)
        out.sites += w.sites
        out.refusal_attrs |= w.refusal_attrs
        out.reason_attrs |= w.reason_attrs
    return out
