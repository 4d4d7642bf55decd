#!/usr/bin/env bash
# Runs on the machine that ran Packer: writes the new AMI ID to the SSM parameter PARAMETER_NAME
# (/mlbase/ami/<flavour>/<ami_version>), which the CDK resolves at deploy time.
set -euxo pipefail

: "${MANIFEST:?}"
: "${PARAMETER_NAME:?}"
: "${AWS_REGION:?}"

# The manifest accumulates builds; take the artifact of this run. Its artifact_id reads "region:ami-id".
run_uuid="$(jq -r '.last_run_uuid' "${MANIFEST}")"
artifact="$(jq -r --arg uuid "${run_uuid}" '.builds[] | select(.packer_run_uuid == $uuid) | .artifact_id' "${MANIFEST}")"
ami_id="${artifact#*:}"
case "${ami_id}" in
  ami-*) ;;
  *)
    echo "no AMI ID in ${MANIFEST} for run ${run_uuid}: '${artifact}'" >&2
    exit 1
    ;;
esac

# data-type aws:ec2:image makes SSM check that the value is an AMI this account can use.
aws ssm put-parameter \
  --region "${AWS_REGION}" \
  --name "${PARAMETER_NAME}" \
  --type String \
  --data-type "aws:ec2:image" \
  --value "${ami_id}" \
  --overwrite
