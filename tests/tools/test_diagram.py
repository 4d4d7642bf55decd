"""The architecture diagram: graph built from a cloud assembly, its DOT source, rendering, the current synth."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

import tools.diagram.__main__ as diagram_main
from tests.conftest import require_tool
from tools.diagram.__main__ import run, stale_source
from tools.diagram.dot import EDGE_STYLES, PNG_DPI, render, short_name, stack_order, to_dot, wrap_name
from tools.diagram.graph import Edge, Graph, build_graph
from tools.diagram.simplify import Picture, simplify
from tools.review.assembly import StackTemplate, load_assembly

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSEMBLY = Path(__file__).resolve().parent / "fixtures" / "assembly"
needs_dot = pytest.mark.usefixtures("dot_installed")

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


@pytest.fixture
def dot_installed() -> None:
    require_tool("dot", "apt-get install graphviz")


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
    assert f'"{QUEUE}" -> "{DLQ}" [xlabel="redrive", style=dashed];' in source
    for node in graph.nodes:
        assert f'"{node}" [label=' in source
    drawn = [line for line in source.splitlines() if " -> " in line and "style=invis" not in line]
    assert len(drawn) == len(graph.edges)


def test_cli_prints_dot_without_graphviz(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(ASSEMBLY), "--dot"]) == 0
    assert f'"{WORKERS}" -> "{TABLE}" [xlabel="write"];' in capsys.readouterr().out


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
    # Two accounts, two VPCs, the legend.
    assert proc.stdout.count("subgraph cluster_") == 5


# --- the picture a reviewer reads ---------------------------------------------------------------------------------

ARCHITECTURE_SVG = REPO_ROOT / "docs" / "architecture.svg"


@pytest.fixture(scope="module")
def picture(current_synth: list[StackTemplate]) -> Picture:
    return simplify(build_graph(current_synth))


def _by_name(graph: Graph, stack: str, construct: str) -> str:
    """The node of `stack` whose logical ID is `construct` plus the CDK's 8-digit hash."""
    (found,) = [n for n in graph.nodes if re.fullmatch(rf"{stack}/{construct}[0-9A-F]{{8}}", n)]
    return found


def test_no_node_without_an_edge(picture: Picture) -> None:
    ends = {e.src for e in picture.graph.edges} | {e.dst for e in picture.graph.edges}

    assert set(picture.graph.nodes) <= ends
    assert picture.parked, "nothing parked: the legend's list is untested"


def test_each_accounts_baseline_is_one_group(picture: Picture) -> None:
    nodes = picture.graph.nodes

    assert {"baseline:Production", "baseline:Research", "access:Research", "people:Production"} <= set(nodes)
    assert not [n for n in nodes.values() if n.type == "AWS::IAM::Group"]
    for stage in ("Production", "Research"):
        members = " ".join(picture.groups[f"baseline:{stage}"])
        for part in ("Trail", "Recorder", "Budget", "SecurityGroupRules"):
            assert part in members, (stage, part, members)
    left = [n for n in nodes.values() if n.stack.endswith(("-Audit", "-Guardrails"))]
    assert all(n.type == "AWS::S3::Bucket" or n.logical_id.startswith("Notifications") for n in left), left
    # Each account drawn once: its trail delivers to the archive from the group, not from a second trail node.
    assert not [n for n in nodes.values() if n.type == "AWS::CloudTrail::Trail"]


def test_the_missing_edges_are_drawn(current_synth: list[StackTemplate]) -> None:
    graph = build_graph(current_synth)
    labels = {(e.src, e.dst): (e.label, e.style) for e in graph.edges}
    uploads = _by_name(graph, "Production-PhotoService", "UploadsBucket")
    access_logs = _by_name(graph, "Production-PhotoService", "AccessLogBucket")
    topic = _by_name(graph, "Production-Guardrails", "NotificationsTopic")
    queue = _by_name(graph, "Production-PhotoService", "FoodPhotoQueue")
    monitor = _by_name(graph, "Research-Workbench", "IdleMonitorFunction")
    jobs = _by_name(graph, "Research-Workbench", "GpuJobsFunction")
    schedule = _by_name(graph, "Research-Workbench", "IdleSchedule")
    failures = _by_name(graph, "Research-Workbench", "IdleMonitorFailures")
    instances = [n for n, node in graph.nodes.items() if node.type == "AWS::EC2::Instance" and "Workbench" in n]

    assert labels[(uploads, access_logs)] == ("access logs", "dotted")
    assert labels[(queue, topic)] == ("alarm", "dotted")
    assert instances
    for instance in instances:
        assert labels[(monitor, instance)] == ("start/stop", "solid")
        assert labels[(jobs, instance)] == ("start/stop", "solid")
    assert labels[(schedule, failures)] == ("undelivered events", "dashed")
    for stage in ("Production", "Research"):
        recorder = _by_name(graph, f"{stage}-Audit", "AccountAuditRecorder")
        evaluator = _by_name(graph, f"{stage}-Guardrails", "SecurityGroupRulesOpenWorldEvaluatorFunction")
        assert labels[(recorder, evaluator)] == ("config rule", "solid")


