"""The platform as a graph, read from synthesized templates rather than from a hand-kept list.

Nodes are the resources a newcomer needs to see (buckets, queues, tables, topics, functions, services, fleets,
instances, trails, cross-account roles); VPCs become boxes that hold what runs inside them. Edges come from the
templates themselves: bucket notifications, dead-letter redrive, subscriptions and event targets, and the IAM
grants of each function's or task's role (a role allowed ``sqs:ReceiveMessage`` on a queue consumes from it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tools.review.assembly import StackTemplate

# Resource type -> (short kind shown in the node, node style key).
MAIN_TYPES: dict[str, str] = {
    "AWS::S3::Bucket": "S3 bucket",
    "AWS::SQS::Queue": "SQS queue",
    "AWS::DynamoDB::Table": "DynamoDB table",
    "AWS::SNS::Topic": "SNS topic",
    "AWS::Lambda::Function": "Lambda",
    "AWS::ApiGateway::RestApi": "API Gateway",
    "AWS::ApiGatewayV2::Api": "API Gateway",
    "AWS::ECS::Service": "ECS service",
    "AWS::AutoScaling::AutoScalingGroup": "Auto Scaling group",
    "AWS::EC2::Instance": "EC2 instance",
    "AWS::ImageBuilder::Image": "AMI",
    "AWS::CloudTrail::Trail": "CloudTrail",
    "AWS::Config::ConfigurationRecorder": "AWS Config",
    "AWS::Config::ConfigurationAggregator": "Config aggregator",
    "AWS::Organizations::Policy": "SCP",
    "AWS::Budgets::Budget": "Budget",
    "AWS::Events::Rule": "EventBridge rule",
    "AWS::Scheduler::Schedule": "Schedule",
    "AWS::StepFunctions::StateMachine": "Step Functions",
    "AWS::CloudWatch::Dashboard": "Dashboard",
    "AWS::IAM::Group": "IAM group",
    "AWS::IAM::Role": "IAM role",
}
# Functions the CDK adds to implement custom resources: plumbing, not architecture.
_INTERNAL_FUNCTION = re.compile(
    r"^(BucketNotificationsHandler|AWS679f53fac002430cb0da5b7982bd2287|LogRetentionaae0aa3c|SingletonLambda)"
    r"|CustomResourceProvider|DrainECSHook|Provider(framework|Waiter)|AutoDeleteObjects"
)
_HASH_SUFFIX = re.compile(r"(?<=.)[0-9A-F]{8}$")
_ACCOUNT = re.compile(r"(?<![0-9])([0-9]{12})(?![0-9])")

# (service prefix, action prefix) -> (direction, label): "in" means data flows from the resource to the actor.
_ACCESS: tuple[tuple[str, str, str, str], ...] = (
    ("sqs", "ReceiveMessage", "in", "consume"),
    ("sqs", "SendMessage", "out", "send"),
    ("s3", "PutObject", "out", "put"),
    ("s3", "GetObject", "in", "get"),
    ("dynamodb", "PutItem", "out", "write"),
    ("dynamodb", "UpdateItem", "out", "write"),
    ("dynamodb", "BatchWriteItem", "out", "write"),
    ("dynamodb", "GetItem", "in", "read"),
    ("dynamodb", "Query", "in", "read"),
    ("sns", "Publish", "out", "publish"),
    ("lambda", "InvokeFunction", "out", "invoke"),
    ("states", "StartExecution", "out", "start"),
    ("ec2", "StopInstances", "out", "start/stop"),
    ("sts", "AssumeRole", "out", "assume role"),
)


@dataclass(frozen=True)
class Node:
    """A drawn resource; ``id`` is ``<stack>/<logical id>``."""

    id: str
    stage: str
    stack: str
    logical_id: str
    type: str
    label: str
    vpc: str | None = None


@dataclass(frozen=True)
class Vpc:
    id: str
    stage: str
    label: str


@dataclass(frozen=True, order=True)
class Edge:
    src: str
    dst: str
    label: str
    style: str = "solid"


@dataclass
class Graph:
    """Accounts (stages), VPCs, nodes and edges of the whole platform."""

    accounts: dict[str, str] = field(default_factory=dict)
    vpcs: dict[str, Vpc] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[Edge] = field(default_factory=set)

    def add_edge(self, src: str, dst: str, label: str, style: str = "solid") -> None:
        if src != dst and src in self._ends() and dst in self._ends():
            self.edges.add(Edge(src, dst, label, style))

    def _ends(self) -> set[str]:
        return set(self.nodes) | set(self.vpcs)


def _refs(value: Any) -> Iterator[tuple[str, str | None]]:
    """``(logical id, None)`` for Ref/GetAtt/Sub references; ``(export name, "import")`` for Fn::ImportValue and
    ``("<stack>:<output>", "import")`` for Fn::GetStackOutput (cross-stack references)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                yield arg, None
                return
            if fn == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".")[0]
                yield str(target), None
                return
            if fn == "Fn::ImportValue" and isinstance(arg, str):
                yield arg, "import"
                return
            if fn == "Fn::GetStackOutput" and isinstance(arg, dict):
                yield f"{arg.get('StackName')}:{arg.get('OutputName')}", "import"
                return
            if fn == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                for name in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", str(text)):
                    yield name, None
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


