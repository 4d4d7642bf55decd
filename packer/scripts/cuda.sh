#!/usr/bin/env bash
# CUDA toolkit CUDA_VERSION and cuDNN CUDNN_VERSION from NVIDIA's apt repository (the toolkit only: the driver comes
# from nvidia-driver.sh), held so unattended upgrades cannot move them away from the AMI's recorded versions.
set -euxo pipefail

: "${CUDA_VERSION:?set by the Packer template}"
: "${CUDNN_VERSION:?set by the Packer template}"

export DEBIAN_FRONTEND=noninteractive

# shellcheck source=/dev/null  # the build instance's file, not in this repository
. /etc/os-release
distro="ubuntu${VERSION_ID//./}"
keyring_deb=/tmp/cuda-keyring.deb
curl --fail --silent --show-error --location --retry 5 --output "${keyring_deb}" \
  "https://developer.download.nvidia.com/compute/cuda/repos/${distro}/x86_64/cuda-keyring_1.1-1_all.deb"
dpkg -i "${keyring_deb}"
rm -f "${keyring_deb}"
apt-get update

cuda_major="${CUDA_VERSION%%.*}"
cudnn_major="${CUDNN_VERSION%%.*}"
cuda_package="cuda-toolkit-${CUDA_VERSION//./-}"
cudnn_packages=(
  "libcudnn${cudnn_major}-cuda-${cuda_major}=${CUDNN_VERSION}-1"
  "libcudnn${cudnn_major}-dev-cuda-${cuda_major}=${CUDNN_VERSION}-1"
)
apt-get install -y --no-install-recommends "${cuda_package}" "${cudnn_packages[@]}"
apt-mark hold "${cuda_package}" "libcudnn${cudnn_major}-cuda-${cuda_major}" "libcudnn${cudnn_major}-dev-cuda-${cuda_major}"

cat >/etc/profile.d/cuda.sh <<PROFILE
export PATH="/usr/local/cuda-${CUDA_VERSION}/bin:\${PATH}"
export LD_LIBRARY_PATH="/usr/local/cuda-${CUDA_VERSION}/lib64\${LD_LIBRARY_PATH:+:\${LD_LIBRARY_PATH}}"
PROFILE
ln -sfn "/usr/local/cuda-${CUDA_VERSION}" /usr/local/cuda
