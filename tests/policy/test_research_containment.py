"""R&D containment: what a researcher on mlbase-ResearchDeveloper can and cannot do, judged by the IAM engine.

The researcher is a session of the synthesized role (PowerUserAccess, the workload-IAM policy, the permission
boundary; SCPs when the config turns them on), named `yuki` by its source identity as the trust policy requires.
`taro` is the other researcher. Resource tags come from the templates where the resource is in them (workstations,
their volumes); CloudFormation's own `aws:cloudformation:stack-name` tag is added as AWS documents it does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.policy.assembly import Assembly
from tests.policy.engine import (
    Case,
    Party,
    Target,
    Verdict,
    What,
    Who,
    at,
    check,
    judge,
    managed_policy,
    role_session,
)

R, REGION = "222222222222", "ap-northeast-1"
ME, OTHER = "yuki", "taro"
DEV = role_session("Research/Access/ResearchDeveloper", ME, source_identity=ME)
ADMIN = role_session("Research/Access/PlatformAdmin", "hanako")


def unnamed_workload_role(asm: Assembly) -> Party:
    """The same kind of role assumed by a service (an instance profile): no source identity in its session."""
    party = workload_role(asm)
    context = {k: v for k, v in party.context.items() if k != "aws:SourceIdentity"}
    return Party(party.principal.replace("/yuki", "/i-0123456789abcdef0"), party.account, party.identity,
                 party.boundary, party.scps, context)  # fmt: skip


def workload_role(asm: Assembly) -> Party:
    """A role a researcher made for a workload: AdministratorAccess inside the boundary (what CreateRole allows),
    used in a chained session that keeps the researcher's source identity."""
    boundary = asm.at("Research/Access/Boundary/Policy")
    return Party(
        principal=f"arn:aws:sts::{R}:assumed-role/yuki-admin/yuki",
        account=R,
        identity=(("AdministratorAccess", managed_policy(asm, "arn:aws:iam::aws:policy/AdministratorAccess")),),
        boundary=((asm.physical_name(boundary), asm.resolve(boundary.stack, boundary.props["PolicyDocument"])),),
        context={
            "aws:PrincipalArn": f"arn:aws:iam::{R}:role/yuki-admin",
            "aws:PrincipalAccount": R,
            "aws:SourceIdentity": ME,
            "aws:SecureTransport": "true",
        },
    )


JUSTIFICATION = "mlbase:world-ingress-justification"


def arn_in(value: str) -> What:
    return lambda asm: Target(value, R, None)


def secret(name: str) -> What:
    """A hand-made secret (not in the templates) with the resource policy the templates attach to it by name."""

    def build(asm: Assembly) -> Target:
        statements: list[Any] = []
        for pol in asm.of_type("AWS::SecretsManager::ResourcePolicy"):
            if asm.resolve(pol.stack, pol.props["SecretId"]) == name:
                statements += asm.resolve(pol.stack, pol.props["ResourcePolicy"])["Statement"]
        policy = {"Version": "2012-10-17", "Statement": statements} if statements else None
        return Target(f"arn:aws:secretsmanager:{REGION}:{R}:secret:{name}-AbCdEf", R, policy)

    return build


def in_stack(stack: str) -> dict[str, str]:
    # CloudFormation tags every resource it creates with the stack's name; nobody can write an aws: tag.
    return {"aws:ResourceTag/aws:cloudformation:stack-name": stack}


INSTANCE = "Research/Workbench/{}/Instance"
VOLUME = "Research/Workbench/{}/DataVolume"


MACHINE_ACTIONS = (
    ("session", "ssm:StartSession", "instance", "a shell on the machine"),
    ("send-command", "ssm:SendCommand", "instance", "commands run as root on the machine"),
    ("modify-attribute", "ec2:ModifyInstanceAttribute", "instance", "user data, instance type, security groups"),
    ("metadata-options", "ec2:ModifyInstanceMetadataOptions", "instance", "turning IMDSv2 off"),
    ("stop", "ec2:StopInstances", "instance", "stopping someone's run"),
    ("terminate", "ec2:TerminateInstances", "instance", "destroying someone's machine"),
    ("reboot", "ec2:RebootInstances", "instance", "interrupting someone's run"),
    ("detach-volume", "ec2:DetachVolume", "volume", "taking someone's data volume"),
    ("delete-volume", "ec2:DeleteVolume", "volume", "deleting someone's data"),
    ("snapshot-volume", "ec2:CreateSnapshot", "volume", "copying someone's data"),
    ("attach-volume", "ec2:AttachVolume", "volume", "mounting someone's data on one's own machine"),
)