class _Index:
    """All resources of all stacks, reference resolution across stacks through exports."""

    def __init__(self, stacks: Iterable[StackTemplate]) -> None:
        self.stacks = list(stacks)
        self.resources: dict[str, dict[str, Any]] = {}
        self.stage_of: dict[str, str] = {}
        self.exports: dict[str, str] = {}
        for stack in self.stacks:
            for logical_id, res in (stack.template.get("Resources") or {}).items():
                self.resources[f"{stack.name}/{logical_id}"] = res
                self.stage_of[f"{stack.name}/{logical_id}"] = stack.stage
            for output_name, output in (stack.template.get("Outputs") or {}).items():
                targets = [t for t, kind in _refs(output.get("Value")) if kind is None]
                if not targets:
                    continue
                self.exports[f"{stack.name}:{output_name}"] = f"{stack.name}/{targets[0]}"
                name = (output.get("Export") or {}).get("Name")
                if isinstance(name, str):
                    self.exports[name] = f"{stack.name}/{targets[0]}"

    def type(self, rid: str) -> str:
        return str(self.resources.get(rid, {}).get("Type", ""))

    def props(self, rid: str) -> dict[str, Any]:
        return dict(self.resources.get(rid, {}).get("Properties") or {})

    def refs(self, rid: str, value: Any = None) -> list[str]:
        """Resource ids that ``value`` (default: the resource's properties) refers to."""
        stack = rid.split("/", 1)[0]
        found = []
        for target, kind in _refs(self.props(rid) if value is None else value):
            full = self.exports.get(target) if kind == "import" else f"{stack}/{target}"
            if full and full in self.resources:
                found.append(full)
        return found


def _is_main(index: _Index, rid: str) -> bool:
    kind = index.type(rid)
    logical_id = rid.split("/", 1)[1]
    if kind not in MAIN_TYPES:
        return False
    if kind == "AWS::Lambda::Function":
        return not _INTERNAL_FUNCTION.search(logical_id)
    if kind == "AWS::IAM::Role":
        return bool(_trusted_accounts(index, rid))
    if kind == "AWS::SNS::Topic":
        return "DrainHook" not in logical_id
    return True


def _trusted_accounts(index: _Index, rid: str) -> set[str]:
    """Other accounts' IDs in a role's trust policy: the roles people assume across accounts."""
    document = index.props(rid).get("AssumeRolePolicyDocument") or {}
    text = str([s.get("Principal") for s in document.get("Statement") or []])
    own = {stack.account for stack in index.stacks if stack.name == rid.split("/", 1)[0]}
    return set(_ACCOUNT.findall(text)) - own


