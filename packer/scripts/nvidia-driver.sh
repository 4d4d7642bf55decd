#!/usr/bin/env bash
# NVIDIA data-center driver from NVIDIA's runfile, pinned to NVIDIA_DRIVER_VERSION, built with DKMS so kernel
# updates rebuild it.
set -euxo pipefail

: "${NVIDIA_DRIVER_VERSION:?set by the Packer template from versions/*.pkrvars.hcl}"

cat >/etc/modprobe.d/blacklist-nouveau.conf <<'CONF'
blacklist nouveau
options nouveau modeset=0
CONF
update-initramfs -u

runfile="/tmp/NVIDIA-Linux-x86_64-${NVIDIA_DRIVER_VERSION}.run"
curl --fail --silent --show-error --location --retry 5 \
  --output "${runfile}" \
  "https://us.download.nvidia.com/tesla/${NVIDIA_DRIVER_VERSION}/NVIDIA-Linux-x86_64-${NVIDIA_DRIVER_VERSION}.run"
sh "${runfile}" --silent --dkms --no-questions --ui=none
rm -f "${runfile}"

# Persistence mode keeps the driver loaded between jobs, which avoids multi-second start-up per CUDA process.
systemctl enable nvidia-persistenced || true

nvidia-smi
