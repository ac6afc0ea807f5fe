"""Which files of ``lambda/mlops_runtime`` a handler ships: the closure of its imports.

Each function's asset holds its handler module and every ``mlops_runtime`` module it imports,
directly or lazily inside functions (found with ``ast``, so nothing is executed; imports under
``if TYPE_CHECKING:`` are for annotations only and do not count), plus the packages'
``__init__.py`` files. No CDK import here: the benchmarks measure the same bundle.

What a module imports and which AWS clients it creates is read once per content: the results are
kept in ``build/lambda-bundles/analysis-v<N>.json`` by the module's SHA-256, so a synthesis parses
only the modules that changed since the last one (parsing every handler's closure was ~0.4 s of
each ``cdk synth``). Change :data:`ANALYSIS_VERSION` when what the analysis finds changes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from .paths import BUILD_DIR, RUNTIME_ROOT

PACKAGE = "mlops_runtime"
ANALYSIS_VERSION = 1
ANALYSIS_CACHE = BUILD_DIR / "lambda-bundles" / f"analysis-v{ANALYSIS_VERSION}.json"


def _module_path(module: str) -> Path | None:
    base = RUNTIME_ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for annotations, never run."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _run_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        children = node.orelse if _type_checking_only(node) else ast.iter_child_nodes(node)
        pending.extend(children)
    return nodes


def _analyse(source: bytes, filename: str) -> tuple[frozenset[str], frozenset[str]]:
    """One parse of a module: the ``mlops_runtime`` modules it imports at run time, and the service
    names passed as the first argument of a ``*client(...)`` call (``boto3.client("sns")``,
    ``self._client("sagemaker")``, ``_new_client("sqs")``) or held by a ``service = "..."``
    attribute that such a call reads."""
    imports: set[str] = set()
    services: set[str] = set()
    for node in _run_time_nodes(ast.parse(source, filename=filename)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            imports.add(node.module)
            imports.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodule imports
        elif isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value \
                and isinstance(node.value.value, str) and any(getattr(t, "id", None) == "service" for t in node.targets):
            services.add(node.value.value)
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0]
            if name.endswith("client") and isinstance(first, ast.Constant) and isinstance(first.value, str):
                services.add(first.value)
    return frozenset(imports), frozenset(services)


class _AnalysisCache:
    """Analyses by module content, read from and written back to :data:`ANALYSIS_CACHE`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            self.entries: dict[str, list[list[str]]] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def analysis(self, path: Path) -> tuple[frozenset[str], frozenset[str]]:
        source = path.read_bytes()
        key = hashlib.sha256(source).hexdigest()
        if key not in self.entries:
            imports, services = _analyse(source, str(path))
            self.entries[key] = [sorted(imports), sorted(services)]
            self.changed = True
        imports, services = self.entries[key]
        return frozenset(imports), frozenset(services)

    def save(self) -> None:
        """Per-process temporary file renamed into place: concurrent synths never read half of it."""
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.entries, sort_keys=True), encoding="utf-8")
        temporary.replace(self.path)
        self.changed = False


@lru_cache(maxsize=1)
def _cache() -> _AnalysisCache:
    return _AnalysisCache(ANALYSIS_CACHE)


@lru_cache(maxsize=None)
def _analysis(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """A module's (imports, client services), its bytes read and hashed once per process."""
    return _cache().analysis(path)


def _imported_modules(path: Path) -> frozenset[str]:
    return _analysis(path)[0]


def _client_services(path: Path) -> frozenset[str]:
    return _analysis(path)[1]


@lru_cache(maxsize=None)
def _bundle(handler_module: str) -> tuple[Path, ...]:
    files = tuple(_closure(handler_module))
    _cache().save()
    return files


def bundle_files(handler_module: str) -> list[Path]:
    """Source files (under ``lambda/``) that ``handler_module`` needs, sorted."""
    return list(_bundle(handler_module))


def _closure(handler_module: str) -> list[Path]:
    pending, seen, files = [handler_module], set(), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_path(module)
        if path is None:
            continue  # a name imported from a module, not a module itself
        files.add(path)
        parts = module.split(".")
        for depth in range(1, len(parts)):  # every enclosing package's __init__.py
            init = _module_path(".".join(parts[:depth]))
            if init is not None:
                files.add(init)
        pending.extend(_imported_modules(path))
    return sorted(files)


@lru_cache(maxsize=None)
def services_called(handler_module: str) -> frozenset[str]:
    """AWS services whose clients the bundle of ``handler_module`` creates (read with ``ast``)."""
    return frozenset().union(*(_client_services(path) for path in _bundle(handler_module)))


def stage_bundle(handler_module: str, build_dir: Path) -> Path:
    """Copy the bundle into ``build_dir/<content hash>/`` and return that folder (an asset path)."""
    files = bundle_files(handler_module)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(RUNTIME_ROOT)).encode())
        digest.update(path.read_bytes())
    target = build_dir / digest.hexdigest()[:16]
    if not target.exists():
        # Per-process staging folder, renamed into place: concurrent synths (test workers) never
        # see half a bundle; if another process won the race, its identical copy stays.
        staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for path in files:
            destination = staging / path.relative_to(RUNTIME_ROOT)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target