def _name(index: _Index, rid: str) -> str:
    """Construct path below the stack when the synth recorded it, else the logical ID without its hash."""
    res = index.resources[rid]
    path = str((res.get("Metadata") or {}).get("aws:cdk:path", ""))
    parts = [p for p in path.split("/")[2:] if p not in ("Resource", "Default")]
    return "/".join(parts) if parts else _HASH_SUFFIX.sub("", rid.split("/", 1)[1])


def _label(index: _Index, rid: str) -> str:
    return f"{_name(index, rid)}\n{MAIN_TYPES[index.type(rid)]}"


def _walk(index: _Index, start: str, *, past_main: bool = False, depth: int = 4) -> Iterator[str]:
    """Resources reachable from ``start`` over references, not passing through IAM or (unless ``past_main``)
    through other drawn resources."""
    seen = {start}
    frontier = [start]
    for _ in range(depth):
        following = []
        for rid in frontier:
            for target in index.refs(rid):
                if target in seen:
                    continue
                seen.add(target)
                yield target
                kind = index.type(target)
                stop = (_is_main(index, target) and not past_main) or kind.startswith("AWS::IAM::")
                if not stop and kind != "AWS::EC2::VPC":
                    following.append(target)
        frontier = following


# What runs in a VPC; other drawn resources (buckets, dashboards) only refer to things that do.
_IN_VPC = {
    "AWS::Lambda::Function",
    "AWS::ECS::Service",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::EC2::Instance",
}


def _vpc_of(index: _Index, rid: str) -> str | None:
    if index.type(rid) not in _IN_VPC:
        return None
    # An ECS service sits in the VPC of the fleet its capacity provider scales, hence past drawn resources.
    for target in _walk(index, rid, past_main=True):
        if index.type(target) == "AWS::EC2::VPC":
            return target
    return None


def _roles_of(index: _Index, rid: str) -> set[str]:
    """IAM roles an actor runs as: directly, through its task definition, launch config or instance profile."""
    roles = set()
    for target in [rid, *_walk(index, rid)]:
        if index.type(target) == "AWS::IAM::Role" and target != rid:
            roles.add(target)
        if index.type(target) == "AWS::IAM::InstanceProfile":
            roles.update(index.refs(target))
    return roles


def _policies_by_role(index: _Index) -> dict[str, list[dict[str, Any]]]:
    statements: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rid, res in index.resources.items():
        if res.get("Type") == "AWS::IAM::Policy":
            for role in index.refs(rid, index.props(rid).get("Roles")):
                doc = index.props(rid).get("PolicyDocument") or {}
                statements.setdefault(role, []).extend((rid, s) for s in doc.get("Statement") or [])
        if res.get("Type") == "AWS::IAM::Role":
            for policy in index.props(rid).get("Policies") or []:
                doc = policy.get("PolicyDocument") or {}
                statements.setdefault(rid, []).extend((rid, s) for s in doc.get("Statement") or [])
    return {role: [dict(s, _owner=owner) for owner, s in items] for role, items in statements.items()}


def _access(actions: Iterable[str]) -> list[tuple[str, str]]:
    found = []
    for action in actions:
        service, _, verb = action.partition(":")
        for svc, prefix, direction, label in _ACCESS:
            if service == svc and (verb.startswith(prefix) or verb == "*"):
                found.append((direction, label))
    if any(label == "consume" for _, label in found):
        found = [f for f in found if f[0] == "in" or f[1] != "send"]
    return sorted(set(found))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def build_graph(stacks: Iterable[StackTemplate]) -> Graph:
    """The platform graph of every stack in an assembly (see :func:`tools.review.assembly.load_assembly`)."""
    index = _Index(stacks)
    graph = Graph()
    for stack in index.stacks:
        graph.accounts.setdefault(stack.stage, f"{stack.account or '?'} {stack.region or ''}".strip())
    for rid, res in index.resources.items():
        if res.get("Type") == "AWS::EC2::VPC":
            cidr = index.props(rid).get("CidrBlock", "")
            label = f"{_name(index, rid)}\n{cidr if isinstance(cidr, str) else ''}"
            graph.vpcs[rid] = Vpc(rid, index.stage_of[rid], label)
    for rid in index.resources:
        if _is_main(index, rid):
            stack_name, logical_id = rid.split("/", 1)
            graph.nodes[rid] = Node(
                rid,
                index.stage_of[rid],
                stack_name,
                logical_id,
                index.type(rid),
                _label(index, rid),
                _vpc_of(index, rid),
            )
    _data_edges(index, graph)
    _grant_edges(index, graph)
    _network_edges(index, graph)
    return graph


