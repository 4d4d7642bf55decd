"""Graphviz DOT source for a :class:`~tools.diagram.graph.Graph`, and rendering through the ``dot`` binary."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tools.diagram.graph import Edge, Graph, Node

# Fill colours by resource family, so storage, compute and messaging read apart at a glance.
_FILL: dict[str, str] = {
    "AWS::S3::Bucket": "#e8f3e0",
    "AWS::DynamoDB::Table": "#e0ecf8",
    "AWS::SQS::Queue": "#fcefd9",
    "AWS::SNS::Topic": "#fcefd9",
    "AWS::Lambda::Function": "#fde3cf",
    "AWS::ECS::Service": "#fde3cf",
    "AWS::AutoScaling::AutoScalingGroup": "#fde3cf",
    "AWS::EC2::Instance": "#fde3cf",
    "AWS::IAM::Role": "#f6e0e0",
    "AWS::IAM::Group": "#f6e0e0",
    "account": "#f6e0e0",
    "group": "#e9e4f5",
}
_SHAPE: dict[str, str] = {
    "AWS::S3::Bucket": "cylinder",
    "AWS::DynamoDB::Table": "cylinder",
    "account": "folder",
    "group": "box3d",
}
# Pixels per inch of the PNG: 96, the browser's own, so that the PNG and the SVG show at the same size.
PNG_DPI = 96
# What each edge style means; the legend draws one sample of each.
EDGE_STYLES: tuple[tuple[str, str], ...] = (
    ("solid", "data flow: notification, trigger, read/write grant"),
    ("dashed", "failures and access: redrive, undelivered events, assume role"),
    ("dotted", "support: capacity, alarm, access logs"),
    ("bold", "VPC peering"),
)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*|[a-z0-9]+")
WRAP = 16


def wrap_name(name: str, width: int = WRAP) -> str:
    """A long CamelCase construct name on several lines at word boundaries, so that nodes stay narrow."""
    if len(name) <= width:
        return name
    if "/" in name:  # a construct path: one level a line, each wrapped on its own
        return "\n".join(wrap_name(part, width) for part in name.split("/"))
    if not name.isalnum():
        return name
    lines = [""]
    for word in _WORD.findall(name):
        if lines[-1] and len(lines[-1]) + len(word) > width:
            lines.append(word)
        else:
            lines[-1] += word
    return "\n".join(lines)


# A construct path's last level when it only repeats the kind shown under the name ("Uploads/Bucket", S3 bucket).
_GENERIC_LEAF = {"Bucket", "Queue", "Function", "Topic", "Table", "Service", "Instance", "Api", "Role", "Dashboard"}


def short_name(name: str) -> str:
    """The construct path without a last level that only repeats the node's kind."""
    head, _, leaf = name.rpartition("/")
    return head if head and leaf in _GENERIC_LEAF else name


def _node(node: Node, indent: str) -> str:
    fill = _FILL.get(node.type, "#ffffff")
    shape = _SHAPE.get(node.type, "box")
    first, _, rest = node.label.partition("\n")
    label = wrap_name(short_name(first)) + ("\n" + rest if rest else "")
    # box3d draws its depth inside the margin: a little more room keeps the first line off the edge.
    margin = ', margin="0.1,0.07"' if shape == "box3d" else ""
    return f"{indent}{_quote(node.id)} [label={_quote(label)}, shape={shape}, fillcolor={_quote(fill)}{margin}];"


def _cluster_id(text: str) -> str:
    return "cluster_" + "".join(c if c.isalnum() else "_" for c in text)


