"""The package's shape, read from its source: no import cycles, each layer importing only the layers under it,
every stage and integration built to its package's contract, and no private part of a dependency anywhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gwd"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(path: Path) -> set[str]:
    """What a module imports when it is loaded: module-level statements, not function bodies nor ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Import):
                found.update(alias.name for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
                found.add(statement.module)
                found.update(f"{statement.module}.{alias.name}" for alias in statement.names)
            elif isinstance(statement, ast.If):
                if not _is_type_checking(statement.test):
                    visit(statement.body)
                visit(statement.orelse)
            elif isinstance(statement, ast.Try):
                for block in (statement.body, statement.orelse, statement.finalbody, *(h.body for h in statement.handlers)):
                    visit(block)

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {imported for imported in load_time_imports(path) if imported in modules and imported != name} for name, path in modules.items()}


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "gwd.http.server" in graph and "gwd.http.message" in graph["gwd.http.server"]
    assert "gwd.pipeline.gateway" in graph["gwd.worker"]


def test_no_module_imports_itself_back_at_load_time():
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                walk(imported, path + [imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == [], " ; ".join(" -> ".join(cycle) for cycle in cycles)


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in graph[todo.pop()]:
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_each_layer_knows_nothing_of_the_layers_above_it():
    graph = import_graph()
    for name in graph:
        reached = reaches(graph, name)
        if name.startswith("gwd.http"):
            # HTTP knows nothing of routes and stages (config's value types, such as BackendTls, are data).
            assert not {m for m in reached if m.startswith(("gwd.pipeline", "gwd.worker"))}, name
        if name.startswith("gwd.pipeline"):
            # The pipeline knows nothing of processes.
            assert not reached & {"gwd.worker", "gwd.supervisor", "gwd.privileges", "gwd.sdnotify", "gwd.cli"}, name
        if name.startswith(("gwd.stages", "gwd.integrations", "gwd.authorizers", "gwd.telemetry")):
            # What plugs into the pipeline uses its shared model, never the entry or the chain that runs it.
            assert not reached & {"gwd.pipeline.gateway", "gwd.pipeline.chain", "gwd.worker"}, name
        if name.startswith(("gwd.stages.", "gwd.integrations.")):
            # A stage imports no other stage, an integration no other integration.
            package = name.rsplit(".", 1)[0]
            assert not {m for m in graph[name] if m.startswith(package + ".")}, name
        if name.startswith("gwd.config"):
            # Config is data: reading it starts nothing (TLS files are checked with gwd.tls, templates compiled with gwd.mapping.vtl).
            assert reached <= {m for m in graph if m.startswith("gwd.config")} | {"gwd.tls", "gwd.mapping.vtl"}, name
        if name.startswith("gwd.mapping"):
            # Templates are text in, text out: they know nothing of requests, stages or processes.
            assert not {m for m in reached if m.startswith("gwd.") and not m.startswith("gwd.mapping")}, name
        if name.startswith("gwd.stores"):
            # Stores keep state; a stage turns what they answer into a response.
            assert not {m for m in reached if m.startswith(("gwd.http", "gwd.pipeline", "gwd.stages", "gwd.integrations"))}, name
    # The supervisor knows nothing of HTTP: the worker it runs is handed to it (gwd/cli.py).
    assert not {m for m in reaches(graph, "gwd.supervisor") if m.startswith(("gwd.http", "gwd.pipeline", "gwd.worker"))}


def _builder_parameters(package: str) -> dict[str, list[str]]:
    """Each module's ``build`` parameters, read from the source."""
    found = {}
    for path in sorted((PACKAGE / package).glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name == "build":
                found[path.stem] = [argument.arg for argument in node.args.args]
    return found


def test_every_stage_and_integration_keeps_its_package_contract():
    from gwd.pipeline import chain

    stages = _builder_parameters("stages")
    assert stages and all(parameters == ["route", "stage", "resources", "next_handler"] for parameters in stages.values()), stages
    assert {f"gwd.stages.{name}" for name in stages} == {builder.__module__ for builder in chain.STAGES}
    integrations = _builder_parameters("integrations")
    assert integrations and all(parameters == ["route", "stage", "resources"] for parameters in integrations.values()), integrations
    assert {f"gwd.integrations.{name}" for name in integrations} == {builder.__module__ for builder in chain.INTEGRATIONS.values()}


PRIVATE = re.compile(
    r"\b(aiohttp|httptools|uvloop|prometheus_client|redis|aiocache)\.(_\w+|web_protocol|web_server|http_parser|base_protocol|web_request|client_proto)\b"
)


def test_no_private_part_of_a_dependency_is_used():
    offending = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                offending.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offending == [], "\n".join(offending)
    assert PRIVATE.search("from aiohttp.web_protocol import RequestHandler")  # the pattern finds what it is for
