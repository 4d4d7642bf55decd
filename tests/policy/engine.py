"""Cases as data, judged by a real IAM policy evaluation engine over the synthesized templates.

The engine is `@cloud-copilot/iam-simulate` (npm, pinned in package.json; AGPL-3.0, used by the tests only). It
evaluates identity policies, permission boundaries, SCPs and resource policies with every condition operator and
AWS's cross-account rules; it is the only maintained library that does all of that offline. `simulate.mjs` runs a
whole table in one Node process.

Two limits of the engine are handled here instead of being trusted blindly:
- It keeps a context key only when the action/resource documents it (or it is global) and reports the others as
  ignored. A case with an ignored key fails: its answer would not reflect the context it claims to send.
- It always ignores `kms:EncryptionContext:<key>`. Key-policy cases that need the encryption context therefore
  carry it separately, and `bind_encryption_context` judges those condition entries itself with the operator's
  documented semantics (StringEquals/StringLike/ArnLike/ArnEquals, IfExists variants), before the engine sees the
  policy: a statement whose encryption-context condition holds keeps the rest of its conditions for the engine; one
  whose condition fails cannot apply and is dropped. Any other operator on those keys fails the case.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.policy.assembly import Assembly, Res, UnresolvedError

ROOT = Path(__file__).resolve().parents[2]
SIMULATE = Path(__file__).with_name("simulate.mjs")
MANAGED = Path(__file__).with_name("managed")
EC_PREFIX = "kms:EncryptionContext:"
# The operations that `kms:EncryptionContext:<key>` applies to (kms/latest/developerguide/conditions-kms.html).
EC_OPERATIONS = (
    "kms:creategrant",
    "kms:encrypt",
    "kms:decrypt",
    "kms:generatedatakey",
    "kms:reencrypt",
)


class CaseError(Exception):
    """A case the harness cannot build faithfully (unknown principal, unmodelled policy source, ...)."""


# ---- the parties of a request -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Party:
    """What a principal brings to a request: its ARN, the policies on its side and context it always sends."""

    principal: str
    account: str
    identity: tuple[tuple[str, Any], ...] = ()
    boundary: tuple[tuple[str, Any], ...] = ()
    scps: tuple[tuple[str, Any], ...] = ()
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The resource of a request: its ARN, the account that owns it and its resource policy (if any)."""

    arn: str
    account: str
    policy: Any | None = None
    context: Mapping[str, str | list[str]] = field(default_factory=dict)  # e.g. the resource's own tags


Who = Callable[[Assembly], Party]
What = Callable[[Assembly], Target]


@dataclass(frozen=True)
class Case:
    """One request and the decision AWS must reach, with why (and, for a service contract, the AWS page)."""

    id: str
    who: Who
    action: str
    target: What
    expect: Literal["allow", "deny"]
    reason: str
    doc: str = ""
    context: Mapping[str, str | list[str]] = field(default_factory=dict)
    encryption_context: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Verdict:
    result: str  # Allowed | ExplicitlyDenied | ImplicitlyDenied | Error
    ignored: tuple[str, ...] = ()
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.result == "Allowed"


# ---- policy sources in the assembly -----------------------------------------------------------------------------
def managed_policy(asm: Assembly, arn: str) -> Any:
    """The document of a managed policy: the template's own, or an AWS managed one kept in `managed/`."""
    if ":iam::aws:policy/" in arn:
        name = arn.rsplit("/", 1)[-1]
        path = MANAGED / f"{name}.json"
        if not path.exists():
            raise CaseError(f"AWS managed policy {name} is not kept in tests/policy/managed/")
        return json.loads(path.read_text(encoding="utf-8"))["Document"]
    for res in asm.of_type("AWS::IAM::ManagedPolicy"):
        if asm.ref(res) == arn:
            return asm.resolve(res.stack, res.props["PolicyDocument"])
    raise CaseError(f"managed policy {arn} is neither AWS's nor in the assembly")


def _names(asm: Assembly, res: Res, prop: str) -> list[str]:
    return [str(x) for x in asm.resolve(res.stack, res.props.get(prop, []))]


