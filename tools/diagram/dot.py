"""Graphviz DOT source for a :class:`~tools.diagram.graph.Graph`, and rendering through the ``dot`` binary."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.diagram.graph import Graph, Node

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


def _node(node: Node, indent: str) -> str:
    fill = _FILL.get(node.type, "#ffffff")
    shape = _SHAPE.get(node.type, "box")
    first, _, rest = node.label.partition("\n")
    label = wrap_name(first) + ("\n" + rest if rest else "")
    return f"{indent}{_quote(node.id)} [label={_quote(label)}, shape={shape}, fillcolor={_quote(fill)}];"


def _cluster_id(text: str) -> str:
    return "cluster_" + "".join(c if c.isalnum() else "_" for c in text)


def _legend(parked: Mapping[str, Sequence[str]]) -> list[str]:
    """Edge styles, and the resources that take part in no drawn flow (so that none floats unexplained)."""
    lines = ["  subgraph cluster_legend {", '    label="Legend"; style=dashed; fontsize=10;']
    for index, (style, meaning) in enumerate(EDGE_STYLES):
        a, b = f"legend_{index}a", f"legend_{index}b"
        lines += [
            f'    "{a}" [shape=point, width=0.05, label=""]; "{b}" [shape=point, width=0.05, label=""];',
            f'    "{a}" -> "{b}" [label={_quote(meaning)}, style={style}];',
        ]
    if parked:
        text = "Also deployed, no drawn flow:\\l" + "".join(
            f"{stage}: {', '.join(items)}\\l" for stage, items in sorted(parked.items())
        )
        lines.append(f'    "legend_parked" [shape=note, fillcolor=white, fontsize=9, label="{text}"];')
    lines.append("  }")
    return lines


def to_dot(graph: Graph, title: str = "mlbase", parked: Mapping[str, Sequence[str]] | None = None) -> str:
    """DOT source: one box per account (stage), one per VPC inside it, then the edges; with ``parked`` a legend."""
    lines = [
        "digraph mlbase {",
        f"  graph [rankdir=LR, compound=true, fontname=Helvetica, fontsize=12, label={_quote(title)}, labelloc=t,"
        " newrank=true, nodesep=0.2, ranksep=0.3];",
        '  node [style="rounded,filled", fontname=Helvetica, fontsize=9, margin="0.08,0.03"];',
        "  edge [fontname=Helvetica, fontsize=8];",
    ]
    stages = sorted(
        {n.stage for n in graph.nodes.values()} | {v.stage for v in graph.vpcs.values()} | set(graph.accounts)
    )
    account_fill, vpc_fill = _quote("#f4f6fa"), _quote("#eeeeee")
    for stage in stages:
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
        if stage:
            lines.append("  }")
    stage_of = {n.id: n.stage for n in graph.nodes.values()} | {v.id: v.stage for v in graph.vpcs.values()}
    folded = {n.id for n in graph.nodes.values() if n.type in ("group", "account")}
    for edge in sorted(graph.edges):
        # xlabel: placed after layout, so labels do not add ranks and the picture stays narrow.
        attrs = f"xlabel={_quote(edge.label)}"
        if edge.style != "solid":
            attrs += f", style={edge.style}"
        if stage_of.get(edge.src) != stage_of.get(edge.dst) or {edge.src, edge.dst} & folded:
            # Across accounts, and from the folded baseline and access groups: routed around the data flow instead
            # of stretching it, so that the picture stays narrow.
            attrs += ", constraint=false"
        lines.append(f"  {_quote(edge.src)} -> {_quote(edge.dst)} [{attrs}];")
    if parked is not None:
        lines += _legend(parked)
    lines.append("}")
    return "\n".join(lines) + "\n"


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
        extra = ["-Gdpi=80"] if fmt == "png" else []
        subprocess.run(
            [binary, f"-T{fmt}", *extra, "-o", str(target)], input=source, text=True, check=True, timeout=120
        )
        written.append(target)
    return written
