"""`sml status` drawn as trees, like `kubectl argo rollouts get rollout`.

Per env: release -> models -> active rollouts -> the current stage (step k/N, percent,
time in stage, bake time left, n vs the minimum per arm, every gate with a pass/fail
mark, its estimate, threshold and always-valid p-value) and the last events. Draws the
data of `cli.status_view.status_document`; reads nothing itself. Text is built from
`rich.text.Text` (never markup), and identifiers sit where a line break can only fall
before them, so a tag or version is never cut.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

MARKS = {True: ("✓", "green"), False: ("✗", "red"), None: ("–", "dim")}


def duration(seconds: float | None) -> str:
    """`1h02m`, `3m05s`, `42s` (`-` for None)."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def gate_value(name: str, value: float | None) -> str:
    """A gate's estimate or threshold in its unit: percent points for an excess, ms, a
    duration for the bake time, a count for samples."""
    if value is None:
        return "n/a"
    if name.endswith("_excess"):
        return f"{value * 100:+.2f} pp"
    if name.endswith("_ms"):
        return f"{value:.4g} ms"
    if name == "bake_seconds":
        return duration(value)
    return f"{value:g}"


def _gate_line(gate: dict[str, Any], alpha: float) -> Text:
    mark, style = MARKS[gate["passed"]]
    line = Text.assemble(
        (f"{mark} ", style),
        (gate["name"], "bold"),
        f" {gate_value(gate['name'], gate['estimate'])} {gate['comparison']} "
        f"{gate_value(gate['name'], gate['threshold'])}",
    )
    test = gate["test"]
    if test is not None:
        breach = " BREACH" if test["breach"] else ""
        line.append(
            f"  always-valid p={test['p_value']:.3g} (α={alpha:.2g}){breach}",
            "red" if test["breach"] else "dim",
        )
    return line


def _arms_line(arms: dict[str, dict[str, Any]]) -> Text:
    line = Text("n ")
    for name, arm in arms.items():
        minimum = arm["min_n"]
        enough = None if minimum is None else arm["n"] >= minimum
        mark, style = MARKS[enough]
        shown = f"{arm['n']}" if minimum is None else f"{arm['n']}/{minimum}"
        line.append(f" {name} {shown} ")
        line.append(mark, style)
    return line


def _stages_line(rollout: dict[str, Any]) -> Text:
    line = Text("stages ")
    for stage in rollout["stages"]:
        style = {"done": "green", "current": "bold yellow", "pending": "dim"}[stage["state"]]
        mark = {"done": "✓", "current": "▶", "pending": "·"}[stage["state"]]
        line.append(f" {mark}{stage['percent']:g}%", style)
    return line


def _events_branch(node: Tree, events: list[dict[str, Any]]) -> None:
    branch = node.add(Text("last events", "bold"))
    for e in events:
        when = (e["ts"] or "")[:19].replace("T", " ")
        moved = f" {e['from_status'] or '-'} -> {e['to_status']}" if e["to_status"] else ""
        line = Text.assemble(f"{when} ", (e["kind"], "cyan"), f" by {e['actor']}{moved}")
        if e["reason"]:
            line.append(f": {e['reason']}", "dim")
        branch.add(line)


def _rollout_node(parent: Tree, r: dict[str, Any]) -> None:
    versions = " + ".join(
        f"{name} v{v['candidate']} vs v{v['champion']}" for name, v in r["models"].items()
    )
    head = Text.assemble(
        (f"rollout #{r['id']}", "bold"), (" bundle" if r["bundle"] else ""),
        f" {versions} ", (r["status"], "yellow"), (" forced" if r["forced"] else "", "red"),
    )  # fmt: skip
    node = parent.add(head)
    step = "shadow" if r["step"] is None else f"step {r['step']}/{r['steps']}"
    a = r["analysis"]
    line = Text(f"{step}  {r['percent']:g}%")
    if a is not None:
        line.append(
            f"  in stage {duration(a['seconds_in_stage'])}"
            f"  bake left {duration(a['bake_seconds_left'])}"
        )
    node.add(line)
    node.add(_stages_line(r))
    if a is None:
        node.add(Text(r["skipped"] or "not judged", "dim"))
    else:
        node.add(_arms_line(a["arms"]))
        verdict = a["verdict"]["action"]
        gates = node.add(Text.assemble(("gates", "bold"), f" (verdict now: {verdict})"))
        for gate in a["gates"]:
            gates.add(_gate_line(gate, a["test_alpha"]))
    _events_branch(node, r["events"])


def env_tree(env: dict[str, Any]) -> Tree:
    """One env's tree: release, the models it serves, the active rollouts."""
    release = env["release"]
    if release is None:
        root = Tree(Text.assemble((env["env"], "bold"), "  (nothing released)"))
    else:
        tag = (release["tag"], "bold green")
        root = Tree(Text.assemble((env["env"], "bold"), "  release ", tag))
        root.add(
            Text(
                f"since {(release['created_at'] or '')[:19].replace('T', ' ')} UTC"
                f"  image {release['image_version']}  code {release['code_version']}"
                f"  same versions in: {', '.join(env['also_in']) or '-'}"
            )
        )
    for model in env["models"]:
        line = Text.assemble((model["name"], "bold"), f" v{model['serving'] or '-'}")
        state = release["state"].get(model["name"]) if release else None
        if state:
            line.append(f"  state {state}")
        if model["rollout_id"] is not None:
            line.append(f"  in rollout #{model['rollout_id']}", "yellow")
        root.add(line)
    for rollout in env["rollouts"]:
        _rollout_node(root, rollout)
    return root


def status_tree(document: dict[str, Any]) -> Group:
    """Every env of a status document, one tree each."""
    return Group(*(env_tree(env) for env in document["environments"]))