def identity_policies(asm: Assembly, principal: Res) -> list[tuple[str, Any]]:
    """Every policy attached to a role, user or group in the templates: inline, policy resources, managed."""
    kind = {"AWS::IAM::Role": "Roles", "AWS::IAM::User": "Users", "AWS::IAM::Group": "Groups"}[principal.type]
    name = asm.physical_name(principal)
    found: list[tuple[str, Any]] = []
    for i, inline in enumerate(principal.props.get("Policies", [])):
        found.append((f"{principal.lid}-inline-{i}", asm.resolve(principal.stack, inline["PolicyDocument"])))
    for arn in asm.resolve(principal.stack, principal.props.get("ManagedPolicyArns", [])):
        found.append((str(arn).rsplit("/", 1)[-1], managed_policy(asm, str(arn))))
    for res in asm.of_type("AWS::IAM::Policy") + asm.of_type("AWS::IAM::ManagedPolicy"):
        if res.stack.account == principal.stack.account and name in _names(asm, res, kind):
            found.append((res.lid, asm.resolve(res.stack, res.props["PolicyDocument"])))
    if principal.type == "AWS::IAM::User":
        for group in asm.resolve(principal.stack, principal.props.get("Groups", [])):
            for res in asm.of_type("AWS::IAM::Group"):
                if res.stack.account == principal.stack.account and asm.physical_name(res) == group:
                    found += identity_policies(asm, res)
    return found


def boundary_of(asm: Assembly, principal: Res) -> list[tuple[str, Any]]:
    arn = principal.props.get("PermissionsBoundary")
    if arn is None:
        return []
    resolved = str(asm.resolve(principal.stack, arn))
    return [(resolved.rsplit("/", 1)[-1], managed_policy(asm, resolved))]


def scps_for(asm: Assembly, account: str) -> list[tuple[str, Any]]:
    """SCPs that the templates attach to `account` (AWS::Organizations::Policy, type SERVICE_CONTROL_POLICY)."""
    found = []
    for res in asm.of_type("AWS::Organizations::Policy"):
        if res.props.get("Type") != "SERVICE_CONTROL_POLICY":
            continue
        if account in [str(t) for t in asm.resolve(res.stack, res.props.get("TargetIds", []))]:
            content = asm.resolve(res.stack, res.props["Content"])
            found.append((str(asm.resolve(res.stack, res.props["Name"])), content))
    if found:
        # An organization starts with FullAWSAccess attached everywhere; SCPs here only subtract from it.
        found.insert(0, ("FullAWSAccess", {"Version": "2012-10-17", "Statement": [ALLOW_ALL]}))
    return found


ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def resource_policy(asm: Assembly, res: Res) -> Any | None:
    """The resource policy AWS would evaluate for `res`, assembled from the templates."""
    kind = res.type
    if kind == "AWS::KMS::Key":
        return asm.resolve(res.stack, res.props["KeyPolicy"])
    if kind == "AWS::IAM::Role":
        return asm.resolve(res.stack, res.props["AssumeRolePolicyDocument"])
    attached = {
        "AWS::S3::Bucket": ("AWS::S3::BucketPolicy", "Bucket", asm.ref(res)),
        "AWS::SNS::Topic": ("AWS::SNS::TopicPolicy", "Topics", asm.ref(res)),
        "AWS::SQS::Queue": ("AWS::SQS::QueuePolicy", "Queues", asm.ref(res)),
        "AWS::SecretsManager::Secret": ("AWS::SecretsManager::ResourcePolicy", "SecretId", asm.ref(res)),
    }
    if kind in attached:
        policy_type, prop, ident = attached[kind]
        statements: list[Any] = []
        for pol in asm.of_type(policy_type, stack=res.stack.name):
            targets = asm.resolve(pol.stack, pol.props[prop])
            if ident in (targets if isinstance(targets, list) else [targets]):
                doc_prop = "ResourcePolicy" if policy_type.endswith("ResourcePolicy") else "PolicyDocument"
                statements += asm.resolve(pol.stack, pol.props[doc_prop])["Statement"]
        return {"Version": "2012-10-17", "Statement": statements} if statements else None
    if kind == "AWS::Lambda::Function":
        return lambda_policy(asm, res)
    return None


def lambda_policy(asm: Assembly, fn: Res) -> Any | None:
    """A function's resource policy, as Lambda builds it from AddPermission calls (AWS::Lambda::Permission)."""
    arn, name = asm.arn(fn), asm.physical_name(fn)
    statements = []
    for perm in asm.of_type("AWS::Lambda::Permission", stack=fn.stack.name):
        target = str(asm.resolve(perm.stack, perm.props["FunctionName"]))
        if target not in (arn, name):
            continue
        principal = str(asm.resolve(perm.stack, perm.props["Principal"]))
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Principal": {"Service": principal} if principal.endswith(".amazonaws.com") else {"AWS": principal},
            "Action": asm.resolve(perm.stack, perm.props["Action"]),
            "Resource": arn,
        }
        conditions: dict[str, Any] = {}
        if "SourceArn" in perm.props:
            conditions["ArnLike"] = {"aws:SourceArn": asm.resolve(perm.stack, perm.props["SourceArn"])}
        if "SourceAccount" in perm.props:
            conditions["StringEquals"] = {"aws:SourceAccount": asm.resolve(perm.stack, perm.props["SourceAccount"])}
        if conditions:
            statement["Condition"] = conditions
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


