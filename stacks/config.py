"""Typed configuration: `config/platform.yaml` and `config/workers/*.yaml`, validated once into frozen models.

Every error is reported as one line naming the file, the dotted field path, the bad value and what is allowed, e.g.
`config/platform.yaml: network.research.cidr: '10.20.0.0/16' overlaps network.production.cidr ('10.20.0.0/16'); ...`.
`python -m stacks.config [PATH]` checks a file from the command line.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "platform.yaml"

# Regions mlbase knows; AZ names must be the region name plus one letter.
KNOWN_REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
        "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
        "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
        "ap-south-1", "ap-east-1", "me-south-1", "af-south-1",
    }
)  # fmt: skip


class ConfigError(Exception):
    """A configuration problem, rendered as one line: file, dotted path, bad value, what is allowed."""

    def __init__(self, file: Path | str, path: str, value: Any, allowed: str) -> None:
        self.file, self.path, self.value, self.allowed = str(file), path, value, allowed
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{_display(self.file)}: {where}{self.value!r}: {self.allowed}"


def _display(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return file


# --- field validators -------------------------------------------------------------------------------------------


def _matching(pattern: str, message: str) -> AfterValidator:
    """A string that must match `pattern` in full; `message` says what it must be (it ends up in the one-line error)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _region(value: str) -> str:
    if value not in KNOWN_REGIONS:
        raise ValueError(f"must be an AWS region name, one of: {', '.join(sorted(KNOWN_REGIONS))}")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"must be an IPv4 CIDR block with no host bits set, like 10.0.0.0/16 ({err})") from None
    if net.version != 4 or not net.is_private:
        raise ValueError("must be a private IPv4 range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
    if not 16 <= net.prefixlen <= 24:
        raise ValueError("must have a prefix length between /16 and /24 (VPC limits, room for subnets)")
    return value


def _percentage(value: int) -> int:
    if not 1 <= value <= 1000:
        raise ValueError("must be a percentage between 1 and 1000")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


InstanceType = Annotated[
    str,
    _matching(
        r"(g|p)[0-9][a-z0-9-]*\.[0-9]*(x?large|metal)[a-z0-9-]*",
        "must be a GPU instance type of the g or p families, like g5.xlarge",
    ),
]
AccountId = Annotated[str, _matching(r"\d{12}", "must be a 12-digit AWS account ID, quoted as a string")]
Region = Annotated[str, AfterValidator(_region)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Email = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "must be an e-mail address like team@example.com",
    ),
]
Percentage = Annotated[int, AfterValidator(_percentage)]
RoleName = Annotated[str, _matching(r"[\w+=,.@-]{1,64}", "must be an IAM role name: 1-64 letters, digits or +=,.@_-")]
Port = Annotated[int, AfterValidator(_port)]


