"""The deploy order as data: one ordered list of steps per platform config, each a `cdk deploy` or a manual step.

A manual step names what it produces (a secret, an SSM parameter, a config field, the CDK bootstrap) so that
`tools.deploy_plan.check` can prove, against the synthesized templates, that every input a stack needs at creation
exists by the time its step runs. The README's "Deploying, account by account" section is rendered from this list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from stacks.config import REPO_ROOT, Platform, PlatformConfig
from stacks.gpu_versions import load_ami_versions

AccountKey = Literal["production", "research"]
# The AWS CLI profiles the README and `make preflight` speak of, one per account.
PROFILES: dict[AccountKey, str] = {"production": "prod", "research": "research"}
# CDK's default; cdk.json may set another with `@aws-cdk/core:bootstrapQualifier`.
DEFAULT_QUALIFIER = "hnb659fds"
# Public parameters that AWS publishes in every account (AMI IDs); `make preflight` checks that they resolve.
AWS_PUBLIC_PARAMETERS = "/aws/service/"
RESEARCH_VPC_FIELD = "network.peering.research_vpc_id"


@dataclass(frozen=True, order=True)
class Item:
    """Something a stack needs at creation, and a step produces: kind, owning account and region, name."""

    kind: str
    account: str
    region: str
    name: str

    def __str__(self) -> str:
        where = f" in {self.account}" + (f"/{self.region}" if self.region else "") if self.account else ""
        return f"{self.kind} {self.name}{where}"


@dataclass(frozen=True)
class Step:
    """One step of the deploy: `stacks` (CDK paths or patterns) for a `cdk deploy`, or a manual step.

    A manual step lists what it `produces` and `needs`; a deploy step's inputs and products are read from the
    templates. `fills` are config fields the step writes (so later steps synthesize with them set).
    """

    title: str
    account: AccountKey
    commands: tuple[str, ...]
    stacks: tuple[str, ...] = ()
    produces: tuple[Item, ...] = ()
    needs: tuple[Item, ...] = ()
    fills: tuple[str, ...] = ()
    note: str = ""

    @property
    def manual(self) -> bool:
        return not self.stacks

    @property
    def profile(self) -> str:
        return PROFILES[self.account]


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    # Config fields a manual step fills, by dotted path, with the value the config holds (None until filled).
    config_fields: dict[str, str | None] = field(default_factory=dict)


def bootstrap_qualifier() -> str:
    """The qualifier the templates' bootstrap checks name (read from cdk.json without loading the CDK)."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    return str(context.get("@aws-cdk/core:bootstrapQualifier", DEFAULT_QUALIFIER))


def bootstrap_parameter(qualifier: str) -> str:
    return f"/cdk-bootstrap/{qualifier}/version"


def deploy_command(stacks: tuple[str, ...], profile: str) -> str:
    return "npx cdk deploy " + " ".join(f"'{s}'" for s in stacks) + f" --profile {profile}"


def _account(cfg: PlatformConfig, key: AccountKey) -> tuple[str, str]:
    account = getattr(cfg.accounts, key)
    return account.account_id, account.region