# ---- ready-made parties and targets ------------------------------------------------------------------------------
def service(name: str, account: str = "") -> Who:
    """An AWS service principal (CloudTrail, Config, ...): no identity policies, only the resource side counts."""
    return lambda asm: Party(principal=name, account=account)


def role_session(
    path: str,
    session: str,
    *,
    source_identity: str | None = None,
    tags: Mapping[str, str] | None = None,
    extra: Sequence[tuple[str, Any]] = (),
) -> Who:
    """A session of a role in the templates, with everything attached to the role, its boundary and the SCPs."""

    def build(asm: Assembly) -> Party:
        role = asm.at(path)
        name, account = asm.physical_name(role), role.stack.account
        context: dict[str, str | list[str]] = {
            "aws:PrincipalArn": asm.arn(role),
            "aws:PrincipalAccount": account,
            "aws:PrincipalType": "AssumedRole",
            "aws:userid": f"{asm.get_att(role, 'RoleId')}:{session}",
            "aws:SecureTransport": "true",
        }
        if source_identity is not None:
            context["aws:SourceIdentity"] = source_identity
        for key, value in (tags or {}).items():
            context[f"aws:PrincipalTag/{key}"] = value
        return Party(
            principal=f"arn:aws:sts::{account}:assumed-role/{name}/{session}",
            account=account,
            identity=tuple(identity_policies(asm, role)) + tuple(extra),
            boundary=tuple(boundary_of(asm, role)),
            scps=tuple(scps_for(asm, account)),
            context=context,
        )

    return build


def outside_role(account_of: str, name: str, policies: Sequence[str] = ("AdministratorAccess",)) -> Who:
    """A role the templates do not define (an account administrator, CloudFormation's execution role), holding AWS
    managed policies. `account_of` names a stack whose account it lives in."""

    def build(asm: Assembly) -> Party:
        account = asm.stack(account_of).account
        arn = f"arn:aws:iam::{account}:role/{name}"
        return Party(
            principal=f"arn:aws:sts::{account}:assumed-role/{name}/session",
            account=account,
            identity=tuple((p, managed_policy(asm, f"arn:aws:iam::aws:policy/{p}")) for p in policies),
            scps=tuple(scps_for(asm, account)),
            context={"aws:PrincipalArn": arn, "aws:PrincipalAccount": account, "aws:SecureTransport": "true"},
        )

    return build


def at(path: str, suffix: str = "", *, with_tags: bool = False, stack_tag: bool = False) -> What:
    """The resource at a construct path (plus an object key or sub-path), with its resource policy.

    `with_tags`: the tags its template gives it, as `aws:ResourceTag/<key>` (for requests whose action takes them).
    `stack_tag`: the `aws:cloudformation:stack-name` tag that CloudFormation puts on every resource it creates.
    """

    def build(asm: Assembly) -> Target:
        res = asm.at(path)
        context: dict[str, str | list[str]] = {}
        if with_tags:
            template_tags = asm.resolve(res.stack, res.props.get("Tags", []))
            context = {f"aws:ResourceTag/{t['Key']}": str(t["Value"]) for t in template_tags}
        if stack_tag:
            context["aws:ResourceTag/aws:cloudformation:stack-name"] = res.stack.name
        return Target(asm.arn(res) + suffix, res.stack.account, resource_policy(asm, res), context)

    return build


def arn(value: str | Callable[[Assembly], str], account_of: str) -> What:
    """A resource the templates do not hold (no resource policy), in the account of stack `account_of`."""

    def build(asm: Assembly) -> Target:
        return Target(arn=value(asm) if callable(value) else value, account=asm.stack(account_of).account, policy=None)

    return build


