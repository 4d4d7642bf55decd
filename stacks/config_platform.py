"""The models of `config/platform.yaml`, one per section; stacks/config.py loads and cross-checks them."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from stacks.config_fields import (
    AccountId,
    Cidr,
    Email,
    InstanceType,
    Model,
    Percentage,
    Port,
    Region,
    RoleName,
    _matching,
)

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