class Model(BaseModel):
    """Base for every config model: immutable, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


# --- platform.yaml ----------------------------------------------------------------------------------------------


class Account(Model):
    account_id: AccountId
    region: Region
    availability_zones: tuple[str, ...] = Field(min_length=2, max_length=4)


class Accounts(Model):
    production: Account
    research: Account


class ConfigRecorders(Model):
    production: Literal["create", "existing"] = "create"
    research: Literal["create", "existing"] = "create"


class Audit(Model):
    object_lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    object_lock_days: int = Field(default=365, ge=1, le=36500)
    transition_days: int = Field(default=90, ge=30, le=3650)
    expiration_days: int = Field(default=2555, ge=1, le=36500)
    trail_log_retention_days: Literal[
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
    ] = 365
    break_glass_role_name: RoleName = "MlbaseBreakGlass"
    # Per account: `create` makes the AWS Config recorder and delivery channel; `existing` keeps the ones the account
    # already has (AWS allows one of each per region, so creating a second fails the deploy).
    config_recorder: ConfigRecorders = ConfigRecorders()


class Vpc(Model):
    cidr: Cidr


def _admitted_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"must be a CIDR block with no host bits set ({err})") from None
    if net.prefixlen == 0:
        raise ValueError("must not be open to the whole internet (0.0.0.0/0 or ::/0); name your office or VPN range")
    return value


VpcId = Annotated[
    str,
    _matching(
        r"vpc-[0-9a-f]{8}([0-9a-f]{9})?",
        "must be a VPC ID like vpc-0123456789abcdef0 (from the Research-Network stack's outputs)",
    ),
]
AdmittedCidr = Annotated[str, AfterValidator(_admitted_cidr)]


class FlowLogs(Model):
    destination: Literal["cloudwatch", "s3"] = "cloudwatch"
    retention_days: int = Field(default=90, ge=1, le=3653)


class Bastion(Model):
    """The way in: an SSM Session Manager host by default; an SSH bastion only for the CIDRs named here."""

    instance_type: str = Field(default="t3.micro", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    ssh_allowed_cidrs: tuple[AdmittedCidr, ...] = ()


class Peering(Model):
    """Management <-> production and management <-> research peering."""

    # Ports the management VPC may reach on production and research hosts (SSH over SSM port forwarding, Jupyter...).
    admitted_ports: tuple[Port, ...] = (22, 443, 8888)
    # Filled in after `cdk deploy 'Research/Network'`: the R&D VPC's ID from that stack's outputs. Until then the
    # cross-account peering is not created (see README, deploy order).
    research_vpc_id: VpcId | None = None
    accepter_role_name: RoleName = "MlbasePeeringAccepter"


class Network(Model):
    management: Vpc
    production: Vpc
    research: Vpc
    # At least one: GPU hosts, workstations and Lambdas in private subnets need a way out (Slack, package mirrors).
    nat_gateways: int = Field(default=1, ge=1, le=4)
    flow_logs: FlowLogs = FlowLogs()
    bastion: Bastion = Bastion()
    peering: Peering = Peering()

    def vpcs(self) -> dict[str, Vpc]:
        return {"management": self.management, "production": self.production, "research": self.research}


class Notifications(Model):
    emails: tuple[Email, ...] = ()


class Budget(Model):
    monthly_usd: float = Field(gt=0, le=10_000_000)
    actual_percentages: tuple[Percentage, ...] = (50, 80, 100)
    forecast_percentages: tuple[Percentage, ...] = (100,)


class Budgets(Model):
    production: Budget
    research: Budget


SlackUserId = Annotated[
    str, _matching(r"[UW][A-Z0-9]{6,12}", "must be a Slack member ID like U0123ABCD (profile > copy member ID)")
]
SlackChannelId = Annotated[
    str,
    _matching(r"[CG][A-Z0-9]{6,12}", "must be a Slack channel ID like C0123ABCD (channel details > copy channel ID)"),
]
GroupName = Literal["PlatformAdmins", "Researchers", "ReadOnly"]


class Workstation(Model):
    """A researcher's dedicated GPU machine in the R&D account."""

    instance_type: InstanceType
    ami_version: str = Field(pattern=r"^driver[0-9]+-cuda[0-9]+\.[0-9]+-v[0-9]+$")
    cuda: str = Field(pattern=r"^\d+\.\d+$")
    volume_gib: int = Field(default=200, ge=50, le=16000)
    monthly_budget_usd: float | None = Field(default=None, gt=0, le=1_000_000)


class Person(Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9.-]{1,30}$")
    email: Email
    groups: tuple[GroupName, ...] = Field(min_length=1)
    slack_user_id: SlackUserId | None = None
    workstation: Workstation | None = None


class Lambdas(Model):
    # Cap each platform function's concurrency by reserving it. Off by default: the caps add up to more than a new
    # account's concurrency quota leaves once Lambda keeps its 100 unreserved (run `make preflight` first).
    reserved_concurrency: bool = False


