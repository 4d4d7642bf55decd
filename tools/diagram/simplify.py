"""The picture a reviewer reads: the raw graph with each account's baseline, access roles and people's groups folded
into one node each, and resources that take part in no drawn flow parked in the legend instead of floating in the
boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.diagram.dot import short_name
from tools.diagram.graph import Edge, Graph, Node

# Stacks whose resources are the same in every account and say "this account is governed", not "this is the app".
BASELINE_STACKS = ("Audit", "Guardrails")
# Kept out of the baseline group: the archive buckets (both accounts deliver into them) and the notifications topic,
# its Slack notifier and dead-letter queue (the alarms of every stack go there).
_KEEP_TYPES = {"AWS::S3::Bucket"}
_KEEP_PREFIX = "Notifications"


@dataclass
class Picture:
    """A simplified graph plus what the legend lists: per account, the labels of parked resources."""

    graph: Graph
    parked: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group node id -> labels of its members


def _member_of_baseline(node: Node) -> bool:
    stack = node.stack.split("-", 1)[-1]
    return stack in BASELINE_STACKS and node.type not in _KEEP_TYPES and not node.logical_id.startswith(_KEEP_PREFIX)


def _first_line(label: str) -> str:
    return label.split("\n", 1)[0]


def _fold(graph: Graph, members: dict[str, str], groups: dict[str, Node]) -> Graph:
    """Replace each member node by its group node; edges follow, duplicates and self-loops go."""
    folded = Graph(accounts=dict(graph.accounts), vpcs=dict(graph.vpcs))
    folded.nodes = {k: v for k, v in graph.nodes.items() if k not in members}
    folded.nodes.update(groups)
    seen: set[tuple[str, str]] = set()
    for edge in sorted(graph.edges):
        src, dst = members.get(edge.src, edge.src), members.get(edge.dst, edge.dst)
        if src == dst or (src, dst) in seen:
            continue
        seen.add((src, dst))
        folded.edges.add(Edge(src, dst, edge.label, edge.style))
    return folded


def simplify(graph: Graph) -> Picture:
    """Fold baselines, cross-account access roles and people's groups, then park every node without an edge."""
    members: dict[str, str] = {}
    groups: dict[str, Node] = {}
    listed: dict[str, list[str]] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.id):
        if _member_of_baseline(node):
            group = f"baseline:{node.stage}"
            label = "Account baseline"
        elif node.type == "AWS::IAM::Role" and node.stack.endswith("-Access"):
            group = f"access:{node.stage}"
            label = "Access roles"
        elif node.type == "AWS::IAM::Group":
            # People's groups all assume the same roles: one node and one edge instead of three parallel lines.
            group = f"people:{node.stage}"
            label = "IAM groups"
        else:
            continue
        members[node.id] = group
        groups.setdefault(group, Node(group, node.stage, node.stack, group, "group", label))
        listed.setdefault(group, []).append(_first_line(node.label))
    for group_id, names in listed.items():
        head = groups[group_id].label.split("\n", 1)[0]
        # Lines of at most about 20 characters: these boxes stand in a column of narrow nodes.
        if group_id.startswith("access:"):
            label = f"{head}\n(MFA, from production):\n" + "\n".join(names)
        elif group_id.startswith("people:"):
            label = f"{head} (people):\n" + "\n".join(names)
        else:
            label = f"{head}\n({len(names)} resources): CloudTrail,\nAWS Config, budgets,\nguardrails, findings"
        groups[group_id] = Node(group_id, groups[group_id].stage, "", group_id, "group", label)
    folded = _fold(graph, members, groups)
    connected = {e.src for e in folded.edges} | {e.dst for e in folded.edges}
    parked: dict[str, list[str]] = {}
    for node_id, node in sorted(folded.nodes.items()):
        if node_id not in connected:
            name = short_name(_first_line(node.label))
            parked.setdefault(node.stage, []).append(f"{name} ({node.label.split(chr(10))[-1]})")
            del folded.nodes[node_id]
    return Picture(folded, parked, listed)
