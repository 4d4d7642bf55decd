"""A synthesized cloud assembly read as stacks, and what each stack needs at creation and produces once deployed.

Needs are read from the template the way CloudFormation resolves them at stack creation: SSM-typed parameters,
`{{resolve:...}}` dynamic references, `Fn::ImportValue` and `Fn::GetStackOutput`, plus the resources of another
stack or account that a property names literally (the archive bucket and key alias, the IAM users a trust policy
names, the peering accepter role, the research VPC ID, the active peering connection, the organization). Secrets
referenced by name (their ARN ends in `-??????`) are read at the first run, not at creation; they count as needs
all the same, so that the README asks for them first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tools.deploy_plan.plan import Item

_SSM_TYPE = re.compile(r"AWS::SSM::Parameter::Value<.+>")
_DYNAMIC = re.compile(r"\{\{resolve:(ssm|ssm-secure|secretsmanager):([^}:]+(?::[^}:]+)*)\}\}")
_SECRET_BY_NAME = re.compile(r"arn:aws:secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)-\?\?\?\?\?\?$")
_SECRET_ARN = re.compile(r"arn:aws:secretsmanager:([a-z0-9-]+):(\d{12}):secret:([^:]+)")
_KMS_ALIAS = re.compile(r"arn:aws:kms:([a-z0-9-]+):(\d{12}):(alias/.+)")
_IAM_ARN = re.compile(r"arn:aws:iam::(\d{12}):((?:user|role)/.+)")
_S3_ARN = re.compile(r"arn:aws:s3:::([^/]+)(/.*)?")
_PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


@dataclass(frozen=True)
class Stack:
    """One stack of the assembly: CDK path (`Research/Workbench`), CloudFormation name, environment, template."""

    path: str
    name: str
    account: str
    region: str
    template: dict[str, Any]
    dependencies: tuple[str, ...]
    deploy_role: str | None
    publishing_roles: tuple[str, ...]

    def resources(self, kind: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        for lid, resource in self.template.get("Resources", {}).items():
            if kind is None or resource.get("Type") == kind:
                yield lid, resource


@dataclass(frozen=True)
class Assembly:
    stacks: tuple[Stack, ...]

    def matching(self, pattern: str) -> list[Stack]:
        """Stacks a `cdk deploy` pattern selects, in the order the CLI deploys them (dependencies first)."""
        chosen = {s.name for s in self.stacks if fnmatchcase(s.path, pattern)}
        return [s for s in self.in_dependency_order() if s.name in chosen]

    def in_dependency_order(self) -> list[Stack]:
        by_name = {s.name: s for s in self.stacks}
        done: list[Stack] = []

        def visit(stack: Stack) -> None:
            if stack in done:
                return
            for dep in stack.dependencies:
                if dep in by_name:
                    visit(by_name[dep])
            done.append(stack)

        for stack in self.stacks:
            visit(stack)
        return done


def _role(arn: str, account: str, region: str) -> str:
    return (
        arn.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
    )


def read_assembly(directory: Path) -> Assembly:
    """Every stack of every nested assembly under `directory` (a `cdk.out`)."""
    manifest_file = directory / "manifest.json"
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{directory}: no cloud assembly here; run `make synth` first")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    stacks: list[Stack] = []
    artifacts: dict[str, Any] = manifest.get("artifacts", {})
    names = {k: a.get("properties", {}).get("stackName", k) for k, a in artifacts.items()}
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") == "cdk:cloud-assembly":
            stacks += read_assembly(directory / artifact["properties"]["directoryName"]).stacks
        elif artifact.get("type") == "aws:cloudformation:stack":
            props = artifact["properties"]
            account, region = artifact["environment"].removeprefix("aws://").split("/")
            publishing: list[str] = []
            assets = directory / f"{artifact_id}.assets.json"
            if assets.is_file():
                data = json.loads(assets.read_text(encoding="utf-8"))
                for group in ("files", "dockerImages"):
                    for asset in data.get(group, {}).values():
                        for dest in asset.get("destinations", {}).values():
                            if "assumeRoleArn" in dest:
                                publishing.append(_role(dest["assumeRoleArn"], account, region))
            stacks.append(
                Stack(
                    path=artifact.get("displayName", artifact_id),
                    name=props.get("stackName", artifact_id),
                    account=account,
                    region=region,
                    template=json.loads((directory / props["templateFile"]).read_text(encoding="utf-8")),
                    dependencies=tuple(names[d] for d in artifact.get("dependencies", ()) if d in names),
                    deploy_role=_role(props["assumeRoleArn"], account, region) if "assumeRoleArn" in props else None,
                    publishing_roles=tuple(sorted(set(publishing))),
                )
            )
    return Assembly(tuple(stacks))


def render(value: Any, stack: Stack) -> str | None:
    """A template value as a string when it is one at synth (literals, pseudo parameters, joins of those)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            pseudo = {**_PSEUDO, "AWS::AccountId": stack.account, "AWS::Region": stack.region}
            return pseudo.get(arg)
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            parts = [render(part, stack) for part in arg[1]]
            if all(isinstance(p, str) for p in parts):
                return str(arg[0]).join(p for p in parts if p is not None)
    return None


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from _walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child)


