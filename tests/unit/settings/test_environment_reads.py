"""Environment variable names exist in one place: a function's settings are one variable,
``MLOPS_SETTINGS`` (read by ``settings_env``), and Powertools' own variables are read by Powertools or
by ``adapters.tracing``. Any other read of ``os.environ`` in the runtime package fails here, with
its file, line and variable, until it goes through a settings model or is explained below."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[3] / "lambda" / "mlops_runtime"

# file (relative to the package) -> the variables it may read, and why.
ALLOWED: dict[str, tuple[set[str], str]] = {
    "settings_env.py": ({"*"}, "the one reader of MLOPS_SETTINGS (a function's settings model, as JSON)"),
    "adapters/tracing.py": ({"POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_TRACE_DISABLED"},
                            "Powertools' own variables: the metric namespace and the tracing switch"),
    "settings/base.py": ({"PYDANTIC_DISABLE_PLUGINS"}, "set (if unset) before pydantic loads: skips plugin discovery"),
    "domain/validation.py": ({"PYDANTIC_DISABLE_PLUGINS"}, "as settings/base.py, for the domain specs' parsers"),
    "search/bulk.py": ({"LOG_LEVEL"}, "the processing job's log level (the variable Lambda and Powertools use)"),
}


def _constants(tree: ast.Module) -> dict[str, str]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
        and node.value.id == "os"


def _name(argument: ast.AST | None, constants: dict[str, str]) -> str:
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.Name):
        return constants.get(argument.id, argument.id)
    return "*"


def environment_reads(path: Path) -> list[tuple[int, str]]:
    """``(line, variable)`` of every use of ``os.environ`` / ``os.getenv`` in ``path`` (``*``: the whole
    environment, or a name not known at import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = _constants(tree)
    reads, keyed = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _is_environ(node.func.value):  # os.environ.get / setdefault / pop ...
                reads.append((node.lineno, _name(node.args[0] if node.args else None, constants)))
                keyed.add(id(node.func.value))
            elif node.func.attr == "getenv" and isinstance(node.func.value, ast.Name) and node.func.value.id == "os":
                reads.append((node.lineno, _name(node.args[0] if node.args else None, constants)))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            reads.append((node.lineno, _name(node.slice, constants)))
            keyed.add(id(node.value))
    for node in ast.walk(tree):  # the environment as a whole (dict(os.environ), os.environ if ... else ...)
        if _is_environ(node) and id(node) not in keyed:
            reads.append((node.lineno, "*"))
    return sorted(reads)


def _allowed(relative: str, variable: str) -> bool:
    names = ALLOWED.get(relative, (set(), ""))[0]
    return "*" in names or variable in names


def test_the_runtime_reads_the_environment_only_through_the_settings_and_powertools():
    unexpected = [f"{path.relative_to(RUNTIME)}:{line}: {variable}"
                  for path in sorted(RUNTIME.rglob("*.py"))
                  for line, variable in environment_reads(path)
                  if not _allowed(path.relative_to(RUNTIME).as_posix(), variable)]
    assert not unexpected, ("environment reads outside the settings models (put the value in the function's "
                            "settings model, mlops_runtime/settings/):\n" + "\n".join(unexpected))


def test_every_allowed_read_still_exists():
    """An explained exception that nothing reads any more fails: the list only shrinks."""
    stale = []
    for relative, (names, _) in ALLOWED.items():
        read = {variable for _, variable in environment_reads(RUNTIME / relative)}
        stale += [f"{relative}: {name}" for name in names if (name == "*" and not read) or (name != "*" and name not in read)]
    assert not stale, "no longer read, remove from the allowlist:\n" + "\n".join(stale)


def test_the_scan_sees_each_kind_of_read(tmp_path):
    source = tmp_path / "module.py"
    source.write_text('import os\nNAME = "X"\na = os.environ.get(NAME)\nb = os.environ["Y"]\nc = os.getenv("Z")\n'
                      'd = dict(os.environ)\nos.environ.setdefault("W", "1")\n')
    assert environment_reads(source) == [(3, "X"), (4, "Y"), (5, "Z"), (6, "*"), (7, "W")]