def _buckets_named(index: _Index, rid: str, name: Any) -> list[str]:
    """The bucket a name refers to: by reference, or by its physical name (the central archive in another account)."""
    if not isinstance(name, str):
        return index.refs(rid, name)
    return [
        b for b in index.resources if index.type(b) == "AWS::S3::Bucket" and index.props(b).get("BucketName") == name
    ]


def _recorders(index: _Index, rid: str) -> list[str]:
    stack = rid.split("/", 1)[0] + "/"
    return [r for r in index.resources if r.startswith(stack) and index.type(r) == "AWS::Config::ConfigurationRecorder"]


def _data_edges(index: _Index, graph: Graph) -> None:
    """Notifications, redrive, subscriptions, event targets, event source mappings, API integrations."""
    for rid, res in index.resources.items():
        kind, props = res.get("Type"), index.props(rid)
        if kind == "AWS::S3::Bucket":
            logging = props.get("LoggingConfiguration") or {}
            for target in _buckets_named(index, rid, logging.get("DestinationBucketName")):
                graph.add_edge(rid, target, "access logs", "dotted")
        if kind in ("Custom::S3BucketNotifications", "AWS::S3::Bucket"):
            config = props.get("NotificationConfiguration") or {}
            buckets = index.refs(rid, props.get("BucketName")) if kind != "AWS::S3::Bucket" else [rid]
            for key in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations"):
                for entry in config.get(key) or []:
                    events = ",".join(e.split(":")[-2] for e in _as_list(entry.get("Events") or entry.get("Event")))
                    for bucket in buckets:
                        for target in index.refs(rid, entry):
                            graph.add_edge(bucket, target, events or "notify")
        elif kind in ("AWS::CloudTrail::Trail", "AWS::Config::DeliveryChannel"):
            sources = [rid] if kind == "AWS::CloudTrail::Trail" else _recorders(index, rid)
            for source in sources:
                for bucket in _buckets_named(index, rid, props.get("S3BucketName")):
                    graph.add_edge(source, bucket, "logs" if kind == "AWS::CloudTrail::Trail" else "config history")
        elif kind == "AWS::ECS::Service":
            for fleet in _walk(index, rid):
                if index.type(fleet) == "AWS::AutoScaling::AutoScalingGroup":
                    graph.add_edge(fleet, rid, "capacity", "dotted")
        elif kind == "AWS::SQS::Queue":
            for dlq in index.refs(rid, props.get("RedrivePolicy")):
                graph.add_edge(rid, dlq, "redrive", "dashed")
        elif kind == "AWS::SNS::Subscription":
            for topic in index.refs(rid, props.get("TopicArn")):
                for target in index.refs(rid, props.get("Endpoint")):
                    graph.add_edge(topic, target, "subscription")
        elif kind in ("AWS::Events::Rule", "AWS::Scheduler::Schedule"):
            for target in _as_list(props.get("Targets") or props.get("Target") or []):
                if not isinstance(target, dict):
                    continue
                dead_letters = target.get("DeadLetterConfig")
                for fn in index.refs(rid, {k: v for k, v in target.items() if k != "DeadLetterConfig"}):
                    graph.add_edge(rid, fn, "trigger")
                for queue in index.refs(rid, dead_letters) if dead_letters else []:
                    graph.add_edge(rid, queue, "undelivered events", "dashed")
        elif kind == "AWS::Config::ConfigRule" and (props.get("Source") or {}).get("Owner") == "CUSTOM_LAMBDA":
            # The recorder's configuration changes are what the rule's function evaluates.
            stage = index.stage_of[rid]
            recorders = [r for r in graph.nodes if graph.nodes[r].type == "AWS::Config::ConfigurationRecorder"]
            for fn in index.refs(rid, (props.get("Source") or {}).get("SourceIdentifier")):
                for recorder in (r for r in recorders if graph.nodes[r].stage == stage):
                    graph.add_edge(recorder, fn, "config rule")
        elif kind == "AWS::CloudWatch::Alarm":
            topics = index.refs(rid, props.get("AlarmActions"))
            watched = index.refs(rid, [props.get(k) for k in ("Dimensions", "Metrics") if props.get(k)])
            for source in watched:
                for topic in topics:
                    graph.add_edge(source, topic, "alarm", "dotted")
        elif kind == "AWS::Lambda::EventSourceMapping":
            for source in index.refs(rid, props.get("EventSourceArn")):
                for fn in index.refs(rid, props.get("FunctionName")):
                    graph.add_edge(source, fn, "trigger")
        elif kind in ("AWS::ApiGateway::Method", "AWS::ApiGatewayV2::Integration"):
            apis = [t for t in index.refs(rid) if index.type(t) in MAIN_TYPES and "Api" in index.type(t)]
            fns = [t for t in _walk(index, rid, depth=2) if index.type(t) == "AWS::Lambda::Function"]
            for api in apis:
                for fn in fns:
                    graph.add_edge(api, fn, "invoke")