class Access(Model):
    """How people reach the research account: roles assumed from production, with MFA."""

    mfa_max_age_seconds: int = Field(default=3600, ge=300, le=43200)
    max_session_hours: int = Field(default=4, ge=1, le=12)


class Organization(Model):
    manage_scps: bool = False
    create_research_account: bool = False
    research_account_email: Email | None = None


SecurityGroupId = Annotated[
    str, _matching(r"sg-[0-9a-f]{8}([0-9a-f]{9})?", "must be a security group ID like sg-0123456789abcdef0")
]


class WorldIngressException(Model):
    """One security group that may stay open to the world on `ports`; granted here, so only by a reviewed change."""

    group_id: SecurityGroupId
    ports: tuple[Port, ...] = Field(min_length=1)
    reason: str = Field(min_length=10, max_length=200)


def _one_entry_per_group(entries: tuple[WorldIngressException, ...]) -> tuple[WorldIngressException, ...]:
    ids = [entry.group_id for entry in entries]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"lists {twice[0]} more than once; give each group one entry with all of its ports")
    return entries


class SecurityGroupRules(Model):
    # Ports that may be open to the world when the platform justifies it (tag or exception below).
    allowed_world_ports: tuple[Port, ...] = (80, 443)
    auto_remediate: bool = False
    # Sources that together cover more than this share of the public IPv4 or IPv6 space are "the world". 1/256 is
    # a little less than one public /8: far above any office, partner or cloud range, and no split of the internet
    # into a few big blocks gets under it. Below 0.5, so the two /1 halves always count.
    world_share: float = Field(default=1 / 256, gt=0, lt=0.5)
    # At most 20: they travel to the rule's functions as one environment variable (4 KB for all of them).
    world_ingress_exceptions: Annotated[
        tuple[WorldIngressException, ...], Field(max_length=20), AfterValidator(_one_entry_per_group)
    ] = ()


class SecurityBaseline(Model):
    """The account security baseline of both accounts (cdk_constructs/security_baseline.py); every piece is on unless
    switched off here. Switching a piece off stops managing it: it does not weaken what the account already has."""

    guardduty: bool = True
    security_hub: bool = True
    access_analyzer: bool = True
    s3_block_public_access: bool = True
    ebs_encryption_by_default: bool = True
    password_policy: bool = True
    cis_alarms: bool = True


class Slack(Model):
    """Names of Secrets Manager secrets (created by hand, never in a template) and the channel to post to."""

    secret_name: str = "mlbase/slack"  # noqa: S105
    signing_secret_name: str = "mlbase/slack-signing"  # noqa: S105
    channel: SlackChannelId | None = None


InstanceTypePattern = Annotated[
    str,
    _matching(r"[a-z][a-z0-9-]*(\.[a-z0-9*]+|\.\*|\*)", "must be an instance type or pattern like g5.* or g5.xlarge"),
]
DEFAULT_RESEARCHER_INSTANCE_TYPES: tuple[str, ...] = (
    "t3.*",
    "t3a.*",
    "m6i.*",
    "m7i.*",
    "c6i.*",
    "c7i.*",
    "r6i.*",
    "g4dn.xlarge",
    "g4dn.2xlarge",
    "g4dn.4xlarge",
    "g5.xlarge",
    "g5.2xlarge",
    "g5.4xlarge",
    "g6.xlarge",
    "g6.2xlarge",
    "g6.4xlarge",
)


