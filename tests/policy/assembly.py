"""The synthesized cloud assembly as a set of deployed-looking resources: intrinsics resolved, policies collected.

The IAM engine needs plain JSON policies with real ARNs. CloudFormation templates hold `Ref`, `Fn::GetAtt`,
`Fn::Join`, `Fn::Sub`, ... instead, so this module plays CloudFormation's part offline: every resource gets the
physical name it would get (its name property when the template sets one, a deterministic stand-in otherwise) and
the ARN that AWS documents for its type. Anything it cannot resolve raises `UnresolvedError`, and the case that needed
it fails: a guessed value would make a policy test pass for the wrong reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARTITION = "aws"


class UnresolvedError(Exception):
    """An intrinsic or reference that the resolver cannot turn into a value."""


@dataclass(frozen=True)
class StackInfo:
    name: str  # CloudFormation stack name, e.g. Production-Audit
    display: str  # construct path of the stack, e.g. Production/Audit
    account: str
    region: str
    template: dict[str, Any]
    logical_ids: dict[str, str]  # construct path -> logical ID


@dataclass(frozen=True)
class Res:
    """One resource of one stack."""

    stack: StackInfo
    lid: str

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.stack.template["Resources"][self.lid]
        return body

    @property
    def type(self) -> str:
        kind: str = self.body["Type"]
        return kind

    @property
    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = self.body.get("Properties", {})
        return props


# Name properties by resource type: when a template sets one, that is the physical name.
NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::CloudTrail::Trail": "TrailName",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Config::ConfigRule": "ConfigRuleName",
    "AWS::SSM::Parameter": "Name",
    "AWS::SSM::Document": "Name",
    "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::Service": "ServiceName",
    "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
}


def _digest(*parts: str, size: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:size]


class Assembly:
    """Every stack of a cloud assembly (nested stage assemblies included), with an offline resolver."""

    def __init__(self, outdir: Path) -> None:
        self.stacks: dict[str, StackInfo] = {}
        self._load(outdir)

    def _load(self, directory: Path) -> None:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        for artifact_id, artifact in manifest.get("artifacts", {}).items():
            if artifact.get("type") == "cdk:cloud-assembly":
                self._load(directory / artifact["properties"]["directoryName"])
            elif artifact.get("type") == "aws:cloudformation:stack":
                props = artifact["properties"]
                account, region = artifact["environment"].removeprefix("aws://").split("/")
                template = json.loads((directory / props["templateFile"]).read_text(encoding="utf-8"))
                logical_ids: dict[str, str] = {}
                metadata_file = props.get("additionalMetadataFile") or artifact.get("additionalMetadataFile")
                metadata = artifact.get("metadata") or {}
                if metadata_file:
                    metadata = json.loads((directory / metadata_file).read_text(encoding="utf-8"))
                for path, entries in metadata.items():
                    for entry in entries:
                        if entry.get("type") == "aws:cdk:logicalId":
                            logical_ids[path.strip("/")] = entry["data"]
                name = props.get("stackName") or artifact_id
                self.stacks[name] = StackInfo(
                    name=name,
                    display=artifact.get("displayName", name),
                    account=account,
                    region=region,
                    template=template,
                    logical_ids=logical_ids,
                )

    # ---- finding resources -------------------------------------------------------------------------------------
    def stack(self, display_or_name: str) -> StackInfo:
        for info in self.stacks.values():
            if display_or_name in (info.name, info.display):
                return info
        raise KeyError(f"no stack {display_or_name!r}; have {sorted(self.stacks)}")

    def at(self, path: str) -> Res:
        """The resource at a construct path (`Production/Audit/LogArchive/Bucket`; `/Resource` is implied)."""
        path = path.strip("/")
        for info in self.stacks.values():
            if path.startswith(info.display + "/"):
                for candidate in (path, f"{path}/Resource", f"{path}/Default"):
                    if candidate in info.logical_ids:
                        return Res(info, info.logical_ids[candidate])
                raise KeyError(f"no resource at {path!r} (stack {info.display})")
        raise KeyError(f"no stack holds {path!r}")

    def of_type(self, kind: str, stack: str | None = None) -> list[Res]:
        found = []
        for info in self.stacks.values():
            if stack is not None and stack not in (info.name, info.display):
                continue
            found += [Res(info, lid) for lid, r in info.template.get("Resources", {}).items() if r["Type"] == kind]
        return found

    # ---- names and ARNs ----------------------------------------------------------------------------------------
    def physical_name(self, res: Res) -> str:
        prop = NAME_PROPERTY.get(res.type)
        if prop and prop in res.props:
            return str(self.resolve(res.stack, res.props[prop]))
        # CloudFormation's generated names: <stack>-<logical id>-<random>; deterministic here.
        generated = f"{res.stack.name}-{res.lid}-{_digest(res.stack.name, res.lid, size=8).upper()}"
        if res.type == "AWS::S3::Bucket":
            return generated.lower()[:63]
        return generated[:64]

    def ref(self, res: Res) -> str:
        s, kind = res.stack, res.type
        name = self.physical_name(res)
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:{PARTITION}:iam::{s.account}:policy{res.props.get('Path', '/')}{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{s.region}:{s.account}:{name}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{s.region}.amazonaws.com/{s.account}/{name}"
        if kind == "AWS::KMS::Key":
            d = _digest(s.name, res.lid, size=32)
            return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"
        if kind == "AWS::ECS::Service":
            return self.arn(res)
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:{PARTITION}:secretsmanager:{s.region}:{s.account}:secret:{name}-{_digest(name, size=6)}"
        if kind.startswith("AWS::EC2::"):
            prefix = {
                "AWS::EC2::VPC": "vpc",
                "AWS::EC2::SecurityGroup": "sg",
                "AWS::EC2::Instance": "i",
                "AWS::EC2::Subnet": "subnet",
                "AWS::EC2::Volume": "vol",
                "AWS::EC2::LaunchTemplate": "lt",
                "AWS::EC2::VPCPeeringConnection": "pcx",
                "AWS::EC2::RouteTable": "rtb",
            }.get(kind, "res")
            return f"{prefix}-{_digest(s.name, res.lid, size=17)}"
        return name

    def arn(self, res: Res) -> str:
        s, kind = res.stack, res.type
        name = self.physical_name(res)
        a, r = s.account, s.region
        match kind:
            case "AWS::S3::Bucket":
                return f"arn:{PARTITION}:s3:::{name}"
            case "AWS::IAM::Role":
                return f"arn:{PARTITION}:iam::{a}:role{res.props.get('Path', '/')}{name}"
            case "AWS::IAM::User":
                return f"arn:{PARTITION}:iam::{a}:user{res.props.get('Path', '/')}{name}"
            case "AWS::IAM::Group":
                return f"arn:{PARTITION}:iam::{a}:group{res.props.get('Path', '/')}{name}"
            case "AWS::IAM::InstanceProfile":
                return f"arn:{PARTITION}:iam::{a}:instance-profile{res.props.get('Path', '/')}{name}"
            case "AWS::IAM::ManagedPolicy" | "AWS::SNS::Topic" | "AWS::SecretsManager::Secret":
                return self.ref(res)
            case "AWS::SQS::Queue":
                return f"arn:{PARTITION}:sqs:{r}:{a}:{name}"
            case "AWS::KMS::Key":
                return f"arn:{PARTITION}:kms:{r}:{a}:key/{self.ref(res)}"
            case "AWS::Lambda::Function":
                return f"arn:{PARTITION}:lambda:{r}:{a}:function:{name}"
            case "AWS::Logs::LogGroup":
                return f"arn:{PARTITION}:logs:{r}:{a}:log-group:{name}:*"
            case "AWS::DynamoDB::Table":
                return f"arn:{PARTITION}:dynamodb:{r}:{a}:table/{name}"
            case "AWS::CloudTrail::Trail":
                return f"arn:{PARTITION}:cloudtrail:{r}:{a}:trail/{name}"
            case "AWS::Events::Rule":
                return f"arn:{PARTITION}:events:{r}:{a}:rule/{name}"
            case "AWS::CloudWatch::Alarm":
                return f"arn:{PARTITION}:cloudwatch:{r}:{a}:alarm:{name}"
            case "AWS::Config::ConfigRule":
                return f"arn:{PARTITION}:config:{r}:{a}:config-rule/{name}"
            case "AWS::SSM::Parameter":
                return f"arn:{PARTITION}:ssm:{r}:{a}:parameter/{name.lstrip('/')}"
            case "AWS::EC2::Instance":
                return f"arn:{PARTITION}:ec2:{r}:{a}:instance/{self.ref(res)}"
            case "AWS::EC2::SecurityGroup":
                return f"arn:{PARTITION}:ec2:{r}:{a}:security-group/{self.ref(res)}"
            case "AWS::EC2::Volume":
                return f"arn:{PARTITION}:ec2:{r}:{a}:volume/{self.ref(res)}"
            case "AWS::EC2::VPC":
                return f"arn:{PARTITION}:ec2:{r}:{a}:vpc/{self.ref(res)}"
            case "AWS::ECS::Cluster":
                return f"arn:{PARTITION}:ecs:{r}:{a}:cluster/{name}"
            case "AWS::ECS::Service":
                # The long ARN format: the service's cluster by name (Ref of a cluster is its name).
                cluster = self.resolve(s, res.props["Cluster"])
                return f"arn:{PARTITION}:ecs:{r}:{a}:service/{cluster}/{name}"
            case "AWS::AutoScaling::AutoScalingGroup":
                # The group's UUID exists only once it is created; a fixed stand-in here.
                uuid = _digest(s.name, res.lid, size=32)
                group_id = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
                return f"arn:{PARTITION}:autoscaling:{r}:{a}:autoScalingGroup:{group_id}:autoScalingGroupName/{name}"
            case "AWS::ApiGatewayV2::Api":
                return f"arn:{PARTITION}:apigateway:{r}::/apis/{self.ref(res)}"
        raise UnresolvedError(f"no ARN form known for {kind} ({s.name}/{res.lid})")

    def get_att(self, res: Res, attribute: str) -> Any:
        if attribute == "Arn":
            return self.arn(res)
        known: dict[tuple[str, str], Any] = {
            ("AWS::SQS::Queue", "QueueName"): lambda: self.physical_name(res),
            ("AWS::SQS::Queue", "QueueUrl"): lambda: self.ref(res),
            ("AWS::SNS::Topic", "TopicName"): lambda: self.physical_name(res),
            ("AWS::SNS::Topic", "TopicArn"): lambda: self.ref(res),
            ("AWS::KMS::Key", "KeyId"): lambda: self.ref(res),
            ("AWS::IAM::Role", "RoleId"): lambda: "AROA" + _digest(res.stack.name, res.lid, size=17).upper(),
            ("AWS::IAM::User", "UserId"): lambda: "AIDA" + _digest(res.stack.name, res.lid, size=17).upper(),
            ("AWS::Logs::LogGroup", "LogGroupName"): lambda: self.physical_name(res),
            ("AWS::DynamoDB::Table", "StreamArn"): lambda: f"{self.arn(res)}/stream/2026-01-01T00:00:00.000",
            ("AWS::EC2::SecurityGroup", "GroupId"): lambda: self.ref(res),
            ("AWS::EC2::VPC", "CidrBlock"): lambda: res.props.get("CidrBlock"),
            ("AWS::ApiGatewayV2::Api", "ApiId"): lambda: self.ref(res),
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint"): lambda: (
                f"https://{self.ref(res)}.execute-api.{res.stack.region}.amazonaws.com"
            ),
        }
        getter = known.get((res.type, attribute))
        if getter is None:
            raise UnresolvedError(f"Fn::GetAtt {res.lid}.{attribute} ({res.type}) is not modelled")
        return getter()

    # ---- intrinsics ---------------------------------------------------------------------------------------------
    def _pseudo(self, stack: StackInfo, name: str) -> Any:
        values = {
            "AWS::AccountId": stack.account,
            "AWS::Region": stack.region,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack.name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{stack.region}:{stack.account}:stack/{stack.name}/x",
        }
        if name not in values:
            raise UnresolvedError(f"pseudo parameter {name}")
        return values[name]

    def _ref(self, stack: StackInfo, name: str) -> Any:
        if name.startswith("AWS::"):
            return self._pseudo(stack, name)
        params = stack.template.get("Parameters", {})
        if name in params:
            param = params[name]
            if str(param.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                return f"resolved:{param.get('Default')}"
            if "Default" in param:
                return param["Default"]
            raise UnresolvedError(f"parameter {name} has no default")
        if name in stack.template.get("Resources", {}):
            return self.ref(Res(stack, name))
        raise UnresolvedError(f"Ref {name} in {stack.name}")

    def exports(self, account: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for info in self.stacks.values():
            if info.account != account:
                continue
            for output in info.template.get("Outputs", {}).values():
                if "Export" in output:
                    found[str(self.resolve(info, output["Export"]["Name"]))] = output["Value"], info
        return found

    def _condition(self, stack: StackInfo, name: str) -> bool:
        return bool(self.resolve(stack, stack.template.get("Conditions", {})[name]))

    def resolve(self, stack: StackInfo, value: Any) -> Any:
        """`value` with every intrinsic replaced by what CloudFormation would put there."""
        if isinstance(value, list):
            return [v for v in (self.resolve(stack, x) for x in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                return self._ref(stack, arg)
            if key == "Fn::GetAtt":
                lid, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(Res(stack, lid), attribute)
            if key == "Fn::Join":
                sep, parts = arg
                return str(sep).join(str(p) for p in self.resolve(stack, parts))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(stack, text)).split(sep)
            if key == "Fn::Sub":
                return self._sub(stack, arg)
            if key == "Fn::ImportValue":
                exported = self.exports(stack.account).get(str(self.resolve(stack, arg)))
                if exported is None:
                    raise UnresolvedError(f"Fn::ImportValue {arg}")
                output_value, source = exported
                return self.resolve(source, output_value)
            if key == "Fn::GetStackOutput":
                # CDK's cross-stack reference: another stack's output, read at deploy time.
                source = self.stacks.get(str(self.resolve(stack, arg["StackName"])))
                output = source.template.get("Outputs", {}).get(arg["OutputName"]) if source else None
                if source is None or output is None:
                    raise UnresolvedError(f"Fn::GetStackOutput {arg}")
                return self.resolve(source, output["Value"])
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(stack, yes if self._condition(stack, name) else no)
            if key == "Fn::Equals":
                left, right = self.resolve(stack, arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(stack, arg[0])
            if key == "Fn::And":
                return all(self.resolve(stack, arg))
            if key == "Fn::Or":
                return any(self.resolve(stack, arg))
            if key == "Condition":
                return self._condition(stack, arg)
            if key.startswith("Fn::"):
                raise UnresolvedError(f"intrinsic {key}")
        resolved = {k: self.resolve(stack, v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _sub(self, stack: StackInfo, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(stack, variables[name]))
            if "." in name and not name.startswith("AWS::"):
                lid, attribute = name.split(".", 1)
                return str(self.get_att(Res(stack, lid), attribute))
            return str(self._ref(stack, name))

        return re.sub(r"\$\{([^}]+)\}", one, text)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()