def _inline_statements(index: _Index, rid: str) -> list[dict[str, Any]]:
    policies = index.props(rid).get("Policies") or []
    return [s for p in policies for s in (p.get("PolicyDocument") or {}).get("Statement") or []]


def _grant_edges(index: _Index, graph: Graph) -> None:
    """Data flow from IAM grants: the actor (function, service, fleet, instance, group) and what it may touch."""
    by_role = _policies_by_role(index)
    group_statements = {
        rid: _inline_statements(index, rid) for rid in graph.nodes if index.type(rid) == "AWS::IAM::Group"
    }
    for actor in graph.nodes:
        if index.type(actor) == "AWS::IAM::Group":
            statements = [dict(s, _owner=actor) for s in group_statements.get(actor, [])]
        else:
            statements = [s for role in _roles_of(index, actor) for s in by_role.get(role, [])]
        for statement in statements:
            if statement.get("Effect", "Allow") != "Allow":
                continue
            actions = [a for a in _as_list(statement.get("Action")) if isinstance(a, str)]
            targets = {t for t in index.refs(statement["_owner"], statement.get("Resource")) if t in graph.nodes}
            if not targets and any(a.startswith(("ec2:StartInstances", "ec2:StopInstances")) for a in actions):
                # Scoped by tag or `instance/*`, not by reference: every instance of the actor's stack.
                stack = actor.split("/", 1)[0] + "/"
                targets = {n for n in graph.nodes if n.startswith(stack) and index.type(n) == "AWS::EC2::Instance"}
            for direction, label in _access(actions):
                for target in targets:
                    if direction == "in":
                        graph.add_edge(target, actor, label)
                    else:
                        graph.add_edge(actor, target, label)
    _cross_account_edges(index, graph)


def _group_statements(index: _Index, group: str) -> list[dict[str, Any]]:
    """Inline statements of a group plus those of policies and managed policies attached to it."""
    statements = _inline_statements(index, group)
    for rid in index.resources:
        is_policy = index.type(rid) in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if is_policy and group in index.refs(rid, index.props(rid).get("Groups")):
            statements += (index.props(rid).get("PolicyDocument") or {}).get("Statement") or []
    return statements


