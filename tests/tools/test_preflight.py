"""`python -m tools.preflight` against moto on 127.0.0.1, and its decisions on plain data.

moto 5.2 serves Service Quotas for VPC quotas only (`get_service_quota` answers NoSuchResource for ec2 and lambda,
and it has no `get_aws_default_service_quota`), so the runs that need quota values go through a loopback double
that answers the Service Quotas calls itself and forwards every other request to moto. The quota decisions are
also tested directly with plain values below.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.ssm.models import Parameter, ssm_backends

from cdk_constructs.python_lambda import POWERTOOLS_LAYER_PARAMETER
from stacks.config import load_platform
from tests.conftest import REGION, LoopbackHandler, loopback_server
from tests.infra.conftest import synth_variant
from tools.deploy_plan.assembly import read_assembly
from tools.deploy_plan.plan import deploy_plan
from tools.preflight import checks
from tools.preflight.__main__ import main
from tools.preflight.needs import Fleet, account_needs, fleets_of, vcpus_needed

PROD, RESEARCH = "111111111111", "222222222222"
QUALIFIER = "hnb659fds"
BOOTSTRAP_ROLES = ("deploy-role", "file-publishing-role")
AMI_PARAMETERS = ("/mlbase/ami/workstation/driver550-cuda12.4-v1", "/mlbase/ami/workstation/driver570-cuda12.8-v1")
G_ON_DEMAND, G_SPOT, LAMBDA = "L-DB2E81BA", "L-3819A6DF", "L-B99A9384"


def _credentials(endpoint: str, account: str) -> dict[str, str]:
    """Credentials that moto attributes to `account` (moto keys its state by the assumed role's account)."""
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/preflight-test", RoleSessionName="preflight")[
        "Credentials"
    ]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


@pytest.fixture
def profiles(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    """AWS CLI profiles `prod` and `research` in a credentials file, each resolving to its account in moto."""
    creds = {"prod": _credentials(aws, PROD), "research": _credentials(aws, RESEARCH)}
    lines = [f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in c.items()) for name, c in creds.items()]
    (tmp_path / "credentials").write_text("\n".join(lines))
    (tmp_path / "config").write_text("".join(f"[profile {n}]\nregion = {REGION}\n" for n in creds))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    # The environment's keys belong to moto's default account; the profile must be what decides.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    return creds


def _client(endpoint: str, creds: dict[str, str], service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, **creds)


def _bootstrap(endpoint: str, creds: dict[str, str], account: str, trusted: str) -> None:
    """What `cdk bootstrap --trust <trusted>` leaves behind, as far as the preflight reads it."""
    _client(endpoint, creds, "ssm").put_parameter(Name=f"/cdk-bootstrap/{QUALIFIER}/version", Value="27", Type="String")
    _client(endpoint, creds, "cloudformation").create_stack(
        StackName="CDKToolkit",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{a}:root"}}
            for a in sorted({account, trusted})
        ],
    }
    iam = _client(endpoint, creds, "iam")
    for role in BOOTSTRAP_ROLES:
        iam.create_role(
            RoleName=f"cdk-{QUALIFIER}-{role}-{account}-{REGION}", AssumeRolePolicyDocument=json.dumps(trust)
        )


def _powertools_layer(account: str) -> None:
    """AWS's public parameter that names the pinned Powertools release's layer. moto refuses `/aws/` names through its
    API, as AWS does, so the stand-in goes straight into moto's backend (the server runs in this process)."""
    arn = f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:40"
    ssm_backends[account][REGION]._parameters[POWERTOOLS_LAYER_PARAMETER].append(
        Parameter(account, POWERTOOLS_LAYER_PARAMETER, arn, "String", None, None, None, datetime.now(UTC), 1, "text")
    )


def ready_research(endpoint: str, creds: dict[str, str]) -> None:
    """A research account ready for its first deploy."""
    _bootstrap(endpoint, creds, RESEARCH, PROD)
    _powertools_layer(RESEARCH)
    secrets = _client(endpoint, creds, "secretsmanager")
    secrets.create_secret(Name="mlbase/slack", SecretString='{"webhook_url": "https://hooks.slack.invalid/x"}')
    secrets.create_secret(Name="mlbase/slack-signing", SecretString="signing")
    for name in AMI_PARAMETERS:
        _client(endpoint, creds, "ssm").put_parameter(Name=name, Value="ami-0123456789abcdef0", Type="String")