class Workbench(Model):
    idle_check_hours: int = Field(default=3, ge=1, le=24)
    lookback_hours: int = Field(default=3, ge=1, le=24)
    gpu_idle_percent: float = Field(default=5, ge=0, le=100)
    cpu_idle_percent: float = Field(default=5, ge=0, le=100)
    # 0: never stop automatically; N: stop after N consecutive idle checks (unless tagged keep-until).
    auto_stop_after_checks: int = Field(default=0, ge=0, le=100)
    admins: tuple[SlackUserId, ...] = ()
    hourly_prices_usd: dict[str, float] = Field(default_factory=dict)
    fallback_instance_types: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Instance types researchers may launch themselves (IAM wildcards). The default leaves out the largest GPU
    # machines (p4d, p5, g5.48xlarge, ...): list them here to allow them. Empty: no restriction.
    researcher_instance_types: tuple[InstanceTypePattern, ...] = DEFAULT_RESEARCHER_INSTANCE_TYPES


class PhotoService(Model):
    """The upload and results APIs in front of the workers (`config/workers/*.yaml` hold the workers themselves)."""

    # iam: the app backend signs requests with SigV4 and passes the end user in x-mlbase-user-id.
    # jwt: the phone calls with the app's identity-provider token; the user is the token's `sub`.
    auth: Literal["iam", "jwt"] = "iam"
    jwt_issuer: str | None = Field(default=None, pattern=r"^https://")
    jwt_audience: tuple[str, ...] = ()
    url_expiry_seconds: int = Field(default=300, ge=1, le=900)
    app_backend_role_name: RoleName = "MlbaseAppBackend"


GitHubRepository = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}",
        "must be a GitHub repository as owner/name, like example-org/mlbase",
    ),
]
GitHubEnvironment = Annotated[
    str, _matching(r"[A-Za-z0-9_.-]{1,255}", "must be a GitHub environment name: letters, digits, '_', '.' or '-'")
]


class GitHubEnvironments(Model):
    """The repository's deployment environments, one per account; production's should require reviewers."""

    production: GitHubEnvironment = "production"
    research: GitHubEnvironment = "research"

    @model_validator(mode="after")
    def _distinct(self) -> GitHubEnvironments:
        # One environment for both accounts would let a research job's token deploy production.
        if self.production == self.research:
            raise ValueError("production and research must be different environments")
        return self


class OidcProviders(Model):
    """Per account: create GitHub's OIDC provider, or use the one the account already has (one per URL)."""

    production: Literal["create", "existing"] = "create"
    research: Literal["create", "existing"] = "create"


class GitHub(Model):
    """The users' repository whose deploy workflow deploys each account through GitHub's OIDC federation."""

    repository: GitHubRepository
    environments: GitHubEnvironments = GitHubEnvironments()
    deploy_role_name: RoleName = "MlbaseGitHubDeploy"
    oidc_provider: OidcProviders = OidcProviders()


