# Version variables: set only by versions/*.pkrvars.hcl, never defaulted, so a build cannot mix combinations.

variable "flavour" {
  type        = string
  description = "AMI flavour; part of the AMI name and of the SSM parameter path /mlbase/ami/<flavour>/<ami_version>."
  validation {
    condition     = contains(["workstation"], var.flavour)
    error_message = "The flavour must be one of: workstation."
  }
}

variable "ami_version" {
  type        = string
  description = "Version name of this driver/CUDA combination, e.g. driver550-cuda12.4-v1; researchers pick AMIs by it."
  validation {
    condition     = can(regex("^driver[0-9]+-cuda[0-9]+\\.[0-9]+-v[0-9]+$", var.ami_version))
    error_message = "The ami_version must look like driver550-cuda12.4-v1."
  }
}

variable "nvidia_driver_version" {
  type        = string
  description = "Exact NVIDIA data-center driver version installed from NVIDIA's runfile, e.g. 550.163.01."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+(\\.[0-9]+)?$", var.nvidia_driver_version))
    error_message = "The nvidia_driver_version must be numeric, e.g. 550.163.01."
  }
}

variable "cuda_version" {
  type        = string
  description = "CUDA toolkit major.minor installed from NVIDIA's apt repository, e.g. 12.4."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.cuda_version))
    error_message = "The cuda_version must be major.minor, e.g. 12.4."
  }
}

variable "cudnn_version" {
  type        = string
  description = "Exact cuDNN package version for this CUDA major, e.g. 9.1.1.17."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.cudnn_version))
    error_message = "The cudnn_version must be the full package version, e.g. 9.1.1.17."
  }
}

# Build settings: sensible defaults, overridable on the command line.

variable "region" {
  type        = string
  description = "AWS region the AMI is built in and its SSM parameter is written to."
  default     = "ap-northeast-1"
}

variable "base_ami_parameter" {
  type        = string
  description = "Public SSM parameter holding the base image ID (Canonical's Ubuntu 22.04 LTS, amd64)."
  default     = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
}

variable "build_instance_type" {
  type        = string
  description = "Instance type used to build; a GPU type so the driver is loaded and checked during the build."
  default     = "g5.xlarge"
}

variable "root_volume_size_gb" {
  type        = number
  description = "Root volume size of the AMI in GiB; CUDA, cuDNN and Docker need about 30 GiB."
  default     = 60
}

variable "subnet_id" {
  type        = string
  description = "Subnet to build in; empty uses the default VPC."
  default     = ""
}

variable "ssm_parameter_prefix" {
  type        = string
  description = "Prefix of the SSM parameter that records the AMI ID for the CDK (read at deploy time)."
  default     = "/mlbase/ami"
}

variable "cloudwatch_agent_version" {
  type        = string
  description = "Amazon CloudWatch agent package to install: 'latest' or a pinned version path from its download site."
  default     = "latest"
}
