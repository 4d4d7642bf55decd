"""The change report: normalization, each flag kind on crafted template pairs, exit codes, text and Markdown."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.review.__main__ import EXIT_CLEAN, EXIT_ERROR, EXIT_FLAGGED, ReviewError, run
from tools.review.assembly import load_assembly
from tools.review.diff import diff_templates
from tools.review.flags import CATEGORIES, flag_stack
from tools.review.normalize import normalize_template
from tools.review.spec import property_replacement

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASSEMBLY = FIXTURES / "assembly"
PAIRS = sorted((FIXTURES / "pairs").glob("*.json"))
REPO_ROOT = Path(__file__).resolve().parents[2]
HASH = "3f1c9a7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
PHOTO = "assembly-Production/ProductionPhotoService8A5210A7.template.json"
WORKBENCH = "assembly-Research/ResearchWorkbench7EE12B25.template.json"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _edit(root: Path, relative: str, change: Any) -> None:
    path = root / relative
    template = _load(path)
    change(template["Resources"])
    path.write_text(json.dumps(template), encoding="utf-8")


@pytest.fixture
def scratch_branch(tmp_path: Path) -> Path:
    """The fixture assembly after the three changes the issue names: a bucket's logical ID, s3:*, port 22 open."""
    root = tmp_path / "current"
    shutil.copytree(ASSEMBLY, root)

    def photo(resources: dict[str, Any]) -> None:
        resources["UploadBucket"] = resources.pop("Uploads4F6EB0FD")
        policy = resources["WorkerTaskTaskRoleDefaultPolicy242C79D9"]["Properties"]["PolicyDocument"]
        policy["Statement"].append({"Action": "s3:*", "Effect": "Allow", "Resource": "*"})

    def workbench(resources: dict[str, Any]) -> None:
        ingress = resources["WorkstationSg4B6F53CE"]["Properties"]["SecurityGroupIngress"]
        ingress.append({"CidrIp": "0.0.0.0/0", "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22})

    _edit(root, PHOTO, photo)
    _edit(root, WORKBENCH, workbench)
    return root


# --- normalize_template -----------------------------------------------------------------------------------------


def test_normalize_replaces_asset_hashes_and_keeps_bootstrap_names() -> None:
    bucket = {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"}
    image = {
        "Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/cdk-hnb659fds-container-assets:" + HASH
    }
    template = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Code": {"S3Bucket": bucket, "S3Key": f"{HASH}.zip"}},
                "Metadata": {"aws:asset:path": f"asset.{HASH}"},
            },
            "Task": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"ContainerDefinitions": [{"Image": image}]}},
        }
    }
    original = copy.deepcopy(template)

    result = normalize_template(template)

    fn = result["Resources"]["Fn"]
    assert fn["Properties"]["Code"] == {"S3Bucket": bucket, "S3Key": "ASSET-HASH.zip"}
    assert fn["Metadata"] == {"aws:asset:path": "asset.ASSET-HASH"}
    image_out = result["Resources"]["Task"]["Properties"]["ContainerDefinitions"][0]["Image"]["Fn::Sub"]
    assert image_out.endswith("/cdk-hnb659fds-container-assets:ASSET-HASH")
    assert template == original
    assert normalize_template(result) == result


def test_normalize_leaves_other_hex_runs_alone() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    longer = HASH + "ab"
    template = {"Resources": {f"FnCurrentVersion{md5[:8]}": {"Type": "X", "Properties": {"A": md5, "B": longer}}}}

    assert normalize_template(template) == template


# --- flags on crafted pairs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=[p.stem for p in PAIRS])
def test_pair_raises_exactly_the_expected_flags(pair: Path) -> None:
    case = _load(pair)

    diff = diff_templates("Production", "Production-Test", case["before"], case["after"])
    flags = flag_stack(diff)

    assert not diff.empty
    for category, logical_id, text in case["expect"]:
        matching = [f for f in flags if f.category == category and f.logical_id == logical_id and text in f.message]
        assert matching, f"{pair.stem}: no {category} flag on {logical_id} containing {text!r}: {flags}"
    assert {f.category for f in flags} == {c for c, _, _ in case["expect"]}


def test_pairs_cover_every_flag_kind() -> None:
    covered = {category for pair in PAIRS for category, _, _ in _load(pair)["expect"]}

    assert covered == set(CATEGORIES)


def test_unchanged_template_has_no_diff() -> None:
    template = _load(ASSEMBLY / PHOTO)

    assert diff_templates("Production", "Production-PhotoService", template, copy.deepcopy(template)).empty