@pytest.fixture
def quotas(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, float]]]:
    """A loopback endpoint: Service Quotas answered from the returned table (code -> value), the rest sent to moto."""
    table: dict[str, float] = {G_ON_DEMAND: 64, G_SPOT: 128, LAMBDA: 1000}

    class Handler(LoopbackHandler):
        def _answer(self) -> None:
            body = self.body()
            target = self.headers.get("X-Amz-Target", "")
            if target.startswith("ServiceQuotasV20190624."):
                code = json.loads(body)["QuotaCode"]
                if code not in table:
                    self.reply(400, json.dumps({"__type": "NoSuchResourceException", "message": code}).encode())
                    return
                self.reply(200, json.dumps({"Quota": {"QuotaCode": code, "Value": table[code]}}).encode())
                return
            request = urllib.request.Request(
                f"{aws}{self.path}", data=body or None, method=self.command, headers=dict(self.headers.items())
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, payload, headers = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as err:
                status, payload, headers = err.code, err.read(), err.headers
            self.reply(status, payload, {"Content-Type": headers.get("Content-Type", "application/xml")})

        do_GET = _answer  # noqa: N815
        do_POST = _answer  # noqa: N815

    with loopback_server(Handler) as url:
        yield url, table


def run(capsys: pytest.CaptureFixture[str], assembly: Path, profile: str, endpoint: str) -> tuple[int, list[str]]:
    """Preflight of `profile` against `endpoint`, with the config `assembly` was synthesized from."""
    config = assembly.parent / "config" / "platform.yaml"
    options = ["--config", str(config)] if config.is_file() else []
    code = main(["--profile", profile, "--assembly", str(assembly), "--endpoint-url", endpoint, *options])
    return code, capsys.readouterr().out.splitlines()


def _line(lines: list[str], fragment: str) -> str:
    found = [line for line in lines if fragment in line]
    assert len(found) == 1, (fragment, lines)
    return found[0]


def test_a_ready_research_account_passes(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    cloud_assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = quotas
    ready_research(url, profiles["research"])
    code, lines = run(capsys, cloud_assembly, "research", url)
    assert code == 0, lines
    assert [line for line in lines if not line.startswith("ok ")] == [f"preflight: all {len(lines) - 1} checks passed"]
    assert _line(lines, "CDK bootstrap in ap-northeast-1").endswith("version 27 (>= 6)")
    for role in BOOTSTRAP_ROLES:
        assert "trusts account 111111111111" in _line(lines, f"bootstrap role cdk-{QUALIFIER}-{role}")
    # taro's g5.xlarge and yuki's g4dn.xlarge: 4 vCPUs each, on demand.
    assert "64 >= 8" in _line(lines, f"quota on-demand G and VT vCPUs ({G_ON_DEMAND})")
    reserved = sum(
        int(r["Properties"].get("ReservedConcurrentExecutions", 0))
        for s in read_assembly(cloud_assembly).stacks
        if s.account == RESEARCH
        for _, r in s.resources("AWS::Lambda::Function")
    )
    # Reserved concurrency is off by default (lambdas.reserved_concurrency): any quota will do.
    assert reserved == 0
    assert "nothing reserved" in _line(lines, f"({LAMBDA})")
    for name in AMI_PARAMETERS:
        assert "resolves to ami-0123456789abcdef0" in _line(lines, f"SSM parameter {name}")
    assert "layer:AWSLambdaPowertoolsPythonV3-python313-arm64:40" in _line(lines, POWERTOOLS_LAYER_PARAMETER)
    assert "Research-Audit creates it" in _line(lines, "Config recorder in ap-northeast-1")


def test_a_missing_secret_a_low_quota_and_an_existing_recorder_are_each_named(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    cloud_assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, table = quotas
    creds = profiles["research"]
    ready_research(url, creds)
    _client(url, creds, "secretsmanager").delete_secret(
        SecretId="mlbase/slack-signing", ForceDeleteWithoutRecovery=True
    )
    table[G_ON_DEMAND] = 4
    config = _client(url, creds, "config")
    config.put_configuration_recorder(
        ConfigurationRecorder={"name": "default", "roleARN": f"arn:aws:iam::{RESEARCH}:role/control-tower"}
    )
    code, lines = run(capsys, cloud_assembly, "research", url)
    assert code == 1
    assert _line(lines, "secret mlbase/slack-signing") == (
        "missing  secret mlbase/slack-signing in ap-northeast-1: does not exist; fix: aws secretsmanager create-secret"
        " --name mlbase/slack-signing --secret-string file://signing-secret.txt --profile research"
    )
    assert _line(lines, f"({G_ON_DEMAND})") == (
        f"low      quota on-demand G and VT vCPUs ({G_ON_DEMAND}) in ap-northeast-1: 4, needs 8 (Research-Workbench"
        f" at full size); fix: aws service-quotas request-service-quota-increase --service-code ec2 --quota-code"
        f" {G_ON_DEMAND} --desired-value 8 --region ap-northeast-1 --profile research"
    )
    recorder = _line(lines, "Config recorder in ap-northeast-1")
    assert recorder.startswith("conflict Config recorder in ap-northeast-1: 'default' exists and Research-Audit")
    assert "aws configservice delete-configuration-recorder --configuration-recorder-name default" in recorder
    assert [line.split()[0] for line in lines].count("ok") == len(lines) - 3


def test_moto_alone_cannot_answer_the_quotas_so_they_block(
    profiles: dict[str, dict[str, str]], aws: str, cloud_assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready_research(aws, profiles["research"])
    code, lines = run(capsys, cloud_assembly, "research", aws)
    assert code == 1
    assert _line(lines, f"({G_ON_DEMAND})").startswith(
        f"error    quota on-demand G and VT vCPUs ({G_ON_DEMAND}) in ap-northeast-1: could not be read; needs 8"
    )
    assert _line(lines, f"({LAMBDA})").startswith("ok       Lambda concurrency")


def test_research_bootstrap_that_does_not_trust_production_is_named(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    cloud_assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = quotas
    creds = profiles["research"]
    ready_research(url, creds)
    own = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": RESEARCH}}],
    }
    role = f"cdk-{QUALIFIER}-deploy-role-{RESEARCH}-{REGION}"
    _client(url, creds, "iam").update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(own))
    code, lines = run(capsys, cloud_assembly, "research", url)
    assert code == 1
    assert _line(lines, f"bootstrap role {role}").startswith(
        f"missing  bootstrap role {role}: does not trust account {PROD}; fix: npx cdk bootstrap"
        f" aws://{RESEARCH}/{REGION} --profile research --trust {PROD}"
    )


def test_an_ami_parameter_the_packer_build_has_not_written_is_named_with_its_build(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    cloud_assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = quotas
    ready_research(url, profiles["research"])
    _client(url, profiles["research"], "ssm").delete_parameter(Name=AMI_PARAMETERS[1])
    code, lines = run(capsys, cloud_assembly, "research", url)
    assert code == 1
    assert _line(lines, AMI_PARAMETERS[1]) == (
        f"missing  SSM parameter {AMI_PARAMETERS[1]} in {REGION}: does not resolve; fix: (cd packer && packer init ."
        " && AWS_PROFILE=research packer build -var-file=versions/driver570-cuda12.8-v1.pkrvars.hcl"
        f" -var region={REGION} .)"
    )
    assert _line(lines, AMI_PARAMETERS[0]).startswith("ok ")


def test_an_unbootstrapped_production_account_without_the_pinned_gpu_ami(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    cloud_assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = quotas
    code, lines = run(capsys, cloud_assembly, "prod", url)
    assert code == 1
    assert _line(lines, "account") == f"ok       account: {PROD} is accounts.production"
    assert _line(lines, "CDK bootstrap") == (
        f"missing  CDK bootstrap in {REGION}: no CDKToolkit stack; fix: npx cdk bootstrap aws://{PROD}/{REGION}"
        " --profile prod"
    )
    assert "bootstrap role" not in "\n".join(lines)
    assert _line(lines, "secret mlbase/slack").startswith("missing  secret mlbase/slack in ap-northeast-1")
    # moto knows no such ECS GPU AMI release; the parameter a worker pins must resolve in the account.
    ecs = _line(lines, "SSM parameter /aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/")
    assert ecs.startswith("missing ")
    assert "capacity.ami_ssm_parameter" in ecs
    assert _line(lines, "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64").startswith("ok ")
    # Nor does it know the pinned Powertools release's layer: named with what to pin instead.
    powertools = _line(lines, POWERTOOLS_LAYER_PARAMETER)
    assert powertools.startswith("missing ")
    assert "POWERTOOLS_VERSION in cdk_constructs/python_lambda.py" in powertools
    # food-photo: 26 hosts at most, 1 + 25% of the other 25 on demand (8, rounded up), the rest spot (18),
    # 4 vCPUs each.
    assert "64 >= 32" in _line(lines, f"quota on-demand G and VT vCPUs ({G_ON_DEMAND})")
    assert "128 >= 72" in _line(lines, f"quota spot G and VT vCPUs ({G_SPOT})")


@pytest.fixture(scope="module")
def scps_on(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cloud assembly of the example config with `organization.manage_scps: true`."""
    root = tmp_path_factory.mktemp("preflight-scps")

    def edit(data: dict[str, Any]) -> None:
        data["organization"]["manage_scps"] = True

    synth_variant(root, edit)
    return root / "cdk.out"


def test_scps_need_the_policy_type_and_the_research_account_in_the_organization(
    profiles: dict[str, dict[str, str]],
    quotas: tuple[str, dict[str, float]],
    scps_on: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = quotas
    _, before = run(capsys, scps_on, "prod", url)
    assert _line(before, "AWS Organizations").startswith(
        "missing  AWS Organizations: no organization; fix: aws organizations create-organization --feature-set ALL"
    )
    organizations = _client(url, profiles["prod"], "organizations")
    organizations.create_organization(FeatureSet="ALL")
    _, lines = run(capsys, scps_on, "prod", url)
    assert _line(lines, "AWS Organizations") == "ok       AWS Organizations: all features"
    root = organizations.list_roots()["Roots"][0]["Id"]
    assert _line(lines, "SCP policy type") == (
        "missing  SCP policy type: not enabled on the root; fix: aws organizations enable-policy-type --root-id"
        " $(aws organizations list-roots --query 'Roots[0].Id' --output text --profile prod) --policy-type"
        " SERVICE_CONTROL_POLICY --profile prod"
    )
    # moto gives accounts it creates IDs of its own, so the research account stays outside this organization.
    assert _line(lines, f"account {RESEARCH}").startswith(
        f"missing  account {RESEARCH}: not a member; fix: aws organizations invite-account-to-organization"
        f" --target Id={RESEARCH},Type=ACCOUNT --profile prod"
    )
    organizations.enable_policy_type(RootId=root, PolicyType="SERVICE_CONTROL_POLICY")
    _, after = run(capsys, scps_on, "prod", url)
    assert _line(after, "SCP policy type") == "ok       SCP policy type: enabled on the root"


def test_a_profile_of_another_account_is_refused(
    profiles: dict[str, dict[str, str]],
    aws: str,
    cloud_assembly: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = _credentials(aws, "333333333333")
    with open(tmp_path / "credentials", "a") as file:
        file.write("\n[other]\n" + "".join(f"{k} = {v}\n" for k, v in other.items()))
    code, lines = run(capsys, cloud_assembly, "other", aws)
    assert code == 1
    assert lines[0].startswith(
        f"error    account: the profile is account 333333333333, neither accounts.production ({PROD}) nor"
        f" accounts.research ({RESEARCH})"
    )


def test_an_unknown_profile_is_one_line(
    profiles: dict[str, dict[str, str]], aws: str, cloud_assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--profile", "nobody", "--assembly", str(cloud_assembly), "--endpoint-url", aws]) == 2
    assert capsys.readouterr().err == "preflight: The config profile (nobody) could not be found\n"


def test_a_missing_assembly_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--assembly", str(tmp_path / "nowhere")]) == 2
    assert (
        capsys.readouterr().err
        == f"preflight: {tmp_path / 'nowhere'}: no cloud assembly here; run `make synth` first\n"
    )


# --- decisions on plain data -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status", "detail"),
    [
        (None, "error", "could not be read; needs 24 (why)"),
        (16, "low", "16, needs 24 (why)"),
        (24, "ok", "24 >= 24 (why)"),
    ],
)
def test_quota_decision(value: float | None, status: str, detail: str) -> None:
    result = checks.quota("on-demand G and VT vCPUs", G_ON_DEMAND, REGION, value, 24, "why", "increase it")
    assert (result.status, result.detail) == (status, detail)
    assert result.blocks == (status != "ok")


def test_vcpus_count_each_fleet_at_its_largest_type_per_market() -> None:
    fleets = (
        Fleet("PhotoService/Hosts", ("g5.xlarge", "g5.2xlarge"), on_demand=6, spot=14),
        Fleet("Workbench/Taro", ("g5.xlarge",), on_demand=1, spot=0),
        Fleet("Workbench/Big", ("p4d.24xlarge",), on_demand=1, spot=0),
    )
    vcpus = {"g5.xlarge": 4, "g5.2xlarge": 8, "p4d.24xlarge": 96}
    assert vcpus_needed(fleets, vcpus) == {
        ("G and VT", "on-demand"): 6 * 8 + 4,
        ("G and VT", "spot"): 14 * 8,
        ("P", "on-demand"): 96,
    }


def test_the_photo_fleet_is_read_from_its_auto_scaling_group(cloud_assembly: Path) -> None:
    stack = next(s for s in read_assembly(cloud_assembly).stacks if s.name == "Production-PhotoService")
    [fleet] = fleets_of(stack)
    assert (fleet.instance_types, fleet.on_demand, fleet.spot) == (("g5.xlarge", "g4dn.xlarge"), 8, 18)


def test_needs_of_the_research_account_come_from_its_templates(cloud_assembly: Path) -> None:
    platform = load_platform()
    need = account_needs(read_assembly(cloud_assembly), deploy_plan(platform), "research", RESEARCH, PROD)
    assert [s.name for s in need.secrets] == ["mlbase/slack", "mlbase/slack-signing"]
    assert [p.name for p in need.parameters] == [POWERTOOLS_LAYER_PARAMETER, *AMI_PARAMETERS]
    assert need.bootstrap == {REGION: (f"/cdk-bootstrap/{QUALIFIER}/version", 6)}
    assert need.trusted_roles == tuple(
        sorted(f"arn:aws:iam::{RESEARCH}:role/cdk-{QUALIFIER}-{r}-{RESEARCH}-{REGION}" for r in BOOTSTRAP_ROLES)
    )
    assert need.config_recorder == {REGION: "Research-Audit"}
    assert need.organization == ()


@pytest.mark.parametrize(
    ("document", "trusted"),
    [
        ({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": PROD}}]}, True),
        ({"Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole"],
                         "Principal": {"AWS": [f"arn:aws:iam::{RESEARCH}:root", f"arn:aws:iam::{PROD}:root"]}}]}, True),
        ({"Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": {"AWS": PROD}}]}, False),
        ({"Statement": [{"Effect": "Allow", "Action": "sts:TagSession", "Principal": {"AWS": PROD}}]}, False),
        ({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                         "Principal": {"AWS": f"arn:aws:iam::{PROD}:role/someone"}}]}, False),
    ],
)  # fmt: skip
def test_trust_of_production(document: dict[str, Any], trusted: bool) -> None:
    assert checks.trusts(document, PROD) is trusted


@pytest.mark.parametrize(
    ("existing", "ours", "created_by", "rules", "status"),
    [
        ((), (), "Research-Audit", True, "ok"),
        (("default",), ("default",), "Research-Audit", True, "ok"),
        (("default",), (), "Research-Audit", True, "conflict"),
        (("default",), (), None, True, "ok"),
        ((), (), None, True, "missing"),
        ((), (), None, False, "ok"),
    ],
)
def test_config_recorder_decision(
    existing: tuple[str, ...], ours: tuple[str, ...], created_by: str | None, rules: bool, status: str
) -> None:
    result = checks.config_recorder(REGION, existing, ours, created_by, rules, "recorder", "delete {name}")
    assert result.status == status
    if status == "conflict":
        assert result.fix == "delete default"


def test_organization_decisions() -> None:
    none = checks.organization(None, None, {RESEARCH: False}, "create", "enable", "invite")
    assert [(r.status, r.check, r.fix) for r in none] == [
        ("missing", "AWS Organizations", "create"),
        ("missing", "SCP policy type", "enable"),
        ("missing", f"account {RESEARCH}", "invite"),
    ]
    billing_only = checks.organization("CONSOLIDATED_BILLING", None, {}, "create", "enable", "invite")
    assert billing_only[0].detail == "feature set CONSOLIDATED_BILLING, SCPs need ALL"
    ready = checks.organization("ALL", "ENABLED", {RESEARCH: True}, "create", "enable", "invite")
    assert [r.status for r in ready] == ["ok", "ok", "ok"]


def test_bootstrap_decision() -> None:
    assert checks.bootstrap(REGION, "5", 6, "UPDATE_COMPLETE", "fix").status == "low"
    assert checks.bootstrap(REGION, "27", 6, "UPDATE_ROLLBACK_COMPLETE", "fix").status == "error"
    assert checks.bootstrap(REGION, None, 6, "CREATE_COMPLETE", "fix").detail == "no bootstrap version parameter"
    assert checks.bootstrap(REGION, "27", 6, "CREATE_COMPLETE", "fix").status == "ok"