def build_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    for short, action, kind, reason in MACHINE_ACTIONS:
        for whose, expect in ((OTHER, "deny"), (ME, "allow")):
            path = (INSTANCE if kind == "instance" else VOLUME).format(whose.title())
            label, why = ("others", reason) if whose == OTHER else ("own", f"one's own machine: {reason}")
            add(Case(f"{label}-machine-{short}", DEV, action, at(path, with_tags=True), expect, why))
    taro = at(INSTANCE.format("Taro"), with_tags=True)
    add(
        Case(
            "others-machine-steal-owner-tag",
            DEV,
            "ec2:CreateTags",
            taro,
            "deny",
            "re-tagging someone's machine as one's own",
            context={"aws:RequestTag/Owner": ME, "aws:TagKeys": ["Owner"]},
        )
    )
    add(
        Case(
            "others-machine-delete-owner-tag",
            DEV,
            "ec2:DeleteTags",
            taro,
            "deny",
            "untagging someone's machine",
            context={"aws:TagKeys": ["Owner"]},
        )
    )
    add(
        Case(
            "impersonate-owner-on-new-volume",
            DEV,
            "ec2:CreateTags",
            arn_in(f"arn:aws:ec2:{REGION}:{R}:volume/vol-1"),
            "deny",
            "naming another researcher as the owner of a new resource (their budget pays)",
            context={"aws:RequestTag/Owner": OTHER, "aws:TagKeys": ["Owner"], "ec2:CreateAction": "CreateVolume"},
        )
    )
    add(
        Case(
            "launch-without-owner",
            DEV,
            "ec2:RunInstances",
            arn_in(f"arn:aws:ec2:{REGION}:{R}:instance/*"),
            "deny",
            "an untagged machine escapes per-researcher budgets",
            context={"ec2:InstanceType": "g5.xlarge"},
        )
    )
    add(
        Case(
            "launch-outside-guarded-region",
            DEV,
            "ec2:RunInstances",
            arn_in(f"arn:aws:ec2:us-east-1:{R}:instance/*"),
            "deny",
            "no Config recorder or security-group rule watches us-east-1",
            context={"ec2:InstanceType": "g5.xlarge", "aws:RequestTag/Owner": ME, "aws:TagKeys": ["Owner"]},
        )
    )
    add(
        Case(
            "launch-largest-gpu",
            DEV,
            "ec2:RunInstances",
            arn_in(f"arn:aws:ec2:{REGION}:{R}:instance/*"),
            "deny",
            "p4d.24xlarge is not in the researcher instance-type allow-list",
            context={"ec2:InstanceType": "p4d.24xlarge", "aws:RequestTag/Owner": ME, "aws:TagKeys": ["Owner"]},
        )
    )
    add(
        Case(
            "snapshot-share-others",
            DEV,
            "ec2:ModifySnapshotAttribute",
            arn_in(f"arn:aws:ec2:{REGION}::snapshot/snap-1"),
            "deny",
            "sharing someone's snapshot outside",
            context={"aws:ResourceTag/Owner": OTHER},
        )
    )
    # Slack secrets.
    for name in ("mlbase/slack", "mlbase/slack-signing"):
        for action in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                       "secretsmanager:PutResourcePolicy", "secretsmanager:DeleteSecret"):  # fmt: skip
            add(
                Case(
                    f"secret-{name.split('/')[1]}-{action.split(':')[1]}",
                    DEV,
                    action,
                    secret(name),
                    "deny",
                    "the Slack credentials redirect or silence every alert and sign /gpu requests",
                )
            )
    # Platform functions.
    for label, path in (("gpu-bot", "Research/Workbench/GpuBot/Function"),
                        ("idle-monitor", "Research/Workbench/IdleMonitor/Function"),
                        ("notifier", "Research/Guardrails/Notifications/SlackNotifier/Function")):  # fmt: skip
        for action in ("lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration", "lambda:InvokeFunction",
                       "lambda:AddPermission", "lambda:PutFunctionEventInvokeConfig"):  # fmt: skip
            add(
                Case(
                    f"function-{label}-{action.split(':')[1]}",
                    DEV,
                    action,
                    at(path),
                    "deny",
                    "a platform function runs with platform rights; invoking it forges its input",
                )
            )
    add(
        Case(
            "function-squat-platform-name",
            DEV,
            "lambda:CreateFunction",
            arn_in(f"arn:aws:lambda:{REGION}:{R}:function:mlbase-gpu-bot-2"),
            "deny",
            "a function under the platform's name prefix would inherit its protections' blind spots",
        )
    )
    # Platform managed policies.
    for label, path in (("boundary", "Research/Access/Boundary/Policy"),
                        ("developer-iam", "Research/Access/DeveloperIam"),
                        ("peering-accepter", "Research/Network/PeeringAccepter/Policy")):  # fmt: skip
        for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion",
                       "iam:DeletePolicy"):  # fmt: skip
            add(
                Case(
                    f"policy-{label}-{action.split(':')[1]}",
                    DEV,
                    action,
                    at(path),
                    "deny",
                    "a new version of a platform policy rewrites a platform role's rights",
                )
            )
    # Long-lived and external credentials.
    user = arn_in(f"arn:aws:iam::{R}:user/backdoor")
    for action, target in (("iam:CreateUser", user), ("iam:CreateAccessKey", user), ("iam:CreateLoginProfile", user),
                           ("iam:CreateServiceSpecificCredential", user),
                           ("iam:CreateOpenIDConnectProvider", arn_in(f"arn:aws:iam::{R}:oidc-provider/example.com")),
                           ("iam:CreateSAMLProvider", arn_in(f"arn:aws:iam::{R}:saml-provider/idp"))):  # fmt: skip
        add(
            Case(
                f"credentials-{action.split(':')[1]}",
                DEV,
                action,
                target,
                "deny",
                "credentials that skip production MFA and outlive the session",
            )
        )
    # Protected roles.
    accepter = "Research/Network/PeeringAccepter/Role"
    for action in ("iam:UpdateAssumeRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:PassRole",
                   "iam:DeleteRole", "sts:AssumeRole"):  # fmt: skip
        add(
            Case(
                f"role-peering-accepter-{action.split(':')[1]}",
                DEV,
                action,
                at(accepter),
                "deny",
                "the peering accepter is trusted by production",
            )
        )
    add(
        Case(
            "role-self-put-policy",
            DEV,
            "iam:PutRolePolicy",
            at("Research/Access/ResearchDeveloper"),
            "deny",
            "a researcher cannot widen their own role",
        )
    )
    add(
        Case(
            "role-create-without-boundary",
            DEV,
            "iam:CreateRole",
            arn_in(f"arn:aws:iam::{R}:role/yuki-escape"),
            "deny",
            "a role without the boundary would launder privilege",
        )
    )
    add(
        Case(
            "role-create-platform-name",
            DEV,
            "iam:CreateRole",
            arn_in(f"arn:aws:iam::{R}:role/mlbase-lookalike"),
            "deny",
            "a role under a protected name could be mistaken for the platform's",
            context={"iam:PermissionsBoundary": f"arn:aws:iam::{R}:policy/mlbase-ResearchBoundary"},
        )
    )
    add(
        Case(
            "role-remove-boundary",
            DEV,
            "iam:DeleteRolePermissionsBoundary",
            arn_in(f"arn:aws:iam::{R}:role/yuki-training"),
            "deny",
            "the boundary stays on every researcher role",
        )
    )
    # Evidence and detection.
    trail_group = f"arn:aws:logs:{REGION}:{R}:log-group:/aws/cloudtrail/mlbase-trail:log-stream:x"
    for action in ("logs:DeleteLogStream", "logs:DeleteLogGroup", "logs:PutRetentionPolicy",
                   "logs:DisassociateKmsKey"):  # fmt: skip
        add(
            Case(
                f"evidence-trail-group-{action.split(':')[1]}",
                DEV,
                action,
                arn_in(trail_group),
                "deny",
                "the trail's CloudWatch copy is evidence",
            )
        )
        add(
            Case(
                f"evidence-flow-logs-{action.split(':')[1]}",
                DEV,
                action,
                at("Research/Network/Research/FlowLogGroup"),
                "deny",
                "flow logs are evidence",
            )
        )
    for action in ("cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "config:StopConfigurationRecorder",
                   "config:DeleteConfigRule", "config:PutConfigRule", "guardduty:DeleteDetector",
                   "guardduty:CreateFilter", "securityhub:DisableSecurityHub", "access-analyzer:CreateArchiveRule",
                   "access-analyzer:DeleteAnalyzer", "iam:UpdateAccountPasswordPolicy",
                   "s3:PutAccountPublicAccessBlock", "ec2:DisableEbsEncryptionByDefault"):  # fmt: skip
        add(
            Case(
                f"detection-{action.replace(':', '-')}",
                DEV,
                action,
                arn_in(_detection_arn(action)),
                "deny",
                "audit and detection belong to the platform",
            )
        )
    # Security groups and the justification tag.
    sg = "Research/Workbench/WorkstationSecurityGroup"
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
                   "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules"):  # fmt: skip
        add(
            Case(
                f"platform-sg-{action.split(':')[1]}",
                DEV,
                action,
                at(sg, stack_tag=True),
                "deny",
                "the platform's security groups are its network edge",
            )
        )
    add(
        Case(
            "justification-tag-own-group",
            DEV,
            "ec2:CreateTags",
            arn_in(f"arn:aws:ec2:{REGION}:{R}:security-group/sg-0123456789abcdef0"),
            "deny",
            "a self-written justification would make a world-open group compliant",
            context={"aws:TagKeys": [JUSTIFICATION], f"aws:RequestTag/{JUSTIFICATION}": "need it for demo"},
        )
    )
    add(
        Case(
            "peering-accept",
            DEV,
            "ec2:AcceptVpcPeeringConnection",
            arn_in(f"arn:aws:ec2:{REGION}:{R}:vpc-peering-connection/pcx-1"),
            "deny",
            "peering decides what production can reach",
        )
    )
    # AMIs and the guardrail path.
    ami = f"arn:aws:ssm:{REGION}:{R}:parameter/mlbase/ami/workstation/driver550-cuda12.4-v1"
    for action in ("ssm:PutParameter", "ssm:DeleteParameter", "ssm:LabelParameterVersion"):
        add(
            Case(
                f"ami-parameter-{action.split(':')[1]}",
                DEV,
                action,
                arn_in(ami),
                "deny",
                "everyone's next workstation is built from that AMI",
            )
        )
    session_doc = f"arn:aws:ssm:{REGION}:{R}:document/SSM-SessionManagerRunShell"
    for action in ("ssm:UpdateDocument", "ssm:DeleteDocument", "ssm:UpdateDocumentDefaultVersion"):
        add(
            Case(
                f"session-preferences-{action.split(':')[1]}",
                DEV,
                action,
                arn_in(session_doc),
                "deny",
                "Session Manager preferences decide whether sessions are logged and encrypted",
            )
        )
    topic = "Research/Guardrails/Notifications/Topic"
    for action in ("sns:SetTopicAttributes", "sns:Subscribe", "sns:DeleteTopic", "sns:Publish"):
        add(
            Case(
                f"notifications-topic-{action.split(':')[1]}",
                DEV,
                action,
                at(topic),
                "deny",
                "the notification path carries every guardrail alert",
            )
        )
    for label, path in _platform_rules():
        for action in ("events:DisableRule", "events:PutTargets", "events:RemoveTargets", "events:DeleteRule"):
            add(
                Case(
                    f"rule-{label}-{action.split(':')[1]}",
                    DEV,
                    action,
                    at(path),
                    "deny",
                    "EventBridge rules feed the guardrails",
                )
            )
    assets = f"arn:aws:s3:::cdk-hnb659fds-assets-{R}-{REGION}/0123abcd.zip"
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy"):
        target = arn_in(assets.rsplit("/", 1)[0] if action == "s3:PutBucketPolicy" else assets)
        add(Case(f"cdk-assets-{action.split(':')[1]}", DEV, action, target, "deny",
                 "a replaced deploy asset is code the next platform deploy runs with platform rights"))  # fmt: skip
    add(Case("cdk-image-assets-PutImage", DEV, "ecr:PutImage",
             arn_in(f"arn:aws:ecr:{REGION}:{R}:repository/cdk-hnb659fds-container-assets-{R}-{REGION}"), "deny",
             "a replaced image asset is code the next platform deploy runs"))  # fmt: skip
    add(Case("allow-own-cdk-assets", DEV, "s3:PutObject",
             arn_in(f"arn:aws:s3:::cdk-yuki-assets-{R}-{REGION}/x.zip"), "allow",
             "a researcher's own CDK bootstrap uses a qualifier of its own"))  # fmt: skip
    add(Case("bot-replay-table-DeleteItem", DEV, "dynamodb:DeleteItem",
             arn_in(f"arn:aws:dynamodb:{REGION}:{R}:table/Research-Workbench-SeenSignatures5AB9D970-1A2B"), "deny",
             "removing a seen signature would let a recorded /gpu request be replayed"))  # fmt: skip
    cis_alarm = f"arn:aws:cloudwatch:{REGION}:{R}:alarm:mlbase-cis-RootUsage"
    for action in ("cloudwatch:DeleteAlarms", "cloudwatch:DisableAlarmActions", "cloudwatch:PutMetricAlarm",
                   "cloudwatch:SetAlarmState"):  # fmt: skip
        add(Case(f"cis-alarm-{action.split(':')[1]}", DEV, action, arn_in(cis_alarm), "deny",
                 "a deleted, muted or rewritten alarm silences a guardrail"))  # fmt: skip
    add(Case("platform-alarm-DisableAlarmActions", DEV, "cloudwatch:DisableAlarmActions",
             arn_in(f"arn:aws:cloudwatch:{REGION}:{R}:alarm:Research-Workbench-GpuJobFailuresAlarm-1A2B"), "deny",
             "the platform's failure alarms are guardrails too"))  # fmt: skip
    add(Case("allow-own-alarm", DEV, "cloudwatch:PutMetricAlarm",
             arn_in(f"arn:aws:cloudwatch:{REGION}:{R}:alarm:yuki-gpu-idle"), "allow",
             "researchers may alarm on their own metrics"))  # fmt: skip
    add(
        Case(
            "budget-modify",
            DEV,
            "budgets:ModifyBudget",
            arn_in(f"arn:aws:budgets::{R}:budget/mlbase-research-monthly"),
            "deny",
            "the platform's budgets watch researchers' spend",
        )
    )
    add(
        Case(
            "stack-delete",
            DEV,
            "cloudformation:DeleteStack",
            arn_in(f"arn:aws:cloudformation:{REGION}:{R}:stack/Research-Workbench/1"),
            "deny",
            "the platform's stacks are changed by reviewed deploys",
        )
    )
    add(
        Case(
            "platform-key-deletion",
            DEV,
            "kms:ScheduleKeyDeletion",
            arn_in(f"arn:aws:kms:{REGION}:{R}:key/k-1"),
            "deny",
            "a platform key (flow logs, trail log group) decides whether evidence stays readable",
            context=in_stack("Research-Network"),
        )
    )
    # Positive controls: the account stays useful.
    boundary = f"arn:aws:iam::{R}:policy/mlbase-ResearchBoundary"
    own_role = arn_in(f"arn:aws:iam::{R}:role/yuki-training")
    own_launch = {"ec2:InstanceType": "g5.xlarge", "aws:RequestTag/Owner": ME, "aws:TagKeys": ["Owner"]}
    for case_id, action, target, context, reason in (
        ("create-role-with-boundary", "iam:CreateRole", own_role, {"iam:PermissionsBoundary": boundary},
         "roles for one's own workloads, inside the boundary"),
        ("put-own-role-policy", "iam:PutRolePolicy", own_role, {}, "policies on one's own workload role"),
        ("pass-own-role", "iam:PassRole", own_role, {"iam:PassedToService": "sagemaker.amazonaws.com"},
         "passing one's own role to a training job"),
        ("s3-create-bucket", "s3:CreateBucket", arn_in("arn:aws:s3:::yuki-datasets"), {}, "one's own data"),
        ("s3-put-object", "s3:PutObject", arn_in("arn:aws:s3:::yuki-datasets/train/x.parquet"), {}, "one's own data"),
        ("sagemaker-training", "sagemaker:CreateTrainingJob",
         arn_in(f"arn:aws:sagemaker:{REGION}:{R}:training-job/yuki-1"), {}, "training jobs"),
        ("ecr-repository", "ecr:CreateRepository", arn_in(f"arn:aws:ecr:{REGION}:{R}:repository/yuki/model"), {},
         "one's own images"),
        ("ecr-push", "ecr:PutImage", arn_in(f"arn:aws:ecr:{REGION}:{R}:repository/yuki/model"), {},
         "one's own images"),
        ("describe-instances", "ec2:DescribeInstances", arn_in("*"), {"aws:RequestedRegion": REGION},
         "seeing the account"),
        ("launch-own-gpu", "ec2:RunInstances", arn_in(f"arn:aws:ec2:{REGION}:{R}:instance/*"), own_launch,
         "launching a listed GPU type tagged as one's own"),
        ("tag-new-volume-as-own", "ec2:CreateTags", arn_in(f"arn:aws:ec2:{REGION}:{R}:volume/vol-2"),
         {"aws:RequestTag/Owner": ME, "aws:TagKeys": ["Owner"], "ec2:CreateAction": "CreateVolume"},
         "tagging a new resource with one's own name"),
    ):  # fmt: skip
        add(Case(f"allow-{case_id}", DEV, action, target, "allow", reason, context=context))
    add(Case("allow-session-document", DEV, "ssm:StartSession",
             arn_in(f"arn:aws:ssm:{REGION}:{R}:document/SSM-SessionManagerRunShell"), "allow",
             "StartSession is authorized on the session document as well as on the instance"))  # fmt: skip
    add(
        Case(
            "allow-read-bot-function",
            DEV,
            "lambda:GetFunction",
            at("Research/Workbench/GpuBot/Function"),
            "allow",
            "reading a platform function's configuration",
        )
    )
    add(
        Case(
            "allow-read-flow-logs",
            DEV,
            "logs:FilterLogEvents",
            at("Research/Network/Research/FlowLogGroup"),
            "allow",
            "reading flow logs to debug one's own network",
        )
    )
    add(
        Case(
            "allow-admin-session-on-any-machine",
            ADMIN,
            "ssm:StartSession",
            taro,
            "allow",
            "platform admins keep full access",
        )
    )
    add(
        Case(
            "allow-admin-reads-slack-secret",
            ADMIN,
            "secretsmanager:GetSecretValue",
            secret("mlbase/slack"),
            "allow",
            "platform admins manage the Slack secrets",
        )
    )
    # A role of an instance or a job carries no source identity: it acts on no researcher's machine at all.
    for action in ("ec2:StopInstances", "ssm:SendCommand", "ec2:DetachVolume"):
        target = at(VOLUME.format("Taro") if "Volume" in action else INSTANCE.format("Taro"), with_tags=True)
        add(Case(f"workload-role-{action.split(':')[1]}-others-machine", unnamed_workload_role, action, target,
                 "deny", "a role without a source identity would slip past the owner check"))  # fmt: skip
    add(
        Case(
            "workload-role-stops-own-machine",
            unnamed_workload_role,
            "ec2:StopInstances",
            at(INSTANCE.format("Yuki"), with_tags=True),
            "deny",
            "machines are acted on from a named session",
        )
    )
    monitor = role_session("Research/Workbench/IdleMonitor/Function/ServiceRole", "idle-monitor")
    bot = role_session("Research/Workbench/GpuBot/Function/ServiceRole", "gpu-bot")
    add(Case("allow-idle-monitor-reads-slack-secret", monitor, "secretsmanager:GetSecretValue",
             secret("mlbase/slack"), "allow", "the idle monitor posts to Slack"))  # fmt: skip
    add(
        Case(
            "idle-monitor-cannot-read-signing-secret",
            monitor,
            "secretsmanager:GetSecretValue",
            secret("mlbase/slack-signing"),
            "deny",
            "only the bot and its job function verify Slack signatures",
        )
    )
    add(
        Case(
            "bot-cannot-read-slack-secret",
            bot,
            "secretsmanager:GetSecretValue",
            secret("mlbase/slack"),
            "deny",
            "the bot answers through Slack's response URL; only its job function holds the Slack token",
        )
    )
    return cases