def _strings(value: Any, stack: Stack) -> Iterator[str]:
    """Every string a value holds at synth, joins rendered."""
    for node in _walk(value):
        rendered = render(node, stack) if isinstance(node, (str, dict)) else None
        if rendered is not None:
            yield rendered


def _principals(document: Any) -> Iterator[Any]:
    for statement in (document or {}).get("Statement", []):
        aws = statement.get("Principal", {}).get("AWS") if isinstance(statement.get("Principal"), dict) else None
        yield from aws if isinstance(aws, list) else ([aws] if aws is not None else [])


def needs(stack: Stack, config_fields: Mapping[str, str | None]) -> set[Item]:
    """What `stack` needs to exist before it is created (see the module docstring)."""
    acct, region = stack.account, stack.region
    found: set[Item] = set()
    for param in stack.template.get("Parameters", {}).values():
        if _SSM_TYPE.fullmatch(str(param.get("Type", ""))):
            found.add(Item("ssm-parameter", acct, region, str(param["Default"])))
    resources = stack.template.get("Resources", {})
    for text in _strings(resources, stack):
        for kind, ref in _DYNAMIC.findall(text):
            if kind == "secretsmanager":
                arn = _SECRET_ARN.match(ref)
                found.add(
                    Item("secret", arn[2], arn[1], arn[3]) if arn else Item("secret", acct, region, ref.split(":")[0])
                )
            else:
                found.add(Item("ssm-parameter", acct, region, ref.split(":")[0]))
        secret = _SECRET_BY_NAME.match(text)
        if secret:
            found.add(Item("secret", secret[2], secret[1], secret[3]))
    for node in _walk(resources):
        if isinstance(node, dict) and len(node) == 1:
            if "Fn::ImportValue" in node:
                found.add(Item("export", acct, region, str(render(node["Fn::ImportValue"], stack))))
            if "Fn::GetStackOutput" in node:
                ref = node["Fn::GetStackOutput"]
                role = _IAM_ARN.match(str(ref.get("RoleArn", "")))
                found.add(
                    Item(
                        "stack-output",
                        role[1] if role else acct,
                        str(ref.get("Region", region)),
                        f"{ref['StackName']}.{ref['OutputName']}",
                    )
                )
    found |= _named_needs(stack, config_fields)
    return found - produces(stack)


