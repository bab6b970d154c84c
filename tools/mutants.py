"""One-token mutants of a Python module, made on its syntax tree.

Each mutant changes one thing: an arithmetic or boolean operator, a comparison, a constant by
+-1 (a float by +1, a bool flipped), a slice bound dropped or moved by one, min/max, any/all,
argmax/argmin, a condition negated, or one statement removed (a call, an augmented assignment,
a store into a container or attribute, a rebinding of a name, a raise, a return value, a
break/continue swapped). Docstrings, annotations, imports and f-strings (messages) are left
alone. `mutants(source)` lists them; `mutated_tree(source, k)` is the module with mutant k
applied, compiled by the caller with the real file name so tracebacks and line numbers stay
those of the file.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

BINARY = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
          ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.MatMult: ast.Mult, ast.BitAnd: ast.BitOr,
          ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr, ast.LShift: ast.RShift, ast.RShift: ast.LShift}
COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
NAMES = {"min": "max", "max": "min", "any": "all", "all": "any"}
ATTRIBUTES = {"argmax": "argmin", "argmin": "argmax", "max": "min", "min": "max",
              "startswith": "endswith", "endswith": "startswith"}
SKIPPED_FIELDS = ("annotation", "returns", "decorator_list", "type_comment")


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int  # first and last line of the changed expression or statement
    end_line: int
    scope: str  # "Class.method", "function" or "<module>"
    statement: tuple[int, int]  # lines of the statement it is in (a compound one: its first line only)
    kind: str
    original: str
    mutated: str


def _plus_one(node: ast.expr) -> ast.expr:
    return ast.BinOp(left=copy.deepcopy(node), op=ast.Add(), right=ast.Constant(1))


def _with(node: ast.AST, **fields) -> ast.AST:
    new = copy.copy(node)
    for name, value in fields.items():
        setattr(new, name, value)
    return new


def _negated(test: ast.expr) -> ast.expr:
    return ast.UnaryOp(op=ast.Not(), operand=copy.deepcopy(test))


def expression_mutants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement) for every one-token change of this node itself (not its children)."""
    out = []
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        out.append(("operator", _with(node, op=BINARY[type(node.op)]())))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
        out.append(("unary removed", node.operand))
    elif isinstance(node, ast.BoolOp):
        out.append(("boolean", _with(node, op=ast.Or() if isinstance(node.op, ast.And) else ast.And())))
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in COMPARE:
                ops = list(node.ops)
                ops[i] = COMPARE[type(op)]()
                out.append(("comparison", _with(node, ops=ops)))
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            out.append(("constant", ast.Constant(not v)))
        elif isinstance(v, int):
            out += [("constant", ast.Constant(v + 1)), ("constant", ast.Constant(v - 1))]
        elif isinstance(v, float):
            out.append(("constant", ast.Constant(v + 1.0)))
    elif isinstance(node, ast.Slice):
        for bound in ("lower", "upper"):
            value = getattr(node, bound)
            if value is None:
                continue
            out.append(("slice", _with(node, **{bound: None})))
            if isinstance(value, (ast.Name, ast.Call, ast.Attribute, ast.Subscript)):
                out.append(("slice", _with(node, **{bound: _plus_one(value)})))
    elif isinstance(node, ast.Name) and node.id in NAMES and isinstance(node.ctx, ast.Load):
        out.append(("name", _with(node, id=NAMES[node.id])))
    elif isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES and isinstance(node.ctx, ast.Load):
        out.append(("name", _with(node, attr=ATTRIBUTES[node.attr])))
    return out


def statement_mutants(node: ast.stmt, bound: set[str]) -> list[tuple[str, ast.AST]]:
    """Removing a statement whose absence a test could notice. `bound` holds the names already
    bound in the function when `node` runs (its arguments and earlier assignments)."""
    removable = isinstance(node, (ast.Expr, ast.AugAssign, ast.Raise, ast.Delete, ast.Assert))
    if isinstance(node, ast.Assign):
        removable = all(isinstance(t, (ast.Subscript, ast.Attribute)) or (isinstance(t, ast.Name) and t.id in bound)
                        for t in node.targets)
    if removable:
        return [("statement removed", ast.Pass())]
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        return [("return value removed", ast.Return(value=ast.Constant(None)))]
    if isinstance(node, ast.Break):
        return [("statement", ast.Continue())]
    if isinstance(node, ast.Continue):
        return [("statement", ast.Break())]
    return []


def _is_docstring(node: ast.AST, parent: ast.AST) -> bool:
    body = getattr(parent, "body", None)
    return (isinstance(parent, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and bool(body) and body[0] is node and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))