def test_replacement_knowledge_comes_from_the_cdk_cli_spec() -> None:
    assert property_replacement("AWS::S3::Bucket", "BucketName") == "yes"
    assert property_replacement("AWS::SQS::Queue", "VisibilityTimeout") == "no"
    # Something the built-in fallback table does not know: the CLI's spec is in use.
    assert property_replacement("AWS::EC2::Instance", "ImageId") == "yes"


def test_replacement_falls_back_to_built_in_table_without_node_modules(tmp_path: Path) -> None:
    missing = tmp_path / "db.json.gz"

    assert property_replacement("AWS::DynamoDB::Table", "KeySchema", missing) == "yes"
    assert property_replacement("AWS::EC2::Instance", "ImageId", missing) == "no"


def test_modified_resource_lists_changed_properties_and_replacement() -> None:
    before = {"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}}}
    after = {
        "Resources": {
            "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 90, "LogGroupName": "/w"}}
        }
    }

    (change,) = diff_templates("P", "P-S", before, after).resources
    (flag,) = flag_stack(diff_templates("P", "P-S", before, after))

    assert (change.kind, change.changed, change.replacement) == ("modified", ("LogGroupName", "RetentionInDays"), "yes")
    assert flag.message == "**replaced** (changed: LogGroupName)"


# --- command line: assemblies, snapshots, revisions -------------------------------------------------------------


def test_scratch_branch_changes_are_flagged_at_the_top(
    scratch_branch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--assembly", str(scratch_branch), "--baseline-assembly", str(ASSEMBLY), "--color", "never"])
    out = capsys.readouterr().out

    assert code == EXIT_FLAGGED
    head, _, body = out.partition("Stage Production")
    assert "!! 3 flagged change(s):" in head
    assert "Uploads4F6EB0FD (AWS::S3::Bucket): removed: orphaned" in head
    assert "logical-ID change to UploadBucket" in head
    assert "gains actions s3:*; gains resources *; wildcard *, s3:*" in head
    assert "open to the world: ingress tcp port 22 from 0.0.0.0/0 on WorkstationSg4B6F53CE" in head
    assert "Production-PhotoService: 1 added, 1 removed, 1 modified" in body
    assert "~ WorkerTaskTaskRoleDefaultPolicy242C79D9 (AWS::IAM::Policy): PolicyDocument" in body
    assert "Research-Workbench: 1 modified" in body
    assert "\033[" not in out


def test_color_only_when_asked(scratch_branch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["--assembly", str(scratch_branch), "--baseline-assembly", str(ASSEMBLY), "--color", "always"])

    assert "\033[1;31m!! 3 flagged change(s):\033[0m" in capsys.readouterr().out


def test_identical_assemblies_exit_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--assembly", str(ASSEMBLY), "--baseline-assembly", str(ASSEMBLY)])

    assert code == EXIT_CLEAN
    assert "No flagged changes.\n\nNo template changes." in capsys.readouterr().out


def test_markdown_shape(scratch_branch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--assembly", str(scratch_branch), "--baseline-assembly", str(ASSEMBLY), "--markdown"])
    out = capsys.readouterr().out
    lines = out.splitlines()

    assert code == EXIT_FLAGGED
    assert lines[0] == f"## Infrastructure change review (against {ASSEMBLY})"
    assert "**3 change(s) need a reviewer's attention.**" in lines
    headings = [line for line in lines if line.startswith("### ")]
    assert [h[4:] for h in headings] == [
        ":warning: Stateful resource replaced or removed",
        ":warning: IAM permissions widened",
        ":warning: Security group rules widened",
        "Stage `Production`",
        "Stage `Research`",
    ]
    assert lines.count("| Stack | Resource | Type | Change |") == 3
    assert lines.count("|---|---|---|---|") == 3
    assert (
        "| Research-Workbench | `WorkstationSg4B6F53CE` | AWS::EC2::SecurityGroup | **open to the world**: "
        "ingress tcp port 22 from 0.0.0.0/0 on WorkstationSg4B6F53CE |" in lines
    )
    assert lines.count("<details>") == lines.count("</details>") == 2
    assert lines.count("```diff") == 2
    assert lines.count("```") == 2
    assert "<summary><b>Production-PhotoService</b>: 1 added, 1 removed, 1 modified</summary>" in lines
    assert "- Uploads4F6EB0FD (AWS::S3::Bucket)" in lines
    assert "+ UploadBucket (AWS::S3::Bucket)" in lines


def _write_snapshots(directory: Path, assembly: Path, skip: str = "") -> None:
    """Snapshot files as the infra snapshot test writes them: syrupy JSON, one normalized template per stack."""
    directory.mkdir(parents=True)
    for stack in load_assembly(assembly):
        if stack.name != skip:
            path = directory / f"test_template_snapshot[{stack.name}].json"
            path.write_text(json.dumps(stack.template, indent=2, sort_keys=True), encoding="utf-8")


def test_snapshots_match_fresh_synth_despite_asset_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_code = {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": f"{HASH}.zip"}}}
    current = tmp_path / "current"
    shutil.copytree(ASSEMBLY, current)
    _edit(current, PHOTO, lambda res: res.update(Handler=lambda_code))
    snapshots = tmp_path / "snapshots"
    _write_snapshots(snapshots, current)
    snapshot = snapshots / "test_template_snapshot[Production-PhotoService].json"
    assert '"S3Key": "ASSET-HASH.zip"' in snapshot.read_text(encoding="utf-8")
    # The fresh synth has a different hash (the code changed): still no difference after normalization.
    _edit(current, PHOTO, lambda res: res["Handler"]["Properties"]["Code"].update(S3Key=f"{HASH[::-1]}.zip"))

    code = run(["--assembly", str(current), "--snapshots", str(snapshots)])

    assert code == EXIT_CLEAN
    assert "against the committed snapshots" in capsys.readouterr().out


def test_stack_without_snapshot_is_reported_as_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshots = tmp_path / "snapshots"
    _write_snapshots(snapshots, ASSEMBLY, skip="Research-Workbench")
    (snapshots / "test_template_snapshot[Research-Gone].json").write_text('{"Resources": {}}', encoding="utf-8")

    code = run(["--assembly", str(ASSEMBLY), "--snapshots", str(snapshots), "--color", "never"])
    out = capsys.readouterr().out

    assert code == EXIT_FLAGGED  # a new stack's security group rules and IAM statements are all new
    assert "Research-Workbench (new stack): 2 added" in out
    assert "Research-Gone (stack removed): no resource changes" in out
    assert "open to the world" not in out


def test_missing_snapshots_exit_with_error(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    cmd = [sys.executable, "-m", "tools.review", "--assembly", str(ASSEMBLY), "--snapshots", str(empty)]

    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert proc.returncode == EXIT_ERROR
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"review: no snapshots in {empty}; pass --base REV")


_FAKE_APP = '''"""A stand-in CDK app: writes a one-stack cloud assembly whose queue name comes from queue.txt."""
import json, os, pathlib
out = pathlib.Path(os.environ["CDK_OUTDIR"])
out.mkdir(parents=True, exist_ok=True)
name = pathlib.Path(__file__).with_name("queue.txt").read_text().strip()
template = {"Resources": {"Queue4A7E3555": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}}}
(out / "Production-Photo.template.json").write_text(json.dumps(template))
stack = {"type": "aws:cloudformation:stack", "environment": "aws://111111111111/ap-northeast-1",
         "properties": {"templateFile": "Production-Photo.template.json", "stackName": "Production-Photo"}}
(out / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {"Production-Photo": stack}}))
'''


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A git repository with a stand-in app at two revisions: the second renames the queue (a replacement)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text(_FAKE_APP, encoding="utf-8")
    (repo / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py"}), encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    for name in ("photo-jobs", "photo-jobs-v2"):
        (repo / "queue.txt").write_text(name, encoding="utf-8")
        subprocess.run([*git, "add", "app.py", "cdk.json", "queue.txt"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", name], check=True)
    return repo


def test_base_revision_is_synthesized_in_a_temporary_worktree(
    fake_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--repo", str(fake_repo), "--base", "HEAD~1", "--color", "never"])
    out = capsys.readouterr().out
    worktrees = subprocess.run(["git", "-C", str(fake_repo), "worktree", "list"], capture_output=True, text=True)

    assert code == EXIT_FLAGGED
    assert "against revision HEAD~1" in out
    assert "Queue4A7E3555 (AWS::SQS::Queue): replaced (changed: QueueName)" in out
    assert len(worktrees.stdout.strip().splitlines()) == 1


def test_unknown_base_revision_is_an_error(fake_repo: Path) -> None:
    with pytest.raises(ReviewError, match="cannot check out 'no-such-rev'"):
        run(["--repo", str(fake_repo), "--base", "no-such-rev"])


def test_cdk_cli_diff_is_appended_on_request(scratch_branch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--assembly", str(scratch_branch), "--baseline-assembly", str(ASSEMBLY), "--cdk-diff"])
    out = capsys.readouterr().out

    assert code == EXIT_FLAGGED
    assert "--- cdk diff Production-PhotoService ---\nStack Production/PhotoService (Production-PhotoService)" in out
    assert "IAM Statement Changes" in out
    assert "Everyone (IPv4)" in out
    assert "[-] AWS::S3::Bucket Uploads4F6EB0FD orphan" in out


def test_intrinsic_values_in_encryption_settings_are_compared_not_hashed() -> None:
    key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    before = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"KmsMasterKeyId": key}}}}
    after = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"KmsMasterKeyId": {"Ref": "Other"}}}}}

    assert flag_stack(diff_templates("P", "P-S", before, after)) == []
    assert [f.message for f in flag_stack(diff_templates("P", "P-S", after, before))] == []


def test_cli_only_metadata_is_not_a_change() -> None:
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {}}
    policy = {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": "B"}}}
    snapshot = {"Resources": {"B": bucket, "P": policy}}
    cli = {
        "Resources": {
            "B": {**bucket, "Metadata": {"aws:cdk:path": "Production/Audit/B/Resource"}},
            "P": {**policy, "Metadata": {"aws:cdk:path": "Production/Audit/P/Resource"}},
            "M": {"Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v2:deflate64:abc"}},
        }
    }

    assert diff_templates("Production", "Production-Audit", snapshot, cli).empty


