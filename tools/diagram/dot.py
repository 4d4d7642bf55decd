"""Graphviz DOT source for a :class:`~tools.diagram.graph.Graph`, and rendering through the ``dot`` binary."""

from __future__ import annotations

import shutil
import subprocess
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
}
_SHAPE: dict[str, str] = {"AWS::S3::Bucket": "cylinder", "AWS::DynamoDB::Table": "cylinder", "account": "folder"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(node: Node, indent: str) -> str:
    fill = _FILL.get(node.type, "#ffffff")
    shape = _SHAPE.get(node.type, "box")
    return f"{indent}{_quote(node.id)} [label={_quote(node.label)}, shape={shape}, fillcolor={_quote(fill)}];"


def _cluster_id(text: str) -> str:
    return "cluster_" + "".join(c if c.isalnum() else "_" for c in text)


def to_dot(graph: Graph, title: str = "mlbase") -> str:
    """DOT source: one box per account (stage), one per VPC inside it, then the edges."""
    lines = [
        "digraph mlbase {",
        f"  graph [rankdir=LR, compound=true, fontname=Helvetica, fontsize=12, label={_quote(title)}, labelloc=t];",
        '  node [style="rounded,filled", fontname=Helvetica, fontsize=10];',
        "  edge [fontname=Helvetica, fontsize=9];",
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
    for edge in sorted(graph.edges):
        attrs = f"label={_quote(edge.label)}"
        if edge.style != "solid":
            attrs += f", style={edge.style}"
        lines.append(f"  {_quote(edge.src)} -> {_quote(edge.dst)} [{attrs}];")
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