# ---- encryption context --------------------------------------------------------------------------------------------
def _ec_holds(operator: str, expected: Any, actual: str | None) -> bool:
    base = operator.removesuffix("IfExists")
    if actual is None:
        # An absent key fails a positive operator and satisfies a negated one (or any ...IfExists).
        return operator.endswith("IfExists") or "Not" in base
    values = expected if isinstance(expected, list) else [expected]
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(actual, str(v)) for v in values)
    if base in ("StringNotEquals", "ArnNotEquals"):
        return actual not in values
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(fnmatch.fnmatchcase(actual, str(v)) for v in values)
    raise CaseError(f"operator {operator} on an encryption-context key is not judged by the harness")


def bind_encryption_context(policy: Any, context: Mapping[str, str] | None, action: str) -> Any:
    """`policy` with its `kms:EncryptionContext:*` conditions decided against `context` (see the module doc).

    Only the KMS operations that take an encryption context carry one; for any other action the keys are absent.
    """
    if policy is None:
        return None
    if context is None and not action.lower().startswith(EC_OPERATIONS):
        context = {}
    policy = copy.deepcopy(policy)
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    kept = []
    for statement in statements:
        applies = True
        for operator, entries in list(statement.get("Condition", {}).items()):
            for key in [k for k in entries if k.startswith(EC_PREFIX)]:
                if context is None:
                    raise CaseError(f"a statement conditions on {key}; the case must say which context it sends")
                actual = context.get(key.removeprefix(EC_PREFIX))
                if not _ec_holds(operator, entries.pop(key), actual):
                    applies = False
            if not entries:
                del statement["Condition"][operator]
        if statement.get("Condition") == {}:
            del statement["Condition"]
        if applies:
            kept.append(statement)
    policy["Statement"] = kept
    return policy


# ---- running a table ---------------------------------------------------------------------------------------------
def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: install Node 20 (the README's prerequisites)")
    return node


def simulation(asm: Assembly, case: Case) -> dict[str, Any]:
    party, target = case.who(asm), case.target(asm)
    # Every signed request names its region; global services (IAM, STS's global endpoint) answer from us-east-1.
    region = target.arn.split(":")[3] if target.arn.count(":") >= 5 else ""
    context = {"aws:RequestedRegion": region or "us-east-1", **party.context, **target.context, **case.context}
    ec = case.encryption_context

    def policies(items: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        return [{"name": n, "policy": bind_encryption_context(p, ec, case.action)} for n, p in items]

    sim: dict[str, Any] = {
        "request": {
            "principal": party.principal,
            "action": case.action,
            "resource": {"resource": target.arn, "accountId": target.account},
            "contextVariables": context,
        },
        "identityPolicies": policies(party.identity),
        "serviceControlPolicies": [{"orgIdentifier": "r-root", "policies": policies(party.scps)}] if party.scps else [],
        "resourceControlPolicies": [],
    }
    if party.boundary:
        sim["permissionBoundaryPolicies"] = policies(party.boundary)
    if target.policy is not None:
        sim["resourcePolicy"] = bind_encryption_context(target.policy, ec, case.action)
    return sim


def judge(asm: Assembly, cases: Sequence[Case]) -> dict[str, Verdict]:
    """Every case's verdict, from one run of the engine; a case that cannot be built gets an Error verdict."""
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate case ids: {sorted(duplicates)}")
    verdicts: dict[str, Verdict] = {}
    batch: list[tuple[str, dict[str, Any]]] = []
    for case in cases:
        try:
            batch.append((case.id, simulation(asm, case)))
        except (UnresolvedError, CaseError, KeyError) as err:
            verdicts[case.id] = Verdict("Error", error=f"{type(err).__name__}: {err}")
    if batch:
        out = subprocess.run(
            [_node(), str(SIMULATE)],
            input=json.dumps([s for _, s in batch]),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"simulate.mjs failed: {out.stderr.strip()[-2000:]}")
        for (case_id, _), raw in zip(batch, json.loads(out.stdout), strict=True):
            verdicts[case_id] = Verdict(raw["result"], tuple(raw.get("ignored", [])), raw.get("error") or "")
    return verdicts


def check(case: Case, verdict: Verdict) -> None:
    """Fail unless the engine judged the whole request and reached the expected decision."""
    where = f"{case.id}: {case.action} ({case.reason})"
    assert not verdict.error, f"{where}: the engine could not judge it: {verdict.error}"
    assert not verdict.ignored, f"{where}: the engine ignored context keys {list(verdict.ignored)}"
    if case.expect == "allow":
        assert verdict.allowed, f"{where}: expected Allowed, got {verdict.result}"
    else:
        assert not verdict.allowed, f"{where}: expected a denial, got {verdict.result}"
