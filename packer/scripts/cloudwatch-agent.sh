#!/usr/bin/env bash
# CloudWatch agent with files/cloudwatch-agent.json: publishes nvidia_smi_utilization_gpu and GPU memory per
# InstanceId, which the idle monitor reads. Enabled here, started on the researcher's instance at boot.
set -euxo pipefail

: "${CLOUDWATCH_AGENT_VERSION:=latest}"

deb=/tmp/amazon-cloudwatch-agent.deb
curl --fail --silent --show-error --location --retry 5 --output "${deb}" \
  "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/${CLOUDWATCH_AGENT_VERSION}/amazon-cloudwatch-agent.deb"
dpkg -i "${deb}"
rm -f "${deb}"

config=/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json
install -m 0644 /tmp/cloudwatch-agent.json "${config}"
rm -f /tmp/cloudwatch-agent.json
# Translate and validate the JSON now (fails the build on a bad config) without starting the agent on the builder.
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -c "file:${config}"
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a stop -m ec2 || true
systemctl enable amazon-cloudwatch-agent
