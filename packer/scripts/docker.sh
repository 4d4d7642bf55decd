#!/usr/bin/env bash
# Docker Engine from Docker's apt repository and the NVIDIA container toolkit, so `docker run --gpus all` works.
set -euxo pipefail

export DEBIAN_FRONTEND=noninteractive

# shellcheck source=/dev/null  # the build instance's file, not in this repository
. /etc/os-release
install -m 0755 -d /etc/apt/keyrings
curl --fail --silent --show-error --location --retry 5 https://download.docker.com/linux/ubuntu/gpg \
  | gpg --dearmor --yes -o /etc/apt/keyrings/docker.gpg
echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu ${VERSION_CODENAME} stable" \
  >/etc/apt/sources.list.d/docker.list

curl --fail --silent --show-error --location --retry 5 https://nvidia.github.io/libnvidia-container/gpgkey \
  | gpg --dearmor --yes -o /etc/apt/keyrings/nvidia-container-toolkit.gpg
curl --fail --silent --show-error --location --retry 5 \
  https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
  | sed 's#deb https://#deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.gpg] https://#g' \
    >/etc/apt/sources.list.d/nvidia-container-toolkit.list

apt-get update
apt-get install -y --no-install-recommends \
  docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin \
  nvidia-container-toolkit

nvidia-ctk runtime configure --runtime=docker
systemctl enable docker containerd
systemctl restart docker
usermod -aG docker ubuntu
