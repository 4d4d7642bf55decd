"""The deploy workflow's roles (stacks/delivery.py): who may assume them, and what a session of one may do.

What a session may do is judged by the IAM engine. The trust side is not: the engine keeps only condition keys it
knows for the action, and GitHub's `token.actions.githubusercontent.com:sub`/`:aud` are not among them (it reports
them as ignored). So each token case is judged by `trust_allows` below, which evaluates the resolved trust policy
the way IAM does for the two operators it may use (every key of a `StringEquals`/`StringLike` block must match one
of its values; anything else fails the test), and the policy's shape is pinned so that nothing else can let a token
in (one statement, one action, the stack's own provider as the only principal).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, load_platform
from stacks.delivery import BOOTSTRAP_ROLES, GITHUB_OIDC_HOST, STS_AUDIENCE
from tests.infra.conftest import synth_variant
from tests.policy.assembly import Assembly
from tests.policy.engine import Case, arn, check, resource_policy, role_session

ACCOUNTS = {"Production": ("111111111111", "production"), "Research": ("222222222222", "research")}
REGION = "ap-northeast-1"
REPO = "example-org/mlbase"
AUD, SUB = f"{GITHUB_OIDC_HOST}:aud", f"{GITHUB_OIDC_HOST}:sub"
OIDC_DOC = "https://docs.github.com/en/actions/reference/security/oidc"


def bootstrap_arn(account: str, kind: str, qualifier: str = "hnb659fds", region: str = REGION) -> str:
    return f"arn:aws:iam::{account}:role/cdk-{qualifier}-{kind}-role-{account}-{region}"


# ---- trust: which GitHub tokens become a session -----------------------------------------------------------------
def _matches(operator: str, expected: Any, actual: str | None) -> bool:
    values = expected if isinstance(expected, list) else [expected]
    if actual is None:
        return False
    if operator == "StringEquals":
        return actual in values
    if operator == "StringLike":
        return any(fnmatch.fnmatchcase(actual, v) for v in values)
    raise AssertionError(f"trust policy uses {operator}, which this test does not evaluate")


def trust_allows(trust: Any, provider: str, claims: dict[str, str]) -> bool:
    """Whether a web-identity token from `provider` with `claims` may assume the role (no Deny statements exist)."""
    for statement in trust["Statement"]:
        assert statement["Effect"] == "Allow", statement
        if statement["Principal"] != {"Federated": provider}:
            continue
        blocks = statement.get("Condition", {})
        if all(_matches(op, v, claims.get(k)) for op, keys in blocks.items() for k, v in keys.items()):
            return True
    return False


def token(sub: str, aud: str = STS_AUDIENCE) -> dict[str, str]:
    return {SUB: sub, AUD: aud}


def env(name: str, repo: str = REPO) -> str:
    return f"repo:{repo}:environment:{name}"


# (id, stage, claims, allowed, reason); the subjects are GitHub's default claim formats (OIDC_DOC).
TOKENS: list[tuple[str, str, dict[str, str], bool, str]] = [
    ("prod-env-job", "Production", token(env("production")), True, "the protected environment's deploy job"),
    ("research-env-job", "Research", token(env("research")), True, "the research environment's deploy job"),
    ("prod-role-research-env", "Production", token(env("research")), False, "research's jobs never reach production"),
    ("research-role-prod-env", "Research", token(env("production")), False, "one environment per account"),
    ("main-branch-no-env", "Production", token(f"repo:{REPO}:ref:refs/heads/main"), False,
     "a job on main outside the environment skips its required reviewers"),
    ("other-branch", "Production", token(f"repo:{REPO}:ref:refs/heads/feature"), False, "any other branch"),
    ("pull-request", "Production", token(f"repo:{REPO}:pull_request"), False, "a pull request, forks included"),
    ("tag", "Production", token(f"repo:{REPO}:ref:refs/tags/v1"), False, "a pushed tag"),
    ("other-repo-same-env", "Production", token(env("production", "example-org/other")), False,
     "another repository of the same owner with an environment of the same name"),
    ("lookalike-repo", "Production", token(env("production", "example-org/mlbase-fork")), False,
     "a repository whose name starts with this one's"),
    ("other-owner", "Production", token(env("production", "attacker/mlbase")), False, "another owner's copy"),
    ("wrong-audience", "Production", token(env("production"), "api://other"), False,
     "a token minted for another audience"),
    ("no-audience", "Production", {SUB: env("production")}, False, "a token without an audience"),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "claims", "allowed"), [t[1:4] for t in TOKENS], ids=[t[0] for t in TOKENS])
def test_trust(assembly: Assembly, stage: str, claims: dict[str, str], allowed: bool) -> None:
    role = assembly.at(f"{stage}/Delivery/DeployRole")
    provider = assembly.ref(assembly.at(f"{stage}/Delivery/GitHubOidcProvider"))

    assert trust_allows(resource_policy(assembly, role), provider, claims) is allowed


@pytest.mark.parametrize("stage", ACCOUNTS)
def test_trust_has_one_statement_for_the_stacks_own_provider(assembly: Assembly, stage: str) -> None:
    role = assembly.at(f"{stage}/Delivery/DeployRole")
    provider = assembly.at(f"{stage}/Delivery/GitHubOidcProvider")
    trust = resource_policy(assembly, role)
    assert trust is not None
    (statement,) = trust["Statement"]

    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": assembly.ref(provider)}
    assert set(statement["Condition"]) == {"StringEquals"}
    assert provider.props == {"ClientIdList": [STS_AUDIENCE], "Url": f"https://{GITHUB_OIDC_HOST}"}
    assert assembly.physical_name(role) == "MlbaseGitHubDeploy"


# ---- what a session of the deploy role may do (IAM engine) -------------------------------------------------------
def _cases() -> list[Case]:
    cases = []
    for stage, (account, _) in ACCOUNTS.items():
        who = role_session(f"{stage}/Delivery/DeployRole", "github-deploy")
        other = next(a for s, (a, _) in ACCOUNTS.items() if s != stage)
        for kind in BOOTSTRAP_ROLES:
            why = f"the CDK CLI deploys, publishes and reads through the {kind} role"
            role = arn(bootstrap_arn(account, kind), f"{stage}/Delivery")
            cases.append(Case(f"{stage}-assume-{kind}", who, "sts:AssumeRole", role, "allow", why))
        denied = [
            ("cfn-exec", "sts:AssumeRole", bootstrap_arn(account, "cfn-exec"),
             "CloudFormation's execution role (AdministratorAccess) is CloudFormation's alone"),
            ("break-glass", "sts:AssumeRole", f"arn:aws:iam::{account}:role/MlbaseBreakGlass", "break-glass role"),
            ("other-qualifier", "sts:AssumeRole", bootstrap_arn(account, "deploy", "other1234"),
             "another bootstrap's roles"),
            ("other-region", "sts:AssumeRole", bootstrap_arn(account, "deploy", region="us-east-1"),
             "the bootstrap of a region the platform does not use"),
            ("other-account", "sts:AssumeRole", bootstrap_arn(other, "deploy"), "the other account's bootstrap"),
            ("create-user", "iam:CreateUser", f"arn:aws:iam::{account}:user/ci", "no IAM of its own"),
            ("update-stack", "cloudformation:UpdateStack",
             f"arn:aws:cloudformation:{REGION}:{account}:stack/{stage}-Audit/x", "only through the deploy role"),
            ("read-objects", "s3:GetObject", f"arn:aws:s3:::mlbase-any-bucket-{account}/key", "no data access"),
            ("pass-role", "iam:PassRole", bootstrap_arn(account, "cfn-exec"), "no role passing of its own"),
        ]  # fmt: skip
        for name, action, resource, why in denied:
            cases.append(Case(f"{stage}-{name}", who, action, arn(resource, f"{stage}/Delivery"), "deny", why))
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_session(case: Case, verdicts: dict[str, Any]) -> None:
    check(case, verdicts[case.id])


# ---- config --------------------------------------------------------------------------------------------------------
def test_an_existing_provider_is_referenced_not_created(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["github"]["oidc_provider"] = {"production": "existing", "research": "create"}

    templates = synth_variant(tmp_path, edit)
    production = templates["Production-Delivery"]["Resources"]
    (role,) = [r for r in production.values() if r["Type"] == "AWS::IAM::Role"]

    assert not [r for r in production.values() if r["Type"] == "AWS::IAM::OIDCProvider"]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Federated": f"arn:aws:iam::111111111111:oidc-provider/{GITHUB_OIDC_HOST}"}
    assert [r["Type"] for r in templates["Research-Delivery"]["Resources"].values()].count("AWS::IAM::OIDCProvider")


def _config_with(tmp_path: Path, github: str) -> Path:
    source = Path(__file__).resolve().parents[2] / "config"
    text = (source / "platform.yaml").read_text(encoding="utf-8")
    head = text[: text.index("\ngithub:")]
    (tmp_path / "workers").symlink_to(source / "workers")
    path = tmp_path / "platform.yaml"
    path.write_text(head + "\n" + github, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("github", "field", "message"),
    [
        ("github:\n  repository: mlbase\n", "github.repository", "must be a GitHub repository as owner/name"),
        ("github:\n  repository: a/b/c\n", "github.repository", "must be a GitHub repository as owner/name"),
        ("github:\n  repository: o/r\n  environments: {production: prod, research: prod}\n",
         "github.environments", "production and research must be different environments"),
        ("github:\n  repository: o/r\n  environments: {production: 'pro d'}\n",
         "github.environments.production", "must be a GitHub environment name"),
        ("github:\n  repository: o/r\n  oidc_provider: {research: import}\n", "github.oidc_provider.research",
         "Input should be 'create' or 'existing'"),
        ("github:\n  environments: {production: p}\n", "github.repository", "is required"),
    ],
    ids=["no-owner", "three-parts", "same-environment", "space-in-environment", "provider-mode", "no-repository"],
)  # fmt: skip
def test_bad_github_config_is_one_line(tmp_path: Path, github: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_platform(_config_with(tmp_path, github))

    line = err.value.line()
    assert f": {field}: " in line
    assert message in line
    assert "\n" not in line


def test_without_github_there_is_no_delivery_stack(tmp_path: Path) -> None:
    templates = synth_variant(tmp_path, lambda data: data.pop("github"))

    assert not [name for name in templates if name.endswith("-Delivery")]
