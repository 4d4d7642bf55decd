"""The architecture diagram: graph built from a cloud assembly, its DOT source, rendering, the current synth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.diagram.__main__ import run
from tools.diagram.dot import dot_binary, render, to_dot
from tools.diagram.graph import Edge, Graph, build_graph
from tools.review.assembly import StackTemplate, load_assembly

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSEMBLY = Path(__file__).resolve().parent / "fixtures" / "assembly"
needs_dot = pytest.mark.skipif(dot_binary() is None, reason="graphviz `dot` is not installed")

PHOTO = "Production-PhotoService"
UPLOADS = f"{PHOTO}/Uploads4F6EB0FD"
QUEUE = f"{PHOTO}/Queue4A7E3555"
DLQ = f"{PHOTO}/DeadLetterQueue9F481546"
TABLE = f"{PHOTO}/Results25575328"
TOPIC = f"{PHOTO}/ResultsTopicCADB6F71"
UPLOAD_API = f"{PHOTO}/UploadApi4355B020"
RESULTS_API = f"{PHOTO}/ResultsApi4893B484"
WORKERS = f"{PHOTO}/WorkersService1746F57A"
FLEET = f"{PHOTO}/GpuFleetASG5A8F4845"
PROD_VPC = "Production-Network/Vpc8378EB38"
RESEARCH_VPC = "Research-Network/Vpc8378EB38"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(load_assembly(ASSEMBLY))


def test_nodes_are_the_main_resources_and_not_cdk_plumbing(graph: Graph) -> None:
    assert set(graph.nodes) == {
        "Production-Audit/LogArchive62E50B8E",
        UPLOADS,
        QUEUE,
        DLQ,
        TABLE,
        TOPIC,
        UPLOAD_API,
        RESULTS_API,
        WORKERS,
        FLEET,
        "Research-Access/ResearcherRoleEAE6D037",
        "Research-Workbench/Workstation",
        "account:Production",
    }
    assert graph.nodes[UPLOADS].label == "Uploads\nS3 bucket"
    assert graph.nodes[FLEET].label == "GpuFleetASG\nAuto Scaling group"


def test_accounts_and_vpcs_come_from_the_assembly(graph: Graph) -> None:
    assert graph.accounts == {"Production": "111111111111 ap-northeast-1", "Research": "222222222222 ap-northeast-1"}
    assert {v.id: v.label for v in graph.vpcs.values()} == {
        PROD_VPC: "Vpc\n10.10.0.0/16",
        RESEARCH_VPC: "Vpc\n10.20.0.0/16",
    }
    # Placed through cross-stack exports: fleet subnets, the service's capacity provider, the workstation's group.
    assert graph.nodes[FLEET].vpc == PROD_VPC
    assert graph.nodes[WORKERS].vpc == PROD_VPC
    assert graph.nodes["Research-Workbench/Workstation"].vpc == RESEARCH_VPC
    assert graph.nodes[UPLOADS].vpc is None


def test_photo_pipeline_from_upload_to_result(graph: Graph) -> None:
    assert {
        Edge(UPLOAD_API, UPLOADS, "put"),
        Edge(UPLOADS, QUEUE, "ObjectCreated"),
        Edge(QUEUE, DLQ, "redrive", "dashed"),
        Edge(QUEUE, WORKERS, "consume"),
        Edge(UPLOADS, WORKERS, "get"),
        Edge(FLEET, WORKERS, "capacity", "dotted"),
        Edge(WORKERS, TABLE, "write"),
        Edge(WORKERS, TOPIC, "publish"),
        Edge(TABLE, RESULTS_API, "read"),
    } <= graph.edges


def test_peering_and_cross_account_access(graph: Graph) -> None:
    assert Edge(PROD_VPC, RESEARCH_VPC, "VPC peering", "bold") in graph.edges
    assert Edge("account:Production", "Research-Access/ResearcherRoleEAE6D037", "assume role (MFA)", "dashed") in (
        graph.edges
    )


def test_peer_outside_the_assembly_gets_a_placeholder() -> None:
    template = {
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
            "Peering": {
                "Type": "AWS::EC2::VPCPeeringConnection",
                "Properties": {"VpcId": {"Ref": "Vpc"}, "PeerVpcId": "vpc-0abc", "PeerOwnerId": "999999999999"},
            },
        }
    }

    graph = build_graph([StackTemplate("Production", "Production-Network", template, "111111111111", "eu-west-1")])

    assert graph.vpcs["peer:vpc-0abc"].label == "peer VPC\nvpc-0abc"
    assert Edge("Production-Network/Vpc", "peer:vpc-0abc", "VPC peering", "bold") in graph.edges


def test_dot_source_has_clusters_nodes_and_edges(graph: Graph) -> None:
    source = to_dot(graph, title="t")

    assert source.startswith("digraph mlbase {\n")
    assert source.rstrip().endswith("}")
    assert "subgraph cluster_Production {" in source
    assert 'label="Production account 111111111111 ap-northeast-1"' in source
    assert "subgraph cluster_Production_Network_Vpc8378EB38 {" in source
    assert f'"{UPLOADS}" [label="Uploads\\nS3 bucket", shape=cylinder' in source
    assert f'"{QUEUE}" -> "{DLQ}" [label="redrive", style=dashed];' in source
    for node in graph.nodes:
        assert f'"{node}" [label=' in source
    assert source.count(" -> ") == len(graph.edges)


def test_cli_prints_dot_without_graphviz(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(ASSEMBLY), "--dot"]) == 0
    assert f'"{WORKERS}" -> "{TABLE}" [label="write"];' in capsys.readouterr().out


def test_cli_missing_assembly_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(tmp_path / "cdk.out"), str(tmp_path / "arch")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@needs_dot
def test_cli_renders_png_and_svg(tmp_path: Path) -> None:
    prefix = tmp_path / "docs" / "architecture"

    assert run([str(ASSEMBLY), str(prefix)]) == 0

    assert prefix.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = prefix.with_suffix(".svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    assert "Uploads" in svg
    assert "VPC peering" in svg


# --- the current synth of this repository -----------------------------------------------------------------------

MAIN_TYPES_TO_SHOW = {
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::DynamoDB::Table",
    "AWS::ECS::Service",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::EC2::Instance",
    "AWS::CloudTrail::Trail",
}


@pytest.fixture(scope="module")
def current_synth(cloud_assembly: Path) -> list[StackTemplate]:
    """The session's synth of the working tree (the same app `make synth` builds)."""
    return load_assembly(cloud_assembly)


