"""./deploy.sh against moto's AWS API emulator in server mode on a free loopback port.

The calls are real botocore calls over HTTP, validated against the ECS, IAM and CloudWatch Logs
models: a dry run changes nothing, a real run creates everything, a second run sends no write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from moto.server import ThreadedMotoServer

from deploy.ecs import DEFAULT_CONFIG, SERVICES, DeployConfig, DeployError, main, task_definitions
from workers.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
CLUSTER = "tokenwindow"
FAMILIES = [f"{CLUSTER}-{s.replace('_', '-')}" for s in SERVICES]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An emptied emulator per test; every boto3 client here and in deploy.sh talks to it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()  # state is per process
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The execution role attaches AWS's managed policy; the emulator knows it only then.
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def deploy_file(aws: str, tmp_path: Path) -> Path:
    """The shipped deploy file with a subnet and security group that exist in the emulator."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tw", Description="tw", VpcId=vpc)["GroupId"]
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data.update(subnets=[subnet], security_groups=[group])
    path = tmp_path / "ecs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> list[str]:
    """``./deploy.sh`` in-process; returns the lines it printed (it must succeed)."""
    code = main([str(path), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.splitlines()


def writes(lines: list[str]) -> list[str]:
    """The write calls a run printed (``service.Operation``), dry-run mark removed."""
    calls = [line.removeprefix("[dry-run] ").split()[0] for line in lines if " {" in line]
    return [c for c in calls if not c.split(".")[1].startswith(("Describe", "Get", "List"))]


def test_dry_run_prints_every_call_and_changes_nothing(
    deploy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = run(capsys, deploy_file, "--dry-run")
    names = writes(lines)
    marked = [line for line in lines if line.startswith("[dry-run] ")]
    assert len(marked) == len(names)
    assert "ecs.CreateCluster" in names and "iam.CreateRole" in names
    assert names.count("ecs.RegisterTaskDefinition") == names.count("ecs.CreateService") == 4
    ecs = boto3.client("ecs")
    assert ecs.list_clusters()["clusterArns"] == []
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []


def test_a_real_run_creates_everything_and_a_second_changes_nothing(
    deploy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(capsys, deploy_file)
    assert writes(first)
    ecs = boto3.client("ecs")
    services = ecs.describe_services(cluster=CLUSTER, services=FAMILIES)["services"]
    assert sorted(s["serviceName"] for s in services if s["status"] == "ACTIVE") == sorted(FAMILIES)
    second = run(capsys, deploy_file)
    assert writes(second) == [], second
    assert second[-1] == "up to date"
    assert len(ecs.list_task_definitions()["taskDefinitionArns"]) == 4


def test_a_changed_size_updates_only_that_service(
    deploy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, deploy_file)
    data = yaml.safe_load(deploy_file.read_text())
    data["services"]["worker_llm"]["count"] = 5
    deploy_file.write_text(yaml.safe_dump(data))
    assert writes(run(capsys, deploy_file)) == ["ecs.UpdateService"]


def test_secrets_are_references_never_values(
    deploy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, deploy_file)
    ecs = boto3.client("ecs")
    config = DeployConfig.load(DEFAULT_CONFIG)
    for family in FAMILIES:
        task = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        container = task["containerDefinitions"][0]
        assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == config.secrets
        plain = {e["name"] for e in container["environment"]}
        assert not plain & set(config.secrets)
    policy = boto3.client("iam").get_role_policy(
        RoleName=config.execution_role, PolicyName="secrets"
    )["PolicyDocument"]
    document: dict[str, Any] = json.loads(policy) if isinstance(policy, str) else policy
    resources = {r for s in document["Statement"] for r in s["Resource"]}
    assert resources == set(config.secrets.values())


def test_task_definitions_follow_the_compose_services() -> None:
    requests = task_definitions(DeployConfig.load(DEFAULT_CONFIG))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    llm = requests[f"{CLUSTER}-worker-llm"]["containerDefinitions"][0]
    assert llm["command"][:2] == ["sh", "-c"]
    assert compose["worker_llm"]["command"] in llm["command"][2]
    assert llm["healthCheck"]["command"][1].startswith("celery -A workers.app inspect ping")
    assert "$(hostname)" in llm["healthCheck"]["command"][1]  # compose's $$ unescaped
    assert llm["stopTimeout"] == 120  # compose asks 330 s; Fargate allows 120
    web = requests[f"{CLUSTER}-web"]["containerDefinitions"][0]
    assert web["portMappings"] == [{"containerPort": 8080, "protocol": "tcp"}]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secrets": {"OPENAI_API_KEY": "sk-live-123"}}, "a reference, never the value"),
        ({"services": {"redis": {"count": 1}}}, "not in"),
        ({"colour": "blue"}, "unknown keys"),
    ],
)
def test_a_bad_deploy_file_is_refused_naming_the_key(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    data = {**yaml.safe_load(DEFAULT_CONFIG.read_text()), **change}
    path = tmp_path / "ecs.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DeployError, match=expected):
        DeployConfig.load(path)


def test_deploy_sh_runs_the_dry_run(deploy_file: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "deploy.sh"), str(deploy_file), "--dry-run"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("would change:")
