"""Who may import whom, read from the source: services hand work to Celery through
connections/enqueue.py (by task name), so only tasks modules import the task layer (the
tasks modules and their retry policy, connections/task_retry.py); and services never reach
up into views or the admin."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("connections", "customers", "audit", "portal")
# The HTTP side: views, the admin, the URLconf, and the two JSON/webhook views by name.
HTTP_LAYER = {"views", "admin", "urls", "endpoints", "receiver"}
# The task layer: the tasks modules and the one retry policy they share. An error the policy
# keys on is its domain's (connections.sync.run.Busy), imported by the policy, not from it.
TASK_LAYER = {"tasks", "task_retry"}


def _modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): ast.parse(path.read_text())
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    }


def _imports(tree: ast.Module) -> set[str]:
    """Every module named by an import, `from a import b` counting as both a and a.b."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _task_layer_imports(tree: ast.Module) -> list[str]:
    return sorted(name for name in _imports(tree) if TASK_LAYER & set(name.split(".")))


def _is_service(module: str) -> bool:
    parts = module.split(".")
    return not (parts[-1] == "tasks" or HTTP_LAYER & set(parts) or "templatetags" in parts)


@pytest.mark.parametrize(
    "line",
    [
        "from connections.sync.tasks import sync_resource",
        "from connections.sync import tasks",
        "import connections.sync.tasks",
        "from connections.task_retry import run_retrying",
        "from connections import task_retry",
        "import connections.task_retry",
    ],
)
def test_the_rule_sees_a_task_layer_import(line):
    assert _task_layer_imports(ast.parse(line)) != []


def test_only_tasks_modules_import_the_task_layer():
    offenders = {
        module: names
        for module, tree in _modules().items()
        if not module.endswith(".tasks") and (names := _task_layer_imports(tree))
    }
    assert offenders == {}, (
        "enqueue through connections/enqueue.py (by task name); an error the retry policy "
        "keys on is defined by its domain and imported by connections/task_retry.py"
    )


def test_services_never_import_views_or_the_admin():
    offenders = {
        module: sorted(
            name
            for name in _imports(tree)
            if name.split(".")[0] in APPS and HTTP_LAYER & set(name.split("."))
        )
        for module, tree in _modules().items()
        if _is_service(module)
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_only_connections_admin_imports_connections_admin():
    """Importing connections.admin registers every staff admin (and unregisters Customer's
    to extend it), which works elsewhere only in INSTALLED_APPS order: what admins share is
    config/admin.py, which registers nothing."""

    def is_connections_admin(name: str) -> bool:
        return name.split(".")[:2] == ["connections", "admin"]

    offenders = {
        module: names
        for module, tree in _modules().items()
        if not is_connections_admin(module)
        and (names := sorted(filter(is_connections_admin, _imports(tree))))
    }
    assert offenders == {}