class PlatformConfig(Model):
    """The whole of `config/platform.yaml`."""

    project: str = Field(default="mlbase", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    accounts: Accounts
    allowed_regions: tuple[Region, ...] = Field(min_length=1)
    audit: Audit = Audit()
    network: Network
    notifications: Notifications = Notifications()
    budgets: Budgets
    people: tuple[Person, ...] = ()
    access: Access = Access()
    lambdas: Lambdas = Lambdas()
    organization: Organization = Organization()
    security_groups: SecurityGroupRules = SecurityGroupRules()
    security_baseline: SecurityBaseline = SecurityBaseline()
    slack: Slack = Slack()
    workbench: Workbench = Workbench()
    photo_service: PhotoService = PhotoService()
    # Unset: no deploy role, the accounts are deployed by hand only.
    github: GitHub | None = None


# --- config/workers/*.yaml --------------------------------------------------------------------------------------


SsmParameter = Annotated[str, _matching(r"/[A-Za-z0-9_.\-/]+", "must be an SSM parameter name starting with /")]


class Capacity(Model):
    """How GPU hosts are bought: instance types in order of preference and the on-demand/spot mix."""

    instance_types: tuple[InstanceType, ...] = Field(min_length=1)
    on_demand_base: int = Field(default=0, ge=0, le=100)
    on_demand_percentage_above_base: int = Field(default=100, ge=0, le=100)
    ami_ssm_parameter: SsmParameter
    # NVIDIA driver that the pinned ECS GPU AMI release ships (from its release notes); synth checks it runs `cuda`.
    ami_driver_version: str = Field(pattern=r"^\d+(\.\d+)*$")
    root_volume_gib: int = Field(default=100, ge=30, le=2000)


class QueueSettings(Model):
    visibility_timeout_seconds: int = Field(default=900, ge=30, le=43200)
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    retention_days: int = Field(default=4, ge=1, le=14)
    dead_letter_retention_days: int = Field(default=14, ge=1, le=14)


class Scaling(Model):
    """Inputs of the SLA-driven scaling policy (see cdk_constructs/sla_scaling.py for the formula)."""

    min_tasks: int = Field(default=0, ge=0, le=1000)
    max_tasks: int = Field(default=10, ge=1, le=1000)
    scale_in_idle_minutes: int = Field(default=15, ge=1, le=1440)
    # Measured per task with `python -m worker.bench` on the target instance type.
    images_per_second_per_task: float = Field(gt=0, le=100_000)
    # Other instance types of capacity.instance_types that classify at another rate (a slower fallback).
    images_per_second_by_instance_type: dict[InstanceType, Annotated[float, Field(gt=0, le=100_000)]] = Field(
        default_factory=dict
    )
    # From zero tasks: `sla` waits while the SLA leaves room to gather photos, `immediate` wakes on the first one.
    wake: Literal["sla", "immediate"] = "sla"


class Simulation(Model):
    """Delays the scaling simulator models; the defaults are typical published figures, override with measurements."""

    metric_period_seconds: int = Field(default=60, ge=60, le=300)
    metric_delay_seconds: int = Field(default=120, ge=0, le=900)
    instance_launch_seconds: int = Field(default=240, ge=0, le=3600)
    image_pull_seconds: int = Field(default=90, ge=0, le=3600)
    task_start_seconds: int = Field(default=30, ge=0, le=3600)
    gpu_hourly_usd: float = Field(default=1.006, gt=0, le=1000)
    # Chance per hour that a spot host gets its two-minute interruption notice.
    spot_interruptions_per_hour: float = Field(default=0.0, ge=0, le=1)


class WorkerConfig(Model):
    """One queue worker (`config/workers/<name>.yaml`): the single source of its settings."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")
    image_dir: str = Field(pattern=r"^[A-Za-z0-9_./-]+$")
    cuda: str = Field(pattern=r"^\d+\.\d+$")
    gpu_count: int = Field(default=1, ge=1, le=8)
    cpu: int = Field(ge=256, le=196608)
    memory_mib: int = Field(ge=512, le=2_000_000)
    capacity: Capacity
    queue: QueueSettings = QueueSettings()
    sla_minutes: int = Field(ge=5, le=1440)
    scaling: Scaling
    batch_size: int = Field(default=32, ge=1, le=1024)
    stop_timeout_seconds: int = Field(default=120, ge=30, le=120)
    # S3 key prefix whose uploads this worker classifies; two workers need non-overlapping prefixes.
    input_prefix: str = Field(default="uploads/", pattern=r"^uploads/([a-z0-9-]+/)?$")
    model_uri: str = Field(pattern=r"^(s3://[a-z0-9.-]+/.+|/[^\s]+)$")
    result_ttl_days: int = Field(default=30, ge=1, le=3650)
    max_upload_mib: int = Field(default=20, ge=1, le=200)
    upload_retention_days: int = Field(default=30, ge=1, le=3650)
    environment: dict[str, str] = Field(default_factory=dict)
    simulation: Simulation = Simulation()


@dataclass(frozen=True)
class Platform:
    """Everything synth needs: the platform config and the worker definitions, with where they came from."""

    config: PlatformConfig
    source: Path
    workers: tuple[WorkerConfig, ...] = ()


# --- loading ----------------------------------------------------------------------------------------------------


def load_platform(path: Path | str | None = None) -> Platform:
    """Read, validate and cross-check a platform config and the worker files in `workers/` beside it.

    Raises ConfigError with one line on the first problem.
    """
    file = Path(path) if path else DEFAULT_CONFIG
    raw = _read_yaml(file)
    config = _validate(PlatformConfig, raw, file)
    _cross_check(config, file)
    workers = tuple(load_worker(p) for p in sorted((file.parent / "workers").glob("*.yaml")))
    names = [w.name for w in workers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(file.parent / "workers", "name", name, "each worker file needs a unique name")
    for i, worker in enumerate(workers):
        for other in workers[:i]:
            if worker.input_prefix.startswith(other.input_prefix) or other.input_prefix.startswith(worker.input_prefix):
                raise ConfigError(
                    file.parent / "workers" / f"{worker.name}.yaml",
                    "input_prefix",
                    worker.input_prefix,
                    f"overlaps worker {other.name}'s {other.input_prefix!r}; S3 sends each upload to one queue",
                )
    return Platform(config=config, source=file, workers=workers)


def load_worker(path: Path | str) -> WorkerConfig:
    """Read and validate one worker definition (`config/workers/<name>.yaml`)."""
    file = Path(path)
    worker = _validate(WorkerConfig, _read_yaml(file), file)
    if worker.scaling.min_tasks > worker.scaling.max_tasks:
        raise ConfigError(
            file,
            "scaling.min_tasks",
            worker.scaling.min_tasks,
            f"must not exceed scaling.max_tasks ({worker.scaling.max_tasks})",
        )
    for instance_type in worker.scaling.images_per_second_by_instance_type:
        if instance_type not in worker.capacity.instance_types:
            raise ConfigError(
                file,
                f"scaling.images_per_second_by_instance_type.{instance_type}",
                instance_type,
                f"must be one of capacity.instance_types ({', '.join(worker.capacity.instance_types)})",
            )
    if worker.queue.dead_letter_retention_days < worker.queue.retention_days:
        raise ConfigError(
            file,
            "queue.dead_letter_retention_days",
            worker.queue.dead_letter_retention_days,
            f"must be at least queue.retention_days ({worker.queue.retention_days}) so failed photos outlive the queue",
        )
    from stacks.gpu_versions import driver_supports_cuda, min_driver_for_cuda

    try:
        supported = driver_supports_cuda(worker.capacity.ami_driver_version, worker.cuda)
    except ValueError as err:
        raise ConfigError(file, "cuda", worker.cuda, str(err)) from None
    if not supported:
        raise ConfigError(
            file,
            "capacity.ami_driver_version",
            worker.capacity.ami_driver_version,
            f"is older than CUDA {worker.cuda} needs (>= {min_driver_for_cuda(worker.cuda)}); pin a newer ECS GPU AMI",
        )
    if not (REPO_ROOT / worker.image_dir / "Dockerfile").is_file():
        raise ConfigError(
            file, "image_dir", worker.image_dir, "must be a directory with a Dockerfile, relative to the repository"
        )
    return worker


def _read_yaml(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            file, "", str(file), f"cannot be read ({err.strerror}); set MLBASE_CONFIG to a file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise ConfigError(file, where, getattr(err, "problem", str(err)), "is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "", data, "must be a YAML mapping at the top level")
    return data


def _validate(model: type[M], raw: Any, file: Path) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        path = dotted(loc)
        if first["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            raise ConfigError(file, path, loc[-1], f"unknown key; allowed here: {', '.join(allowed)}") from None
        if first["type"] == "missing":
            raise ConfigError(file, path, None, "is required") from None
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(file, path, first.get("input"), message) from None


def dotted(loc: Sequence[int | str]) -> str:
    """('network', 'vpcs', 0, 'cidr') -> 'network.vpcs[0].cidr'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return sorted(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside an annotation such as `Budget`, `tuple[Person, ...]` or `dict[str, Worker]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _cross_check(config: PlatformConfig, file: Path) -> None:
    for name, account in (("production", config.accounts.production), ("research", config.accounts.research)):
        for i, zone in enumerate(account.availability_zones):
            if not re.fullmatch(rf"{re.escape(account.region)}[a-z]", zone):
                raise ConfigError(
                    file,
                    f"accounts.{name}.availability_zones[{i}]",
                    zone,
                    f"must be an availability zone of {account.region} (like {account.region}a)",
                )
        if len(set(account.availability_zones)) != len(account.availability_zones):
            raise ConfigError(
                file, f"accounts.{name}.availability_zones", list(account.availability_zones), "must not repeat a zone"
            )
        if account.region not in config.allowed_regions:
            raise ConfigError(
                file,
                "allowed_regions",
                list(config.allowed_regions),
                f"must include the {name} region {account.region}",
            )
    homes = sorted({config.accounts.production.region, config.accounts.research.region})
    for region in config.allowed_regions:
        if region not in homes:
            raise ConfigError(
                file,
                "allowed_regions",
                list(config.allowed_regions),
                f"{region} has no guardrails (the AWS Config recorder and security-group rules run in the accounts'"
                f" home regions {', '.join(homes)}); list only those (global services such as IAM need no entry)",
            )
    if config.accounts.production.account_id == config.accounts.research.account_id:
        raise ConfigError(
            file, "accounts.research.account_id", config.accounts.research.account_id, "must differ from production's"
        )
    _check_disjoint([(f"network.{name}.cidr", vpc.cidr) for name, vpc in config.network.vpcs().items()], file)
    if config.audit.expiration_days <= config.audit.object_lock_days:
        raise ConfigError(
            file,
            "audit.expiration_days",
            config.audit.expiration_days,
            f"must be longer than audit.object_lock_days ({config.audit.object_lock_days}): locked logs cannot expire",
        )
    _check_people(config, file)
    if config.photo_service.auth == "jwt" and not (
        config.photo_service.jwt_issuer and config.photo_service.jwt_audience
    ):
        raise ConfigError(
            file,
            "photo_service.jwt_issuer",
            config.photo_service.jwt_issuer,
            "auth: jwt needs jwt_issuer (https://...) and jwt_audience (your app's client IDs)",
        )
    if config.audit.transition_days >= config.audit.expiration_days:
        raise ConfigError(
            file, "audit.transition_days", config.audit.transition_days, "must be shorter than audit.expiration_days"
        )


def _check_people(config: PlatformConfig, file: Path) -> None:
    from stacks.gpu_versions import check_cuda_requirement

    names: set[str] = set()
    for i, person in enumerate(config.people):
        if person.name in names:
            raise ConfigError(file, f"people[{i}].name", person.name, "must be unique among people")
        names.add(person.name)
        if person.workstation is None:
            continue
        if person.slack_user_id is None:
            raise ConfigError(
                file, f"people[{i}].slack_user_id", None, "is required for a person with a workstation (idle warnings)"
            )
        try:
            check_cuda_requirement(person.workstation.cuda, person.workstation.ami_version)
        except ValueError as err:
            raise ConfigError(
                file, f"people[{i}].workstation.ami_version", person.workstation.ami_version, str(err)
            ) from None


def _check_disjoint(cidrs: Iterable[tuple[str, str]], file: Path) -> None:
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for path, cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        for other_path, other in seen:
            if net.overlaps(other):
                raise ConfigError(
                    file, path, cidr, f"overlaps {other_path} ({other}); VPCs that peer need disjoint CIDR blocks"
                )
        seen.append((path, net))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        platform = load_platform(args[0] if args else None)
    except ConfigError as err:
        print(f"config error: {err.line()}", file=sys.stderr)
        return 2
    print(f"{_display(str(platform.source))}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