def deploy_plan(platform: Platform) -> Plan:
    """The ordered deploy steps for this config; what the manual steps produce is derived from the config."""
    cfg = platform.config
    prod_id, prod_region = _account(cfg, "production")
    research_id, research_region = _account(cfg, "research")
    version = bootstrap_parameter(bootstrap_qualifier())
    slack_json = "--secret-string file://slack.json"  # a file, so that the value stays out of shell history
    steps: list[Step] = [
        Step(
            "Bootstrap the production account",
            "production",
            (f"npx cdk bootstrap aws://{prod_id}/{prod_region} --profile prod",),
            produces=(Item("ssm-parameter", prod_id, prod_region, version),),
            note="Once per account; `make preflight PROFILE=prod` checks it.",
        ),
        Step(
            "Bootstrap the research account, trusting production",
            "research",
            (
                f"npx cdk bootstrap aws://{research_id}/{research_region} --profile research \\\n"
                f"    --trust {prod_id} --cloudformation-execution-policies"
                " arn:aws:iam::aws:policy/AdministratorAccess",
            ),
            produces=(Item("ssm-parameter", research_id, research_region, version),),
            note="Production's pipeline or administrators deploy into research through the roles this trusts.",
        ),
        Step(
            "Create the Slack secret in production",
            "production",
            (f"aws secretsmanager create-secret --name {cfg.slack.secret_name} {slack_json} --profile prod",),
            produces=(Item("secret", prod_id, prod_region, cfg.slack.secret_name),),
            note='Values never appear in a template: `slack.json` holds `{"webhook_url": "..."}` or'
            ' `{"bot_token": "xoxb-...", "channel": "C..."}`.',
        ),
        Step(
            "Create the Slack secrets in research",
            "research",
            (
                f"aws secretsmanager create-secret --name {cfg.slack.secret_name} {slack_json} --profile research",
                f"aws secretsmanager create-secret --name {cfg.slack.signing_secret_name}"
                " --secret-string file://signing-secret.txt --profile research",
            ),
            produces=(
                Item("secret", research_id, research_region, cfg.slack.secret_name),
                Item("secret", research_id, research_region, cfg.slack.signing_secret_name),
            ),
            note="The second holds the Slack app's signing secret as plain text.",
        ),
    ]
    if cfg.organization.manage_scps:
        steps.append(_organization_step(cfg))
    # The deploy workflow's role comes first: once it exists, CI can run every later step.
    delivery = cfg.github is not None
    first_production = ("Production/Delivery",) * delivery + ("Production/Audit", "Production/Identity")
    first_research = ("Research/Delivery",) * delivery + ("Research/Audit", "Research/Access")
    steps += [
        Step(
            "Production audit and identity first",
            "production",
            (deploy_command(first_production, "prod"),),
            stacks=first_production,
            note="The research trail and Config deliver into the archive; the research roles trust the"
            " production users."
            + (
                " `Production/Delivery` holds the deploy workflow's role ([CI/CD](#cicd-pull-requests-and-deploys))."
                * delivery
            ),
        ),
        Step(
            "Research audit and access",
            "research",
            (deploy_command(first_research, "research"),),
            stacks=first_research,
            note="Redeploy `Research/Access` whenever people are added or removed in production.",
        ),
        Step(
            "Research network",
            "research",
            (deploy_command(("Research/Network",), "research"),),
            stacks=("Research/Network",),
        ),
        Step(
            "Paste the research VPC ID into the config",
            "research",
            (
                "aws cloudformation describe-stacks --stack-name Research-Network --profile research \\\n"
                "    --query \"Stacks[0].Outputs[?OutputKey=='ResearchVpcId'].OutputValue\" --output text",
            ),
            needs=(Item("stack-output", research_id, research_region, "Research-Network.ResearchVpcId"),),
            fills=(RESEARCH_VPC_FIELD,),
            note=f"Set `{RESEARCH_VPC_FIELD}` in `config/platform.yaml` to that value and commit it (the loader"
            " checks the format).",
        ),
        Step(
            "Production",
            "production",
            (deploy_command(("Production/*",), "prod"),),
            stacks=("Production/*",),
            note="Creates the peering request to the research VPC, accepted through the research account's"
            " accepter role.",
        ),
    ]
    amis = sorted({p.workstation.ami_version for p in cfg.people if p.workstation is not None})
    if amis:
        published = load_ami_versions()
        steps.append(
            Step(
                "Build the workstation AMIs",
                "research",
                tuple(
                    # A subshell per build, so that each line runs as is from the repository root.
                    f"(cd packer && packer init . && \\\n    AWS_PROFILE=research packer build"
                    f" -var-file=versions/{name}.pkrvars.hcl -var region={research_region} .)"
                    for name in amis
                ),
                produces=tuple(
                    Item("ssm-parameter", research_id, research_region, published[name].ssm_parameter_name)
                    for name in amis
                ),
                note="Each build writes its AMI ID to the SSM parameter the workbench reads at deploy time"
                " ([packer/README.md](packer/README.md)); the workbench cannot be created before.",
            )
        )
    steps.append(
        Step(
            "The rest of research",
            "research",
            (deploy_command(("Research/*",), "research"),),
            stacks=("Research/*",),
            note="Guardrails and workbench; `Research/Network` now finds the active peering connection and adds"
            " the R&D side's routes to management.",
        )
    )
    return Plan(steps=tuple(steps), config_fields={RESEARCH_VPC_FIELD: cfg.network.peering.research_vpc_id})


def _organization_step(cfg: PlatformConfig) -> Step:
    prod_id, _ = _account(cfg, "production")
    research_id, _ = _account(cfg, "research")
    root = "$(aws organizations list-roots --query 'Roots[0].Id' --output text --profile prod)"
    commands = [
        "aws organizations create-organization --feature-set ALL --profile prod"
        "  # or: aws organizations enable-all-features",
        f"aws organizations enable-policy-type --root-id {root} --policy-type SERVICE_CONTROL_POLICY --profile prod",
    ]
    produces = [Item("organization", prod_id, "", "all features with SERVICE_CONTROL_POLICY enabled")]
    if not cfg.organization.create_research_account:
        commands += [
            f"aws organizations invite-account-to-organization --target Id={research_id},Type=ACCOUNT --profile prod",
            "aws organizations accept-handshake --handshake-id <id from the invitation> --profile research",
        ]
        produces.append(Item("organization-member", research_id, "", f"of the organization of {prod_id}"))
    return Step(
        "Enable AWS Organizations with all features and SCPs",
        "production",
        tuple(commands),
        produces=tuple(produces),
        note="`organization.manage_scps` is on: the production stacks attach SCPs to the research account.",
    )
