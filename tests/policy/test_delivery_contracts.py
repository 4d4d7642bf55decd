"""Service deliveries outside the audit chain: uploads to the photo queue, VPC flow logs to CloudWatch Logs and S3.

Each case sends what the cited AWS page says the service sends.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.infra.conftest import synth_variant
from tests.policy.assembly import Assembly
from tests.policy.engine import Case, Target, Verdict, at, check, judge, role_session, service

PROD, REGION = "111111111111", "ap-northeast-1"
S3_TO_SQS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/grant-destinations-permissions-to-s3.html"
FLOW_CWL = "https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-cwl.html"
FLOW_S3 = "https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-s3.html"
LOGS_KMS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
LOGS_SSE_KMS_S3 = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-and-resource-policy.html#AWS-logs-SSE-KMS-S3"
)
QUEUE = "Production/PhotoService/FoodPhoto/Queue"
UPLOADS = "Production/PhotoService/Uploads/Bucket"


def upload_queue(asm: Assembly) -> Target:
    """The upload queue as S3 reaches it for the upload bucket: the bucket's ARN and account are what S3 sends."""
    queue = at(QUEUE)(asm)
    source = {"aws:SourceArn": asm.arn(asm.at(UPLOADS)), "aws:SourceAccount": PROD, "aws:SecureTransport": "true"}
    return replace(queue, context={**queue.context, **source})


def upload_queue_owned_by(account: str) -> Any:
    """The upload queue as S3 reaches it for a bucket of the upload bucket's name owned by `account`."""
    return lambda asm: replace(upload_queue(asm), context={**upload_queue(asm).context, "aws:SourceAccount": account})


def notification(case_id: str, action: str) -> Case:
    return Case(case_id, service("s3.amazonaws.com"), action, upload_queue, "allow",
                "S3 sends an upload's event to the queue", S3_TO_SQS)  # fmt: skip


def flow_log_cases(vpc: str) -> list[Case]:
    group = f"Production/Network/{vpc}/FlowLogGroup"
    role = f"Production/Network/{vpc}/FlowLog/IAMRole"
    source = {"aws:SourceAccount": PROD, "aws:SourceArn": f"arn:aws:ec2:{REGION}:{PROD}:vpc-flow-log/fl-0123456789"}
    session = role_session(role, "flow-logs")

    return [
        Case(f"flow-logs-{vpc}-assume-role", service("vpc-flow-logs.amazonaws.com"), "sts:AssumeRole", at(role),
             "allow", "the flow log service assumes the delivery role", FLOW_CWL, source),
        Case(f"flow-logs-{vpc}-create-stream", session, "logs:CreateLogStream", at(group, ":log-stream:eni-1-all"),
             "allow", "the delivery role creates a stream per network interface", FLOW_CWL),
        Case(f"flow-logs-{vpc}-put-events", session, "logs:PutLogEvents", at(group, ":log-stream:eni-1-all"),
             "allow", "the delivery role writes the records", FLOW_CWL),
        Case(f"flow-logs-{vpc}-other-group", session, "logs:PutLogEvents",
             at("Production/Network/Bastion/SessionLogGroup", ":log-stream:x"), "deny",
             "the delivery role writes only its own group", FLOW_CWL),
        Case(f"flow-logs-{vpc}-key", service(f"logs.{REGION}.amazonaws.com"), "kms:GenerateDataKey",
             at(f"Production/Network/{vpc}/FlowLogKey"),
             "allow", "CloudWatch Logs encrypts the group with its ARN as encryption context", LOGS_KMS, {},
             {"aws:logs:arn": f"arn:aws:logs:{REGION}:{PROD}:log-group:flow"}),
    ]  # fmt: skip


CASES = [
    notification("s3-notifies-upload-queue", "sqs:SendMessage"),
    notification("s3-checks-upload-queue", "sqs:GetQueueAttributes"),
    Case("s3-foreign-bucket", service("s3.amazonaws.com"), "sqs:SendMessage", at(QUEUE), "deny",
         "another bucket cannot feed the queue", S3_TO_SQS,
         {"aws:SourceArn": "arn:aws:s3:::someone-elses-bucket", "aws:SourceAccount": "333333333333",
          "aws:SecureTransport": "true"}),
    Case("s3-our-bucket-name-in-another-account", service("s3.amazonaws.com"), "sqs:SendMessage",
         upload_queue_owned_by("333333333333"), "deny",
         "a deleted bucket's name can be taken by another account: the page's policy also requires the bucket owner",
         S3_TO_SQS),
    *flow_log_cases("Management"),
    *flow_log_cases("Production"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_delivery_contract(case: Case, verdicts: dict[str, Verdict]) -> None:
    check(case, verdicts[case.id])


# ---- flow logs into the archive (network.flow_logs.destination: s3) -----------------------------------------------
@pytest.fixture(scope="module")
def s3_flow_logs(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    def edit(data: dict[str, Any]) -> None:
        data["network"]["flow_logs"]["destination"] = "s3"

    root = tmp_path_factory.mktemp("flow-logs-s3")
    synth_variant(root, edit)
    return Assembly(root / "cdk.out")


def test_flow_logs_deliver_into_the_archive(s3_flow_logs: Assembly) -> None:
    archive = "Production/Audit/LogArchive/Bucket"
    bucket_arn = f"arn:aws:s3:::mlbase-log-archive-{PROD}-{REGION}"
    source = {"aws:SourceAccount": PROD, "aws:SourceArn": f"arn:aws:logs:{REGION}:{PROD}:*"}
    delivery = service("delivery.logs.amazonaws.com")
    key = f"/vpc-flow-logs/AWSLogs/{PROD}/vpcflowlogs/{REGION}/2026/12/01/x.log.gz"
    cases = [
        Case("flow-logs-s3-acl-check", delivery, "s3:GetBucketAcl", at(archive), "allow",
             "log delivery checks the bucket ACL", FLOW_S3, source),
        Case("flow-logs-s3-list", delivery, "s3:ListBucket", at(archive), "allow",
             "log delivery lists the bucket", FLOW_S3, source),
        Case("flow-logs-s3-put", delivery, "s3:PutObject", at(archive, key), "allow",
             "log delivery writes under the flow-log prefix", FLOW_S3,
             {**source, "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case("flow-logs-s3-outside-prefix", delivery, "s3:PutObject", at(archive, f"/AWSLogs/{PROD}/x"), "deny",
             "log delivery cannot write among CloudTrail's files", FLOW_S3,
             {**source, "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case("flow-logs-s3-key", delivery, "kms:GenerateDataKey", at("Production/Audit/LogArchive/Key"), "allow",
             "the archive is SSE-KMS: log delivery needs the key", LOGS_SSE_KMS_S3, source,
             {"aws:s3:arn": bucket_arn}),
    ]  # fmt: skip
    verdicts = judge(s3_flow_logs, cases)
    for case in cases:
        check(case, verdicts[case.id])