def _names_stored(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


class _Sites(ast.NodeTransformer):
    """Walks the tree in a fixed order, numbering every possible mutant; with `target` set,
    returns the tree with that one applied."""

    def __init__(self, source: str, target: int | None, scopes: tuple[str, ...] | None):
        self.source, self.target, self.scopes = source, target, scopes
        self.found: list[Mutant] = []
        self.scope: list[str] = []
        self.bound: list[set[str]] = [set()]
        self.statements: list[tuple[int, int]] = []
        self.applied = False

    def _in_scope(self) -> bool:
        name = ".".join(self.scope)
        return self.scopes is None or any(name == s or name.startswith(s + ".") for s in self.scopes)

    def _offer(self, node: ast.AST, choices: list[tuple[str, ast.AST]]) -> ast.AST | None:
        for kind, new in choices if self._in_scope() else []:
            original = ast.get_source_segment(self.source, node) or ast.unparse(node)
            if len(self.found) == self.target:
                self.applied = True
                return ast.fix_missing_locations(ast.copy_location(new, node))
            statement = self.statements[-1] if self.statements else (node.lineno, node.lineno)
            self.found.append(Mutant(len(self.found), node.lineno, node.end_lineno or node.lineno,
                                     ".".join(self.scope) or "<module>", statement, kind,
                                     " ".join(original.split())[:120], " ".join(ast.unparse(new).split())[:120]))
        return None

    def visit(self, node: ast.AST) -> ast.AST:
        if self.applied or isinstance(node, (ast.Import, ast.ImportFrom, ast.JoinedStr)):
            return node
        if hasattr(node, "lineno"):
            replaced = self._offer(node, expression_mutants(node))
            if replaced is not None:
                return replaced
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.scope.append(node.name)
            args = node.args if not isinstance(node, ast.ClassDef) else None
            self.bound.append({a.arg for a in ast.walk(args) if isinstance(a, ast.arg)} if args else set())
            node = self._children(node)
            self.scope.pop()
            self.bound.pop()
            return node
        return self._children(node)

    def _children(self, node: ast.AST) -> ast.AST:
        for field, value in ast.iter_fields(node):
            if field in SKIPPED_FIELDS:
                continue
            if isinstance(value, list):
                setattr(node, field, [self._item(node, field, v) for v in value])
            elif isinstance(value, ast.AST):
                replaced = None
                if field == "test" and isinstance(node, (ast.If, ast.While, ast.IfExp)) and not isinstance(value, ast.Compare):
                    replaced = self._offer(value, [("condition", _negated(value))])  # `if not cond`
                setattr(node, field, replaced or self.visit(value))
        return node

    def _item(self, parent: ast.AST, field: str, node):
        if not isinstance(node, ast.AST) or self.applied:
            return node
        if isinstance(parent, ast.comprehension) and field == "ifs" and not isinstance(node, ast.Compare):
            replaced = self._offer(node, [("condition", _negated(node))])  # [x for x in xs if not cond]
            if replaced is not None:
                return replaced
        if isinstance(node, ast.stmt):
            if _is_docstring(node, parent):
                return node
            in_function = len(self.scope) > 0 and not isinstance(parent, ast.ClassDef)
            replaced = self._offer(node, statement_mutants(node, self.bound[-1]) if in_function else [])
            if replaced is not None:
                return replaced
            # A line event of a multi-line statement may come from its first line only (a tuple of
            # constants is one load): the runner counts the statement's lines as the mutant's.
            compound = isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef,
                                         ast.AsyncFunctionDef, ast.ClassDef, ast.AsyncFor, ast.AsyncWith))
            self.statements.append((node.lineno, node.lineno if compound else node.end_lineno))
            result = self.visit(node)
            self.statements.pop()
            self.bound[-1] |= _names_stored(node) if not isinstance(node, ast.FunctionDef) else {node.name}
            return result
        return self.visit(node)


def mutants(source: str, scopes: tuple[str, ...] | None = None) -> list[Mutant]:
    """Every mutant of `source`; with `scopes` ("function" or "Class.method"), those inside them."""
    sites = _Sites(source, None, scopes)
    sites.visit(ast.parse(source))
    return sites.found


def mutated_tree(source: str, index: int, scopes: tuple[str, ...] | None = None) -> ast.Module:
    sites = _Sites(source, index, scopes)
    tree = sites.visit(ast.parse(source))
    if not sites.applied:
        raise IndexError(f"no mutant {index}: the source has {len(sites.found)}")
    return tree