def _wrap_list(items: Sequence[str], width: int) -> list[str]:
    """Comma-separated items on lines of at most ``width`` characters (an item longer than that gets its own)."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + len(item) + 2 > width:
            lines[-1] += ","
            lines.append(item)
        else:
            lines[-1] += (", " if lines[-1] else "") + item
    return lines


def _legend(parked: Mapping[str, Sequence[str]]) -> list[str]:
    """Edge styles, and the resources that take part in no drawn flow (so that none floats unexplained)."""
    lines = ["  subgraph cluster_legend {", '    label="Legend"; style=dashed; fontsize=10;']
    for index, (style, meaning) in enumerate(EDGE_STYLES):
        a, b = f"legend_{index}a", f"legend_{index}b"
        # Each sample on one rank, the samples stacked: the legend is as narrow as its longest meaning.
        point = '[shape=point, width=0.05, label=""]'
        lines += [
            # group: the samples' left ends in one column, so that they read as a list.
            f'    {{ rank=same; "{a}" {point[:-1]}, group=legend]; "{b}" {point}; }}',
            f'    "{a}" -> "{b}" [label={_quote(meaning)}, style={style}];',
        ]
        if index:
            lines.append(f'    "legend_{index - 1}a" -> "{a}" [style=invis, minlen=1];')
    if parked:
        text = "Also deployed, no drawn flow:\\l" + "".join(
            "\\l".join(_wrap_list([f"{stage}: {items[0]}", *items[1:]], 60)) + "\\l"
            for stage, items in sorted(parked.items())
        )
        lines += [
            f'    "legend_parked" [shape=note, fillcolor=white, fontsize=9, label="{text}"];',
            f'    "legend_{len(EDGE_STYLES) - 1}a" -> "legend_parked" [style=invis];',
        ]
    lines.append("  }")
    return lines


def to_dot(graph: Graph, title: str = "mlbase", parked: Mapping[str, Sequence[str]] | None = None) -> str:
    """DOT source: one box per account (stage), one per VPC inside it, then the edges; with ``parked`` a legend.

    Drawn top to bottom with the account boxes stacked, so that the picture fits the width of a pull-request page.
    """
    stage_of = {n.id: n.stage for n in graph.nodes.values()} | {v.id: v.stage for v in graph.vpcs.values()}
    stages = sorted(set(stage_of.values()) - {""} | set(graph.accounts))
    order = ["", *stack_order(graph.edges, stage_of, stages)]
    groups = {n.id for n in graph.nodes.values() if n.type == "group"}
    ranking = [e for e in sorted(graph.edges) if _ranks(e, stage_of, order, groups, graph.edges)]
    feet = _feet(stage_of, order, ranking, groups)
    lines = [
        "digraph mlbase {",
        f"  graph [rankdir=TB, compound=true, fontname=Helvetica, fontsize=12, label={_quote(title)}, labelloc=t,"
        " newrank=true, nodesep=0.1, ranksep=0.25];",
        '  node [style="rounded,filled", fontname=Helvetica, fontsize=9, margin="0.06,0.03"];',
        "  edge [fontname=Helvetica, fontsize=8];",
    ]
    account_fill, vpc_fill = _quote("#f4f6fa"), _quote("#eeeeee")
    for stage in ["", *stages]:
        inner = [n for n in graph.nodes.values() if n.stage == stage]
        vpcs = [v for v in graph.vpcs.values() if v.stage == stage]
        if stage:
            account = graph.accounts.get(stage, "")
            lines += [
                f"  subgraph {_cluster_id(stage)} {{",
                f"    label={_quote(f'{stage} account {account}'.strip())}; style=filled; fillcolor={account_fill};",
            ]
        indent = "    " if stage else "  "
        for vpc in sorted(vpcs, key=lambda v: v.id):
            lines += [
                f"{indent}subgraph {_cluster_id(vpc.id)} {{",
                f"{indent}  label={_quote('VPC ' + vpc.label.replace(chr(10), ' '))}; style=dashed; fillcolor=white;",
                f"{indent}  {_quote(vpc.id)} [label={_quote(vpc.label)}, shape=component, fillcolor={vpc_fill}];",
            ]
            lines += [_node(n, indent + "  ") for n in sorted(inner, key=lambda n: n.id) if n.vpc == vpc.id]
            lines.append(f"{indent}}}")
        lines += [_node(n, indent) for n in sorted(inner, key=lambda n: n.id) if n.vpc is None]
        if feet.get(stage, "").startswith("layout_"):
            lines.append(f'{indent}{_quote(feet[stage])} [shape=point, style=invis, width=0, label=""];')
        if stage:
            lines.append("  }")
    for edge in sorted(graph.edges):
        # xlabel: placed after layout, so labels do not add ranks and the picture stays narrow.
        attrs = f"xlabel={_quote(edge.label)}"
        if edge.style != "solid":
            attrs += f", style={edge.style}"
        if stage_of.get(edge.src) != stage_of.get(edge.dst):
            # Across accounts: the line bends rather than pull one account's box sideways against the other.
            attrs += ", weight=0"
        if edge not in ranking:
            attrs += ", constraint=false"
        lines.append(f"  {_quote(edge.src)} -> {_quote(edge.dst)} [{attrs}];")
    lines += _stacking(stage_of, order, ranking, feet, ["legend_0a"] if parked is not None else [])
    if parked is not None:
        lines += _legend(parked)
    lines.append("}")
    return "\n".join(lines) + "\n"


def stack_order(edges: Iterable[Edge], stage_of: Mapping[str, str], stages: Sequence[str]) -> list[str]:
    """Accounts from top to bottom: those that more cross-account edges leave than enter first (research delivers
    its trail to the production archive), so that most such edges point down and none needs a long detour."""
    balance = dict.fromkeys(stages, 0)
    for edge in edges:
        src, dst = stage_of.get(edge.src, ""), stage_of.get(edge.dst, "")
        if src != dst and src in balance and dst in balance:
            balance[src] -= 1
            balance[dst] += 1
    return sorted(stages, key=lambda stage: (balance[stage], stage))


def _ranks(edge: Edge, stage_of: Mapping[str, str], order: Sequence[str], groups: set[str], edges: set[Edge]) -> bool:
    """Whether an edge ranks its ends (its head one rank or more below its tail); the others are drawn, not obeyed."""
    src, dst = stage_of.get(edge.src, ""), stage_of.get(edge.dst, "")
    if order.index(src) > order.index(dst):
        return False  # up to an account drawn above: against the stacking
    if edge.src in groups and src == dst:
        # A baseline stands beside its account's resources, not above them. Its lines to the account below then
        # pull it to the foot of its box, and the archive it delivers to can sit at the top of its own.
        return False
    # Both ways (the archive buckets put into each other): side by side.
    return not any(e.src == edge.dst and e.dst == edge.src for e in edges)


def _feet(
    stage_of: Mapping[str, str], order: Sequence[str], ranking: Sequence[Edge], groups: set[str]
) -> dict[str, str]:
    """Per account, the node at the foot of its box: its baseline when that delivers to an account below, else an
    invisible point."""
    feet = {}
    for stage in order:
        if not stage or not any(s == stage for s in stage_of.values()):
            continue
        down = sorted(e.src for e in ranking if e.src in groups and stage_of.get(e.src) == stage != stage_of.get(e.dst))
        feet[stage] = down[0] if down else f"layout_foot_{stage}"
    return feet


def _stacking(
    stage_of: Mapping[str, str],
    order: Sequence[str],
    ranking: Sequence[Edge],
    feet: Mapping[str, str],
    legend: Sequence[str],
) -> list[str]:
    """Invisible edges that put each account's box below the one before (accountless nodes above all, the legend
    below) instead of beside it: a box's lowest nodes lead to its foot, the foot to the next box's highest nodes.
    Few and short edges, as an invisible edge still takes room in each rank it crosses; weight 0, they pull nothing.
    """
    inner = [(e.src, e.dst) for e in ranking if stage_of.get(e.src) == stage_of.get(e.dst)]
    # The lowest nodes are those from which no ranking edge leads on, or that reach none of those (a cycle, like the
    # topic, its notifier and the notifier's dead-letter queue); the highest likewise, the other way round.
    lowest = _unreached(set(stage_of), [(b, a) for a, b in inner])
    highest = _unreached(set(stage_of), inner)
    lines: list[str] = []
    above: list[str] = []  # accountless nodes stand above the first box themselves, without a foot
    for stage in order:
        foot = feet.get(stage)
        members = sorted(n for n, s in stage_of.items() if s == stage and n != foot)
        if foot is None:
            above += members
            continue
        for top in above:
            lines += [f"  {_quote(top)} -> {_quote(n)} [style=invis, weight=0];" for n in members if n in highest]
        lines += [f"  {_quote(n)} -> {_quote(foot)} [style=invis, weight=0];" for n in members if n in lowest]
        above = [foot]
    for top in above:
        lines += [f"  {_quote(top)} -> {_quote(n)} [style=invis, weight=0];" for n in legend]
    return lines


def _unreached(nodes: set[str], edges: Sequence[tuple[str, str]]) -> set[str]:
    """Nodes no edge enters, plus those that no path from such a node reaches."""
    heads = {b for _, b in edges}
    reached = nodes - heads
    frontier = list(reached)
    following: dict[str, list[str]] = {}
    for a, b in edges:
        following.setdefault(a, []).append(b)
    while frontier:
        for node in following.get(frontier.pop(), []):
            if node not in reached:
                reached.add(node)
                frontier.append(node)
    return (nodes - heads) | (nodes - reached)


def dot_binary() -> str | None:
    """Path of graphviz's ``dot``, or None when graphviz is not installed."""
    return shutil.which("dot")


def render(source: str, prefix: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Run ``dot`` once per format; writes ``<prefix>.<format>`` and returns the paths."""
    binary = dot_binary()
    if binary is None:
        raise FileNotFoundError("graphviz `dot` not found: apt-get install -y graphviz")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = prefix.with_name(f"{prefix.name}.{fmt}")
        extra = [f"-Gdpi={PNG_DPI}"] if fmt == "png" else []
        subprocess.run(
            [binary, f"-T{fmt}", *extra, "-o", str(target)], input=source, text=True, check=True, timeout=120
        )
        written.append(target)
    return written