def _detection_arn(action: str) -> str:
    by_action = {
        "config:StopConfigurationRecorder": f"arn:aws:config:{REGION}:{R}:configuration-recorder/default/r1",
        "guardduty:CreateFilter": f"arn:aws:guardduty:{REGION}:{R}:detector/d1/filter/quiet",
        "access-analyzer:CreateArchiveRule": f"arn:aws:access-analyzer:{REGION}:{R}:analyzer/a/archive-rule/all",
    }
    if action in by_action:
        return by_action[action]
    service = action.split(":")[0]
    return {
        "cloudtrail": f"arn:aws:cloudtrail:{REGION}:{R}:trail/mlbase-trail",
        "config": f"arn:aws:config:{REGION}:{R}:config-rule/config-rule-1",
        "guardduty": f"arn:aws:guardduty:{REGION}:{R}:detector/d1",
        "securityhub": f"arn:aws:securityhub:{REGION}:{R}:hub/default",
        "access-analyzer": f"arn:aws:access-analyzer:{REGION}:{R}:analyzer/mlbase-account",
    }.get(service, "*")


def _platform_rules() -> list[tuple[str, str]]:
    return [
        ("sg-non-compliant", "Research/Guardrails/SecurityGroupRules/NonCompliant"),
        ("sg-opened-to-world", "Research/Guardrails/SecurityGroupRules/OpenedToWorld"),
        ("guardduty-findings", "Research/Guardrails/SecurityBaseline/GuardDutyFindings"),
        ("security-hub-findings", "Research/Guardrails/SecurityBaseline/SecurityHubFindings"),
        ("access-analyzer-findings", "Research/Guardrails/SecurityBaseline/AccessAnalyzerFindings"),
    ]