def test_research_is_drawn_above_production_and_the_line_up_does_not_rank(picture: Picture) -> None:
    source = to_dot(picture.graph, parked=picture.parked)

    # Research's trail and recorder deliver to the production archive: research on top, those lines point down.
    stage_of = {n.id: n.stage for n in picture.graph.nodes.values()}
    assert stack_order(picture.graph.edges, stage_of, ["Production", "Research"]) == ["Research", "Production"]
    assert re.search(
        r'"baseline:Research" -> "Production-Audit/LogArchiveBucket[0-9A-F]{8}" \[xlabel="logs", '
        r"weight=0\];",
        source,
    )
    assert (
        '"people:Production" -> "access:Research" [xlabel="assume role (MFA)", style=dashed, weight=0,'
        " constraint=false];" in source
    )


def test_no_account_node_sits_in_its_own_account(picture: Picture) -> None:
    for node in picture.graph.nodes.values():
        if node.type == "account":
            assert node.stage == ""


def test_legend_explains_edge_styles_and_lists_parked_resources(picture: Picture) -> None:
    source = to_dot(picture.graph, parked=picture.parked)

    assert "subgraph cluster_legend {" in source
    for style, meaning in EDGE_STYLES:
        assert f'[label="{meaning}", style={style}];' in source
    for items in picture.parked.values():
        for item in items:
            assert item in source


def test_long_names_are_wrapped_at_word_and_path_boundaries() -> None:
    assert wrap_name("NotificationsSlackNotifierFunction") == "Notifications\nSlackNotifier\nFunction"
    assert wrap_name("FoodPhotoHostsASG") == "FoodPhotoHosts\nASG"
    assert wrap_name("Api/Presign") == "Api/Presign"
    assert wrap_name("Api/Presign/Function") == "Api\nPresign\nFunction"
    assert wrap_name("Notifications/SlackNotifier/Function") == "Notifications\nSlackNotifier\nFunction"
    assert wrap_name("Uploads") == "Uploads"


def test_a_last_level_that_repeats_the_kind_is_dropped() -> None:
    assert short_name("Uploads/Bucket") == "Uploads"
    assert short_name("Notifications/SlackNotifier/Function") == "Notifications/SlackNotifier"
    assert short_name("LogArchive/ConfigBucket") == "LogArchive/ConfigBucket"
    assert short_name("Bucket") == "Bucket"


def test_the_account_most_cross_account_lines_leave_is_drawn_on_top() -> None:
    stage_of = {"p/archive": "Production", "p/groups": "Production", "r/trail": "Research", "r/roles": "Research"}
    edges = [
        Edge("r/trail", "p/archive", "logs"),
        Edge("r/trail", "p/archive", "config history"),
        Edge("p/groups", "r/roles", "assume role", "dashed"),
    ]

    assert stack_order(edges, stage_of, ["Production", "Research"]) == ["Research", "Production"]
    assert stack_order(edges[2:], stage_of, ["Production", "Research"]) == ["Production", "Research"]


def test_cross_account_lines_bend_and_invisible_edges_stack_the_boxes(graph: Graph) -> None:
    source = to_dot(graph)

    # The production account assumes a research role: its node is above the research box, the line points down.
    assert (
        '"account:Production" -> "Research-Access/ResearcherRoleEAE6D037" [xlabel="assume role (MFA)", style='
        "dashed, weight=0];" in source
    )
    # The boxes are stacked by invisible edges, none of them between two drawn resources of one account.
    invisible = [line for line in source.splitlines() if "style=invis" in line and " -> " in line]
    assert invisible
    assert all("layout_" in line or "account:" in line for line in invisible), invisible


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x", encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_a_cdk_out_older_than_the_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(ASSEMBLY, root / "cdk.out")
    now = time.time()
    os.utime(root / "cdk.out" / "manifest.json", (now - 100, now - 100))
    _touch(root / "app.py", now - 200)
    assert stale_source(root / "cdk.out", root) is None
    _touch(root / "stacks" / "network.py", now)

    assert stale_source(root / "cdk.out", root) == root / "stacks" / "network.py"
    monkeypatch.setattr(diagram_main, "REPO_ROOT", root)
    assert run([str(root / "cdk.out"), str(tmp_path / "arch")]) == 2
    assert capsys.readouterr().err == (
        f"diagram: {root / 'cdk.out'} is older than stacks/network.py: run `make synth` first\n"
    )
    assert not (tmp_path / "arch.svg").exists()


