#!/usr/bin/env bash
# SSM agent: the only way in (no key pair, no public IP). Ubuntu ships it as a snap; make sure it starts at boot.
set -euxo pipefail

if ! snap list amazon-ssm-agent >/dev/null 2>&1; then
  snap install amazon-ssm-agent --classic
fi
systemctl enable snap.amazon-ssm-agent.amazon-ssm-agent.service