CASES = build_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_containment(case: Case, verdicts: dict[str, Verdict]) -> None:
    check(case, verdicts[case.id])


def test_the_table_is_large_enough() -> None:
    denied = [c for c in CASES if c.expect == "deny"]
    allowed = [c for c in CASES if c.expect == "allow"]
    assert len(denied) >= 40
    assert len(allowed) >= 10


def test_boundary_fits_the_iam_size_quota(assembly: Assembly) -> None:
    """IAM caps a managed policy at 6,144 characters, whitespace excluded (IAM quotas page,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html)."""
    res = assembly.at("Research/Access/Boundary/Policy")
    document = json.dumps(assembly.resolve(res.stack, res.props["PolicyDocument"]), separators=(",", ":"))
    assert len(document) <= 6144, len(document)


def production_user(name: str) -> Who:
    """A production user signed in with fresh MFA, whose own policies allow it to call STS."""
    user = f"arn:aws:iam::111111111111:user/mlbase/people/{name}"
    context = {"aws:MultiFactorAuthPresent": "true", "aws:MultiFactorAuthAge": "60",
               "aws:PrincipalAccount": "111111111111", "aws:PrincipalArn": user}  # fmt: skip
    sts = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]}
    return lambda asm: Party(principal=user, account="111111111111", identity=(("sts", sts),), context=context)


def test_trust_requires_the_persons_own_name(assembly: Assembly) -> None:
    """Each researcher may assume the developer role only as themselves (sts:SourceIdentity = their user name)."""
    role = at("Research/Access/ResearchDeveloper")
    cases = []
    for name in (ME, OTHER):
        who = production_user(name)
        cases += [
            Case(f"assume-as-{name}", who, "sts:AssumeRole", role, "allow", "one's own name",
                 context={"sts:SourceIdentity": name}),
            Case(f"assume-as-other-{name}", who, "sts:AssumeRole", role, "deny", "someone else's name",
                 context={"sts:SourceIdentity": "hanako"}),
            Case(f"assume-unnamed-{name}", who, "sts:AssumeRole", role, "deny", "no source identity"),
        ]  # fmt: skip
    verdicts = judge(assembly, cases)
    for case in cases:
        check(case, verdicts[case.id])
