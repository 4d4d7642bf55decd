#!/usr/bin/env bash
# Leaves no build state in the image: apt caches, logs, cloud-init state and the builder's SSH host keys.
set -euxo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get -y autoremove
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
find /var/log -type f -exec truncate --size=0 {} +
rm -f /etc/ssh/ssh_host_*
cloud-init clean --logs
