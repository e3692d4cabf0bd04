"""Short functions (issue 13): no function in skinray/ runs over MAX_LINES lines, so each reads
as named steps. Declarative tables are the exception, each listed here with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import skinray

MAX_LINES = 50
PACKAGE = Path(skinray.__file__).parent

# "module.py:qualified.name" -> why it may be longer: only tables that declare, with no logic.
ALLOWED = {
    # the CLI's argparse table: one add_parser/add_argument call per subcommand and flag
    "cli.py:build_parser": "declarative table of subcommands and flags",
}


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, first line, number of lines) of every function, methods and nested ones
    included (a decorator's lines are not counted)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node.lineno, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _long_functions() -> dict[str, str]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for name, line, length in _functions(ast.parse(path.read_text(), str(path))):
            if length > MAX_LINES:
                found[f"{module}:{name}"] = f"skinray/{module}:{line} {name} is {length} lines"
    return found


def test_no_function_in_skinray_is_longer_than_50_lines():
    too_long = [where for key, where in _long_functions().items() if key not in ALLOWED]
    assert not too_long, (f"over {MAX_LINES} lines (split into named steps, or add a declarative "
                          f"table to ALLOWED with its reason): " + "; ".join(too_long))


def test_every_allowed_table_still_exists_and_is_long():
    """An entry left in ALLOWED after its function got short (or renamed) would excuse the next
    long function of that name unseen."""
    assert sorted(ALLOWED) == sorted(k for k in _long_functions() if k in ALLOWED)


def test_the_check_counts_a_long_method_and_a_short_one():
    source = "class A:\n    def long(self):\n" + "        x = 1\n" * MAX_LINES + "    def short(self):\n        pass\n"
    lengths = {name: length for name, _, length in _functions(ast.parse(source))}
    assert lengths == {"A.long": MAX_LINES + 1, "A.short": 2}
