"""Which property changes replace a resource.

The CDK CLI ships the CloudFormation resource specification it uses for `cdk diff` (``db.json.gz`` in the
``aws-cdk`` npm package); reading it here keeps this report's replacement verdicts identical to the CLI's.
When that file is missing (no ``npm ci`` yet) a small table for the stateful types this platform uses stands in.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Literal

from tools.review.assembly import REPO_ROOT

Replacement = Literal["yes", "maybe", "no"]

CDK_SPEC_DB = REPO_ROOT / "node_modules" / "aws-cdk" / "db.json.gz"

# Fallback only: properties whose change replaces the resource, for the common stateful types.
_FALLBACK: dict[str, dict[str, Replacement]] = {
    "AWS::S3::Bucket": {"BucketName": "yes", "ObjectLockEnabled": "maybe"},
    "AWS::DynamoDB::Table": {"TableName": "yes", "KeySchema": "yes", "ImportSourceSpecification": "yes"},
    "AWS::DynamoDB::GlobalTable": {"TableName": "yes", "KeySchema": "yes"},
    "AWS::SQS::Queue": {"QueueName": "yes", "FifoQueue": "yes"},
    "AWS::SNS::Topic": {"TopicName": "yes", "FifoTopic": "yes"},
    "AWS::KMS::Key": {"KeySpec": "yes", "MultiRegion": "yes", "KeyUsage": "yes"},
    "AWS::Logs::LogGroup": {"LogGroupName": "yes"},
    "AWS::EFS::FileSystem": {"Encrypted": "yes", "KmsKeyId": "yes", "PerformanceMode": "yes"},
    "AWS::ECR::Repository": {"RepositoryName": "yes", "EncryptionConfiguration": "yes"},
    "AWS::EC2::VPC": {"CidrBlock": "yes", "InstanceTenancy": "maybe"},
    "AWS::EC2::Subnet": {"CidrBlock": "yes", "AvailabilityZone": "yes", "VpcId": "yes"},
    "AWS::EC2::SecurityGroup": {"GroupDescription": "yes", "GroupName": "yes", "VpcId": "yes"},
    "AWS::IAM::Role": {"RoleName": "yes", "Path": "yes"},
}


@cache
def _cdk_spec(path: Path) -> dict[str, dict[str, Replacement]]:
    """``{resource type: {property: yes|maybe}}`` from the CLI's spec database; empty when unreadable."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            db = json.load(handle)
        entities = db["schema"]["resource"]["entities"]
    except (OSError, ValueError, KeyError):
        return {}
    spec: dict[str, dict[str, Replacement]] = {}
    for entity in entities:
        props = {
            name: prop["causesReplacement"]
            for name, prop in entity.get("properties", {}).items()
            if prop.get("causesReplacement") in ("yes", "maybe")
        }
        spec[entity["cloudFormationType"]] = props
    return spec


def spec_source(path: Path = CDK_SPEC_DB) -> str:
    """Where the replacement knowledge comes from, for the report footer."""
    return "aws-cdk CLI resource spec" if _cdk_spec(path) else "built-in table"


def replacing_properties(resource_type: str, path: Path = CDK_SPEC_DB) -> dict[str, Replacement]:
    """Every top-level property of ``resource_type`` whose change replaces the resource (``yes`` or ``maybe``)."""
    spec = _cdk_spec(path) or _FALLBACK
    return dict(spec.get(resource_type, {}))


def property_replacement(resource_type: str, prop: str, path: Path = CDK_SPEC_DB) -> Replacement:
    """Whether changing top-level property ``prop`` of ``resource_type`` replaces the resource."""
    spec = _cdk_spec(path) or _FALLBACK
    return spec.get(resource_type, {}).get(prop, "no")