def test_security_gate_findings_come_first_and_flag_the_review(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A synth stopped only by the security gate is still reviewed, with the findings above everything else."""
    import shutil

    import tools.review.__main__ as review_main

    finding = "Research/Workbench/WorkstationSecurityGroup/Resource: AwsSolutions-EC23: open to the world"

    def gated_synth(tree: Path, outdir: Path) -> list[str]:
        shutil.copytree(ASSEMBLY, outdir)
        return [finding]

    monkeypatch.setattr(review_main, "synth", gated_synth)
    code = review_main.run(["--baseline-assembly", str(ASSEMBLY), "--color", "never"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("!! 1 unacknowledged security finding(s): `make synth` fails until each is fixed")
    assert f"  {finding}" in out.splitlines()[1]
    markdown = review_main.gate_section([finding], markdown=True)
    assert markdown.startswith("> [!CAUTION]\n> 1 unacknowledged security finding(s)")
    assert f"- `{finding}`" in markdown
    assert review_main.gate_section([], markdown=False) == ""


def test_cdk_diff_against_snapshots_shows_only_real_changes(
    scratch_branch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Snapshots lack the construct-path metadata a CLI synth carries: `cdk diff` must not list it on every resource."""
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    for stack in load_assembly(ASSEMBLY):
        resources = {}
        for logical_id, resource in stack.template["Resources"].items():
            if resource["Type"] == "AWS::CDK::Metadata":
                continue
            kept = {k: v for k, v in resource.get("Metadata", {}).items() if not k.startswith("aws:")}
            resources[logical_id] = {k: v for k, v in resource.items() if k != "Metadata"} | (
                {"Metadata": kept} if kept else {}
            )
        template = dict(stack.template, Resources=resources)
        path = snapshots / f"test_template_snapshot[{stack.name}].json"
        path.write_text(json.dumps(template), encoding="utf-8")

    code = run(["--assembly", str(scratch_branch), "--snapshots", str(snapshots), "--cdk-diff", "--color", "never"])
    out = capsys.readouterr().out
    cdk_part = out[out.index("--- cdk diff Production-PhotoService ---") :]

    assert code == EXIT_FLAGGED
    assert "[-] AWS::S3::Bucket Uploads4F6EB0FD orphan" in cdk_part
    assert "Metadata" not in cdk_part
    assert "--- cdk diff Production-Audit ---" not in out


def test_default_baseline_is_the_merge_base_with_the_upstream_branch(
    fake_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    git = ["git", "-C", str(fake_repo)]
    first = subprocess.run([*git, "rev-parse", "HEAD~1"], capture_output=True, text=True, check=True).stdout.strip()
    # main moved on after the branch was cut; the merge base is still the commit the branch started from.
    subprocess.run([*git, "update-ref", "refs/remotes/origin/main", first], check=True)
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)

    code = run(["--repo", str(fake_repo), "--color", "never"])
    out = capsys.readouterr().out

    assert code == EXIT_FLAGGED
    assert f"against the merge base with origin/main ({first[:12]})" in out
    assert "Queue4A7E3555 (AWS::SQS::Queue): replaced (changed: QueueName)" in out


def test_a_pull_request_job_takes_the_merge_base_with_its_target(
    fake_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    git = ["git", "-C", str(fake_repo)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    first = subprocess.run([*git, "rev-parse", "HEAD~1"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([*git, "update-ref", "refs/remotes/origin/main", head], check=True)
    subprocess.run([*git, "update-ref", "refs/remotes/origin/release", first], check=True)
    monkeypatch.setenv("GITHUB_BASE_REF", "release")

    code = run(["--repo", str(fake_repo), "--color", "never"])

    assert code == EXIT_FLAGGED
    assert f"against the merge base with origin/release ({first[:12]})" in capsys.readouterr().out


def test_without_an_upstream_branch_the_review_asks_for_a_baseline(
    fake_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)

    with pytest.raises(ReviewError, match=r"no upstream branch .*; pass --base REV or --snapshots"):
        run(["--repo", str(fake_repo)])