@pytest.mark.slow
def test_graph_contains_the_main_resources_of_the_current_synth(current_synth: list[StackTemplate]) -> None:
    graph = build_graph(current_synth)
    source = to_dot(graph)

    expected = {
        f"{stack.name}/{logical_id}"
        for stack in current_synth
        for logical_id, res in stack.template.get("Resources", {}).items()
        if res["Type"] in MAIN_TYPES_TO_SHOW
    }
    vpcs = {
        f"{stack.name}/{logical_id}"
        for stack in current_synth
        for logical_id, res in stack.template.get("Resources", {}).items()
        if res["Type"] == "AWS::EC2::VPC"
    }
    assert expected, "the synth has none of the main resource types"
    assert expected <= set(graph.nodes)
    assert vpcs == set(graph.vpcs) - {v for v in graph.vpcs if v.startswith("peer:")}
    for rid in expected | vpcs:
        assert f'"{rid}" [label=' in source
    for stage in {stack.stage for stack in current_synth}:
        assert f"subgraph cluster_{stage} {{" in source
    notifications = [
        res
        for stack in current_synth
        for res in stack.template.get("Resources", {}).values()
        if res["Type"] == "Custom::S3BucketNotifications"
    ]
    if notifications:
        assert any(e.label.startswith("ObjectCreated") for e in graph.edges)


@needs_dot
@pytest.mark.slow
def test_current_synth_renders(current_synth: list[StackTemplate], tmp_path: Path) -> None:
    written = render(to_dot(build_graph(current_synth)), tmp_path / "architecture", formats=("svg",))

    assert written == [tmp_path / "architecture.svg"]
    assert "<svg" in written[0].read_text(encoding="utf-8")


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.diagram", str(ASSEMBLY), "--dot"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 0
    assert proc.stdout.count("subgraph cluster_") == 4
