#!/usr/bin/env bash
# Base packages the driver build (DKMS) and the later scripts need; runs as root on the build instance.
set -euxo pipefail

export DEBIAN_FRONTEND=noninteractive

# cloud-init may still be running apt on first boot; wait for it so our apt calls do not race it.
cloud-init status --wait || true

apt-get update
apt-get -y -o Dpkg::Options::="--force-confold" upgrade
apt-get install -y --no-install-recommends \
  build-essential \
  ca-certificates \
  curl \
  dkms \
  gnupg \
  jq \
  "linux-headers-$(uname -r)" \
  linux-headers-aws \
  pciutils \
  unzip

# The upgrade above may have pulled a newer kernel; DKMS builds the driver for it too, headers included.
