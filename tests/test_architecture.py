"""The layering and room sizes of docs/architecture.md, enforced on the source.

Every check parses files with `ast` (tests/architecture_rules.py) and imports no project
module, so the file runs in about a second. A failure lists every offender as `path:line`
with what is wrong, so a reader sees what to move or split.
"""

from __future__ import annotations

import ast
import re

from tests.architecture_rules import (
    OURS,
    ROOT,
    flow_functions,
    functions,
    getattr_names,
    imported_names,
    protocol_members,
    size,
    sources,
    strings,
    tree,
    under,
    where,
)

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # also the limit of a @flow body
SIZED_LAYERS = ("core", "serving", "cli", "flows", "tasks")

# {"path" or "path::Qualified.name": "why it stays"}; the closing note of issue 9 names each.
SIZE_ALLOWLIST: dict[str, str] = {}

# What each layer must never import, at any depth ("prefect" also means prefect_*).
FORBIDDEN_IMPORTS = {
    "config": ("prefect",),
    "core": ("prefect", "flows", "tasks", "serving", "cli", "models"),
    "models": ("prefect",),
    "serving": ("prefect", "flows", "tasks"),
    "tasks": ("flows", "cli"),
    "flows": ("cli", "serving"),
}
MODELS_MAY_IMPORT = ("models", "core.errors")  # of ours; models/ is a leaf
FLOW_FORBIDDEN_LIBRARIES = ("sqlalchemy", "pandas", "numpy", "sklearn")  # that work is a task's
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET)\b", re.DOTALL)


def report(title: str, offenders: list[str]) -> str:
    """The failure message: a title, then one offender per line."""
    return f"{title} ({len(offenders)}):\n" + "\n".join(offenders)


def test_layers_import_only_the_layers_below() -> None:
    offenders: dict[str, str] = {}  # one line per import statement: its first wrong name
    for layer, forbidden in FORBIDDEN_IMPORTS.items():
        for path in sources(layer):
            for node, name in imported_names(path):
                wrong = any(under(name, package) for package in forbidden)
                if layer == "models" and name.split(".")[0] in OURS:
                    wrong = wrong or not any(under(name, p) for p in MODELS_MAY_IMPORT)
                if wrong:
                    offenders.setdefault(where(path, node), f"{where(path, node)} imports {name}")
    assert not offenders, report("imports against the layering", list(offenders.values()))


def test_flows_only_sequence_tasks() -> None:
    offenders = []
    for path in sources("flows"):
        offenders += [
            f"{where(path, node)} imports {name}"
            for node, name in imported_names(path)
            if any(under(name, library) for library in FLOW_FORBIDDEN_LIBRARIES)
        ]
        offenders += [f"{where(path, node)} SQL text" for node, s in strings(path) if SQL.search(s)]
        offenders += [
            f"{where(path, node)} `match` decision"
            for node in ast.walk(tree(path))
            if isinstance(node, ast.Match)
        ]
        offenders += [
            f"{where(path, flow)} @flow {flow.name}: {size(flow)} lines (max {MAX_FUNCTION_LINES})"
            for flow in flow_functions(path)
            if size(flow) > MAX_FUNCTION_LINES
        ]
    assert not offenders, report(
        "flows hold work or decisions that belong in tasks/core", offenders
    )


def test_modules_and_functions_stay_small() -> None:
    offenders = []
    for path in sources(*SIZED_LAYERS):
        key = str(path.relative_to(ROOT))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and key not in SIZE_ALLOWLIST:
            offenders.append(f"{where(path)} module: {lines} lines (max {MAX_MODULE_LINES})")
        for name, node in functions(tree(path).body):
            if size(node) > MAX_FUNCTION_LINES and f"{key}::{name}" not in SIZE_ALLOWLIST:
                offenders.append(f"{where(path, node)} {name}: {size(node)} lines")
    assert not offenders, report("split by responsibility, or allowlist with a reason", offenders)


def test_no_getattr_probing_of_our_protocols() -> None:
    members = protocol_members("core", "serving")
    assert "version_by_alias" in members  # the collector does see the ledger's AliasRegistry
    offenders = [
        f"{where(path, node)} getattr(..., {name!r}) probes {members[name]}"
        for path in sources(*SIZED_LAYERS)
        for node, name in getattr_names(path)
        if name in members
    ]
    assert not offenders, report("call the protocol; if it lacks the member, add it", offenders)


def test_forced_is_a_field_not_text_in_a_reason() -> None:
    offenders = [
        f"{where(path, node)} {text.strip()[:60]!r}"
        for path in sources("core", "cli")
        for node, text in strings(path)
        if "[FORCED" in text
    ]
    assert not offenders, report('"[FORCED" in text; read or write the forced field', offenders)