def _assumable_names(statements: Iterable[dict[str, Any]]) -> set[str]:
    """Role names a set of statements may assume (``sts:AssumeRole`` on ``...:role/<name>``)."""
    names = set()
    for statement in statements:
        if statement.get("Effect", "Allow") == "Allow" and "sts:AssumeRole" in _as_list(statement.get("Action")):
            for resource in _as_list(statement.get("Resource")):
                if isinstance(resource, str) and ":role/" in resource:
                    names.add(resource.rsplit("/", 1)[-1])
    return names


def _cross_account_edges(index: _Index, graph: Graph) -> None:
    """People in one account assume roles in another: from the groups allowed to, else from the account."""
    stage_by_account = {s.account: s.stage for s in index.stacks if s.account}
    groups = [g for g, n in graph.nodes.items() if n.type == "AWS::IAM::Group"]
    may_assume = {g: _assumable_names(_group_statements(index, g)) for g in groups}
    for rid, node in list(graph.nodes.items()):
        if node.type != "AWS::IAM::Role":
            continue
        mfa = "MultiFactorAuthPresent" in str(index.props(rid).get("AssumeRolePolicyDocument"))
        role_name = index.props(rid).get("RoleName")
        for account in _trusted_accounts(index, rid):
            stage = stage_by_account.get(account)
            sources = [g for g in groups if graph.nodes[g].stage == stage and role_name in may_assume[g]]
            if not sources:
                sources = _peering_requesters(index, graph, role_name)
                if sources:
                    for source in sources:
                        graph.add_edge(source, rid, "accept peering (assume role)", "dashed")
                    continue
            if not sources:
                source = f"account:{stage or account}"
                sources = [source]
                if source not in graph.nodes:
                    # Outside every account box: the whole account is the principal, not a resource in it.
                    label = f"{stage or 'external'} account\n{account}"
                    graph.nodes[source] = Node(source, "", "", source, "account", label)
            for source in sources:
                graph.add_edge(source, rid, "assume role (MFA)" if mfa else "assume role", "dashed")


def _peering_requesters(index: _Index, graph: Graph, role_name: Any) -> list[str]:
    """VPCs whose peering request names `role_name` as the peer's accepter role (``PeerRoleArn``)."""
    if not isinstance(role_name, str):
        return []
    found = []
    for rid, res in index.resources.items():
        if res.get("Type") == "AWS::EC2::VPCPeeringConnection":
            arn = index.props(rid).get("PeerRoleArn")
            if role_name in str(arn):
                found += [v for v in index.refs(rid, index.props(rid).get("VpcId")) if v in graph.vpcs]
    return found


def _network_edges(index: _Index, graph: Graph) -> None:
    """VPC peering: the requester VPC and the peer, found by the peer account and the CIDR its routes point to."""
    cidr_of = {rid: index.props(rid).get("CidrBlock") for rid in graph.vpcs}
    account_of_stage = {s.stage: s.account for s in index.stacks}
    for rid, res in index.resources.items():
        if res.get("Type") != "AWS::EC2::VPCPeeringConnection":
            continue
        props = index.props(rid)
        local = index.refs(rid, props.get("VpcId"))
        routed = {
            index.props(route).get("DestinationCidrBlock")
            for route in index.resources
            if index.type(route) == "AWS::EC2::Route"
            and rid in index.refs(route, index.props(route).get("VpcPeeringConnectionId"))
        }
        owner = props.get("PeerOwnerId")
        peers = [v for v, cidr in cidr_of.items() if cidr in routed and v not in local]
        if not peers and isinstance(owner, str):
            peers = [v for v in graph.vpcs if account_of_stage.get(graph.vpcs[v].stage) == owner]
        if not peers:
            peer_id = f"peer:{render_value(props.get('PeerVpcId'))}"
            graph.vpcs[peer_id] = Vpc(peer_id, "", f"peer VPC\n{render_value(props.get('PeerVpcId'))}")
            peers = [peer_id]
        for vpc in local:
            for peer in peers:
                graph.add_edge(vpc, peer, "VPC peering", "bold")


def render_value(value: Any) -> str:
    return value if isinstance(value, str) else "?"