def _named_needs(stack: Stack, config_fields: Mapping[str, str | None]) -> set[Item]:
    """Resources of other stacks or accounts that a property names literally."""
    found: set[Item] = set()
    by_value = {value: path for path, value in config_fields.items() if value is not None}

    def bucket(value: Any) -> None:
        text = render(value, stack)
        if text is None:
            return
        arn = _S3_ARN.fullmatch(text)
        found.add(Item("s3-bucket", "", "", arn[1] if arn else text))

    def key(value: Any) -> None:
        alias = _KMS_ALIAS.fullmatch(render(value, stack) or "")
        if alias:
            found.add(Item("kms-alias", alias[2], alias[1], alias[3]))

    for _, res in stack.resources():
        kind, props = res.get("Type"), res.get("Properties", {})
        if kind in ("AWS::CloudTrail::Trail", "AWS::Config::DeliveryChannel"):
            bucket(props.get("S3BucketName"))
            key(props.get("KMSKeyId") or props.get("S3KmsKeyArn"))
        elif kind == "AWS::EC2::FlowLog" and props.get("LogDestinationType") == "s3":
            bucket(props.get("LogDestination"))
        elif kind == "AWS::IAM::Role":
            for principal in _principals(props.get("AssumeRolePolicyDocument")):
                arn = _IAM_ARN.fullmatch(render(principal, stack) or "")
                if arn:
                    found.add(Item("iam", arn[1], "", arn[2]))
        elif kind == "AWS::EC2::VPCPeeringConnection" and "PeerOwnerId" in props:
            role = _IAM_ARN.fullmatch(render(props.get("PeerRoleArn"), stack) or "")
            if role:
                found.add(Item("iam", role[1], "", role[2]))
            vpc = render(props.get("PeerVpcId"), stack)
            if vpc is not None:
                found.add(Item("config", "", "", by_value[vpc]) if vpc in by_value else Item("vpc", "", "", vpc))
        elif kind == "Custom::AWS":
            # The accepter side looks the connection up at deploy time (PeeringAccepter): it must be active by then.
            call = "".join(node for node in _walk(props.get("Create")) if isinstance(node, str))
            owner = re.search(r'"requester-vpc-info\.owner-id","Values":\["(\d{12})"', call)
            if '"describeVpcPeeringConnections"' in call:
                found.add(Item("peering", stack.account, "", f"from {owner[1] if owner else '?'}, active"))
        elif kind == "AWS::Organizations::Policy":
            found.add(Item("organization", stack.account, "", "all features with SERVICE_CONTROL_POLICY enabled"))
            for target in props.get("TargetIds", []):
                if isinstance(target, str) and re.fullmatch(r"\d{12}", target):
                    found.add(Item("organization-member", target, "", f"of the organization of {stack.account}"))
    return found


def produces(stack: Stack) -> set[Item]:
    """What exists once `stack` is deployed that another stack or step may need."""
    acct, region = stack.account, stack.region
    made: set[Item] = set()
    for key, output in stack.template.get("Outputs", {}).items():
        made.add(Item("stack-output", acct, region, f"{stack.name}.{key}"))
        export = output.get("Export", {}).get("Name")
        if export is not None:
            made.add(Item("export", acct, region, str(render(export, stack))))
    for _, res in stack.resources():
        kind, props = res.get("Type"), res.get("Properties", {})
        name = None
        if kind == "AWS::S3::Bucket" and isinstance(props.get("BucketName"), str):
            made.add(Item("s3-bucket", "", "", props["BucketName"]))
        elif kind == "AWS::KMS::Alias":
            name = render(props.get("AliasName"), stack)
            if name:
                made.add(Item("kms-alias", acct, region, name))
        elif kind in ("AWS::IAM::User", "AWS::IAM::Role"):
            name = render(props.get("UserName") or props.get("RoleName"), stack)
            if name:
                prefix = "user" if kind == "AWS::IAM::User" else "role"
                made.add(Item("iam", acct, "", f"{prefix}{props.get('Path', '/')}{name}"))
        elif kind == "AWS::SSM::Parameter" and isinstance(props.get("Name"), str):
            made.add(Item("ssm-parameter", acct, region, props["Name"]))
        elif kind == "AWS::SecretsManager::Secret" and isinstance(props.get("Name"), str):
            made.add(Item("secret", acct, region, props["Name"]))
        elif kind == "AWS::EC2::VPCPeeringConnection" and isinstance(props.get("PeerOwnerId"), str):
            # CloudFormation accepts a cross-account request itself only through the peer's role.
            state = "active" if props.get("PeerRoleArn") else "pending acceptance"
            made.add(Item("peering", props["PeerOwnerId"], "", f"from {acct}, {state}"))
    return made
