# Researcher GPU workstation: Ubuntu 22.04 with the NVIDIA driver, CUDA, cuDNN, Docker + NVIDIA container toolkit,
# CloudWatch agent (GPU metrics for the idle monitor) and SSM agent. Build one per versions/*.pkrvars.hcl file.

data "amazon-parameterstore" "base_ami" {
  name   = var.base_ami_parameter
  region = var.region
}

locals {
  # Packer's timestamp() is UTC; the suffix keeps rebuilds of the same version distinct.
  build_time = formatdate("YYYYMMDDhhmmss", timestamp())
  ami_name   = "mlbase-${var.flavour}-${var.ami_version}-${local.build_time}"
  version_tags = {
    "mlbase:flavour"       = var.flavour
    "mlbase:ami-version"   = var.ami_version
    "mlbase:nvidia-driver" = var.nvidia_driver_version
    "mlbase:cuda"          = var.cuda_version
    "mlbase:cudnn"         = var.cudnn_version
    "mlbase:base-ami"      = data.amazon-parameterstore.base_ami.value
    "mlbase:ssm-parameter" = "${var.ssm_parameter_prefix}/${var.flavour}/${var.ami_version}"
  }
}

source "amazon-ebs" "workstation" {
  region        = var.region
  source_ami    = data.amazon-parameterstore.base_ami.value
  instance_type = var.build_instance_type
  subnet_id     = var.subnet_id == "" ? null : var.subnet_id
  ssh_username  = "ubuntu"
  ami_name      = local.ami_name

  ami_description = "mlbase ${var.flavour}: NVIDIA driver ${var.nvidia_driver_version}, CUDA ${var.cuda_version}, cuDNN ${var.cudnn_version}"
  encrypt_boot    = true
  ena_support     = true
  imds_support    = "v2.0"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_size_gb
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  tags            = merge(local.version_tags, { Name = local.ami_name })
  snapshot_tags   = local.version_tags
  run_tags        = { Name = "packer-${local.ami_name}" }
  run_volume_tags = { Name = "packer-${local.ami_name}" }
}

build {
  name    = "mlbase"
  sources = ["source.amazon-ebs.workstation"]

  provisioner "shell" {
    execute_command = "sudo -E bash '{{ .Path }}'"
    scripts = [
      "${path.root}/scripts/base.sh",
      "${path.root}/scripts/nvidia-driver.sh",
      "${path.root}/scripts/cuda.sh",
      "${path.root}/scripts/docker.sh",
    ]
    environment_vars = [
      "NVIDIA_DRIVER_VERSION=${var.nvidia_driver_version}",
      "CUDA_VERSION=${var.cuda_version}",
      "CUDNN_VERSION=${var.cudnn_version}",
    ]
  }

  provisioner "file" {
    source      = "${path.root}/files/cloudwatch-agent.json"
    destination = "/tmp/cloudwatch-agent.json"
  }

  provisioner "shell" {
    execute_command = "sudo -E bash '{{ .Path }}'"
    scripts = [
      "${path.root}/scripts/cloudwatch-agent.sh",
      "${path.root}/scripts/ssm-agent.sh",
      "${path.root}/scripts/verify.sh",
      "${path.root}/scripts/cleanup.sh",
    ]
    environment_vars = [
      "CLOUDWATCH_AGENT_VERSION=${var.cloudwatch_agent_version}",
      "NVIDIA_DRIVER_VERSION=${var.nvidia_driver_version}",
      "CUDA_VERSION=${var.cuda_version}",
      "CUDNN_VERSION=${var.cudnn_version}",
    ]
  }

  post-processor "manifest" {
    output     = "${path.root}/build/manifest-${var.flavour}-${var.ami_version}.json"
    strip_path = true
    custom_data = {
      flavour               = var.flavour
      ami_version           = var.ami_version
      nvidia_driver_version = var.nvidia_driver_version
      cuda_version          = var.cuda_version
      cudnn_version         = var.cudnn_version
    }
  }

  # The CDK resolves this parameter at deploy time, so a rebuilt AMI rolls out without a code change.
  post-processor "shell-local" {
    environment_vars = [
      "MANIFEST=${path.root}/build/manifest-${var.flavour}-${var.ami_version}.json",
      "PARAMETER_NAME=${var.ssm_parameter_prefix}/${var.flavour}/${var.ami_version}",
      "AWS_REGION=${var.region}",
    ]
    script = "${path.root}/scripts/publish-ami-parameter.sh"
  }
}
