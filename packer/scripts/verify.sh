#!/usr/bin/env bash
# Fails the build unless the installed driver, CUDA and cuDNN are exactly the versions the AMI will be tagged with,
# then records them on the image for people and tools on the instance.
set -euxo pipefail

: "${NVIDIA_DRIVER_VERSION:?}"
: "${CUDA_VERSION:?}"
: "${CUDNN_VERSION:?}"

driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
test "${driver}" = "${NVIDIA_DRIVER_VERSION}"

"/usr/local/cuda-${CUDA_VERSION}/bin/nvcc" --version | grep -F "release ${CUDA_VERSION},"

cudnn_major="${CUDNN_VERSION%%.*}"
cudnn="$(dpkg-query --showformat='${Version}' --show "libcudnn${cudnn_major}-cuda-${CUDA_VERSION%%.*}")"
test "${cudnn}" = "${CUDNN_VERSION}-1"

nvidia-ctk --version
docker info --format '{{json .Runtimes}}' | grep -F nvidia

install -d -m 0755 /etc/mlbase
jq -n \
  --arg driver "${NVIDIA_DRIVER_VERSION}" \
  --arg cuda "${CUDA_VERSION}" \
  --arg cudnn "${CUDNN_VERSION}" \
  '{nvidia_driver_version: $driver, cuda_version: $cuda, cudnn_version: $cudnn}' >/etc/mlbase/ami-versions.json