def _svg_titles(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """Node IDs and (source, target) edges of a graphviz SVG, from the <title> graphviz gives each element."""
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ElementTree.parse(path).getroot()  # noqa: S314 (this repository's own picture, not untrusted input)
    nodes, edges = set(), set()
    for group in root.iterfind(".//svg:g", ns):
        title = group.find("svg:title", ns)
        if title is None or title.text is None or title.text.startswith("legend_"):
            continue
        if group.get("class") == "node":
            nodes.add(title.text)
        elif group.get("class") == "edge":
            src, _, dst = title.text.partition("->")
            edges.add((src, dst))
    return nodes, edges


@pytest.mark.slow
def test_the_committed_picture_matches_the_current_synth(picture: Picture) -> None:
    """docs/architecture.svg shows what the code synthesizes: redraw it with `make synth && make diagram`."""
    nodes, edges = _svg_titles(ARCHITECTURE_SVG)

    assert nodes == set(picture.graph.nodes) | set(picture.graph.vpcs), "run `make synth && make diagram`"
    assert edges == {(e.src, e.dst) for e in picture.graph.edges}, "run `make synth && make diagram`"


# The content column of a pull-request page and of a README on GitHub: a wider picture is scaled down, text with it.
PAGE_WIDTH_PX = 1000
ARCHITECTURE_PNG = REPO_ROOT / "docs" / "architecture.png"


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    assert header[12:16] == b"IHDR", path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_the_committed_picture_fits_a_pull_request_page() -> None:
    """Shown at full size, so the 9-point node text stays 12 pixels high: no wider than the page's column."""
    width, height = _png_size(ARCHITECTURE_PNG)
    svg = ElementTree.parse(ARCHITECTURE_SVG).getroot()  # noqa: S314 (this repository's own picture)
    svg_points = float(svg.get("width", "0").removesuffix("pt"))

    assert width <= PAGE_WIDTH_PX, f"docs/architecture.png is {width} px wide"
    assert height > width, "expected the accounts stacked top to bottom"
    # Browsers show an SVG point as 96/72 pixels: the SVG must fit the column as well, at the PNG's size.
    assert round(svg_points * PNG_DPI / 72) == width
    assert svg_points * 96 / 72 <= PAGE_WIDTH_PX


def _boxes(path: Path) -> dict[str, tuple[float, float, float, float]]:
    """(left, top, right, bottom) of each node and cluster outline of a graphviz SVG, by title."""
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ElementTree.parse(path).getroot()  # noqa: S314 (this repository's own picture, not untrusted input)
    boxes = {}
    for group in root.iterfind(".//svg:g", ns):
        title = group.find("svg:title", ns)
        if title is None or title.text is None or group.get("class") not in ("node", "cluster"):
            continue
        points = [
            tuple(float(v) for v in pair.split(","))
            for shape in group.iterfind("svg:polygon", ns)
            for pair in (shape.get("points") or "").split()
        ]
        points += [
            (float(x), float(y))
            for shape in group.iterfind("svg:path", ns)
            for x, y in re.findall(r"(-?[0-9.]+),(-?[0-9.]+)", shape.get("d") or "")
        ]
        for shape in group.iterfind("svg:ellipse", ns):
            cx, cy, rx, ry = (float(shape.get(k) or 0) for k in ("cx", "cy", "rx", "ry"))
            points += [(cx - rx, cy - ry), (cx + rx, cy + ry)]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            boxes[title.text] = (min(xs), min(ys), max(xs), max(ys))
    return boxes


def test_the_committed_picture_stacks_the_accounts_and_no_node_covers_another() -> None:
    boxes = _boxes(ARCHITECTURE_SVG)
    research, production = boxes["cluster_Research"], boxes["cluster_Production"]

    assert research[3] < production[1], "the research box should stand above the production box"
    nodes = sorted((box, name) for name, box in boxes.items() if not name.startswith("cluster_"))
    assert len(nodes) > 30
    for index, (a, name_a) in enumerate(nodes):
        for b, name_b in nodes[index + 1 :]:
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"{name_a} and {name_b} overlap"
