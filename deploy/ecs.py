"""Deploy the compose services to AWS ECS (Fargate), idempotently.

One source: each ECS task definition is derived from its service in ``docker-compose.yml``
(command, healthcheck, stop grace period, environment names), plus a small deploy file that says
what differs on AWS (image, network, sizes, plain settings, secret references). Commands run
under ``sh -c``, so the compose file's ``${VAR:-default}`` forms are expanded by the shell in the
container from the task's environment. Secrets reach the task as references to SSM parameters
or Secrets Manager secrets (``valueFrom``); no secret value is read or written here.

Every API call is printed; ``--dry-run`` makes the reads, validates each write against the
botocore model and prints it without sending it. A second run with nothing changed sends no
write at all.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import botocore.validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEFAULT_CONFIG = ROOT / "deploy" / "ecs.yaml"
SERVICES = ("worker_fast", "worker_llm", "flower", "web")
"""The compose services that run on ECS; Redis is a managed service there (ElastiCache)."""
CONTAINER_PORTS = {"flower": "FLOWER_PORT", "web": "WEB_PORT"}
FARGATE_MAX_STOP_TIMEOUT = 120
"""Seconds; Fargate caps stopTimeout here (compose's worker_llm asks for 330)."""
EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ECS_TASKS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)?$")


class DeployError(Exception):
    """Raised when the deploy file or the compose file cannot describe a valid deployment."""


@dataclass
class Plan:
    """What one run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    printer: Callable[[str], None] = print
    writes: list[str] = field(default_factory=list)

    def call(self, client: Any, operation: str, *, write: bool, **params: Any) -> Any:
        """Print the call; send it unless it is a write in a dry run (then validate it)."""
        service = client.meta.service_model.service_name
        name = client.meta.method_to_api_mapping[operation]
        sent = not (write and self.dry_run)
        tag = "" if sent else "[dry-run] "
        self.printer(f"{tag}{service}.{name} {json.dumps(params, sort_keys=True, default=str)}")
        if write:
            self.writes.append(f"{service}.{name}")
        if sent:
            return getattr(client, operation)(**params)
        shape = client.meta.service_model.operation_model(name).input_shape
        botocore.validate.validate_parameters(params, shape)
        return None


@dataclass(frozen=True)
class DeployConfig:
    """The deploy file: what AWS needs beyond the compose file."""

    cluster: str
    image: str
    subnets: list[str]
    security_groups: list[str]
    execution_role: str = "tokenwindowTaskExecution"
    task_role_arn: str | None = None
    assign_public_ip: bool = False
    log_group: str = "/ecs/tokenwindow"
    region: str = "us-east-1"
    environment: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    services: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DeployConfig:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise DeployError(f"{path}: expected a mapping at the top level")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DeployError(f"{path}: unknown keys {sorted(unknown)}")
        missing = [k for k in ("cluster", "image", "subnets", "security_groups") if k not in data]
        if missing:
            raise DeployError(f"{path}: missing {missing}")
        for name, ref in (data.get("secrets") or {}).items():
            if not re.match(r"^arn:aws[a-z-]*:(ssm|secretsmanager):", str(ref)):
                raise DeployError(
                    f"{path}: secrets.{name} must be an SSM parameter or Secrets Manager ARN "
                    "(a reference, never the value)"
                )
        unknown_services = set(data.get("services") or {}) - set(SERVICES)
        if unknown_services:
            raise DeployError(f"{path}: services {sorted(unknown_services)} are not in {SERVICES}")
        return cls(**data)

    def size(self, service: str) -> dict[str, int]:
        defaults = {"count": 1, "cpu": 512, "memory": 1024}
        return {**defaults, **self.services.get(service, {})}


def _seconds(value: object, default: int) -> int:
    match = _DURATION.match(str(value)) if value is not None else None
    if match is None:
        return default
    number, unit = int(match.group(1)), match.group(2) or "s"
    return max(1, {"ms": number // 1000, "s": number, "m": number * 60, "h": number * 3600}[unit])


def _shell(text: str) -> str:
    """Compose escapes a literal ``$`` as ``$$``; the shell wants it single."""
    return text.replace("$$", "$")


def _default(value: str, config: DeployConfig) -> str | None:
    """A compose environment value for ECS: plain text, or None when it names a secret/unset."""
    names = _VARIABLE.findall(value)
    if any(name in config.secrets for name in names):
        return None

    def fill(match: re.Match[str]) -> str:
        name, whole = match.group(1), match.group(0)
        if name in config.environment:
            return config.environment[name]
        if ":-" in whole:
            return whole.split(":-", 1)[1][:-1]
        raise DeployError(f"compose needs {name}: set it under environment or secrets")

    return _VARIABLE.sub(fill, value)


def container_definition(
    name: str, service: Mapping[str, Any], config: DeployConfig
) -> dict[str, Any]:
    """One compose service as an ECS container definition."""
    environment: dict[str, str] = {}
    for key, value in (service.get("environment") or {}).items():
        if key in config.secrets:
            continue
        if key in config.environment:
            environment[key] = config.environment[key]
        elif value not in (None, ""):
            plain = _default(str(value), config)
            if plain is not None:
                environment[key] = plain
    for key, value in config.environment.items():
        environment.setdefault(key, value)
    definition: dict[str, Any] = {
        "name": name,
        "image": config.image,
        "essential": True,
        "command": ["sh", "-c", "exec " + _shell(str(service["command"]))],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(config.secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": config.log_group,
                "awslogs-region": config.region,
                "awslogs-stream-prefix": name,
            },
        },
        "stopTimeout": min(
            FARGATE_MAX_STOP_TIMEOUT, _seconds(service.get("stop_grace_period"), 30)
        ),
    }
    if name in CONTAINER_PORTS:
        port = int(environment[CONTAINER_PORTS[name]])
        definition["portMappings"] = [{"containerPort": port, "protocol": "tcp"}]
    check = service.get("healthcheck")
    if check:
        test = [_shell(part) for part in check["test"]]
        definition["healthCheck"] = {
            "command": test,
            "interval": min(300, max(5, _seconds(check.get("interval"), 30))),
            "timeout": min(60, max(2, _seconds(check.get("timeout"), 5))),
            "retries": min(10, max(1, int(check.get("retries", 3)))),
            "startPeriod": min(300, _seconds(check.get("start_period"), 0)),
        }
    return definition


def task_definitions(
    config: DeployConfig, compose_file: Path = COMPOSE_FILE
) -> dict[str, dict[str, Any]]:
    """Family name -> the register_task_definition request, for every service on ECS."""
    compose = yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]
    requests = {}
    for service in SERVICES:
        name = service.replace("_", "-")
        size = config.size(service)
        request: dict[str, Any] = {
            "family": f"{config.cluster}-{name}",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": str(size["cpu"]),
            "memory": str(size["memory"]),
            "executionRoleArn": "",  # filled in once the role's ARN is known
            "containerDefinitions": [container_definition(name, compose[service], config)],
        }
        if config.task_role_arn:
            request["taskRoleArn"] = config.task_role_arn
        requests[request["family"]] = request
    return requests


def _covers(current: Any, desired: Any) -> bool:
    """True when ``current`` (as AWS describes it) holds everything ``desired`` asks for."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            _covers(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_covers(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)


def _execution_policy(config: DeployConfig) -> dict[str, Any]:
    """Read access to exactly the referenced secrets, and nothing else."""
    ssm = sorted(v for v in config.secrets.values() if ":ssm:" in v)
    managers = sorted(v for v in config.secrets.values() if ":secretsmanager:" in v)
    statements = []
    if ssm:
        statements.append({"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": ssm})
    if managers:
        statements.append(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": managers}
        )
    return {"Version": "2012-10-17", "Statement": statements}


class Deployer:
    """Brings the cluster, the execution role, the task definitions and services up to date."""

    def __init__(self, config: DeployConfig, plan: Plan, session: boto3.Session) -> None:
        self.config = config
        self.plan = plan
        self.ecs = session.client("ecs")
        self.iam = session.client("iam")
        self.logs = session.client("logs")
        self.cluster_exists = False

    def run(self, compose_file: Path = COMPOSE_FILE) -> None:
        self.cluster()
        self.log_group()
        role = self.execution_role()
        for family, request in task_definitions(self.config, compose_file).items():
            request["executionRoleArn"] = role
            arn = self.task_definition(family, request)
            self.service(family, request, arn)

    def cluster(self) -> None:
        found = self.plan.call(
            self.ecs, "describe_clusters", write=False, clusters=[self.config.cluster]
        )["clusters"]
        self.cluster_exists = any(c["status"] == "ACTIVE" for c in found)
        if not self.cluster_exists:
            self.plan.call(self.ecs, "create_cluster", write=True, clusterName=self.config.cluster)

    def log_group(self) -> None:
        groups = self.plan.call(
            self.logs, "describe_log_groups", write=False, logGroupNamePrefix=self.config.log_group
        )["logGroups"]
        if not any(g["logGroupName"] == self.config.log_group for g in groups):
            self.plan.call(
                self.logs, "create_log_group", write=True, logGroupName=self.config.log_group
            )

    def execution_role(self) -> str:
        name = self.config.execution_role
        policy = _execution_policy(self.config)
        try:
            role = self.plan.call(self.iam, "get_role", write=False, RoleName=name)["Role"]
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            created = self.plan.call(
                self.iam,
                "create_role",
                write=True,
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(ECS_TASKS_TRUST),
                Description="Pulls the tokenwindow image, writes its logs, reads its secrets",
            )
            self.plan.call(
                self.iam, "attach_role_policy", write=True, RoleName=name,
                PolicyArn=EXECUTION_POLICY_ARN,
            )  # fmt: skip
            if policy["Statement"]:
                self._put_policy(name, policy)
            arn = created["Role"]["Arn"] if created else f"arn:aws:iam::000000000000:role/{name}"
            return str(arn)
        attached = self.plan.call(
            self.iam, "list_attached_role_policies", write=False, RoleName=name
        )["AttachedPolicies"]
        if not any(p["PolicyArn"] == EXECUTION_POLICY_ARN for p in attached):
            self.plan.call(
                self.iam, "attach_role_policy", write=True, RoleName=name,
                PolicyArn=EXECUTION_POLICY_ARN,
            )  # fmt: skip
        inline = self.plan.call(self.iam, "list_role_policies", write=False, RoleName=name)
        current = None
        if "secrets" in inline["PolicyNames"]:
            current = self.plan.call(
                self.iam, "get_role_policy", write=False, RoleName=name, PolicyName="secrets"
            )["PolicyDocument"]
            if isinstance(current, str):
                current = json.loads(current)
        if policy["Statement"] and current != policy:
            self._put_policy(name, policy)
        return str(role["Arn"])

    def _put_policy(self, role: str, policy: dict[str, Any]) -> None:
        self.plan.call(
            self.iam, "put_role_policy", write=True, RoleName=role, PolicyName="secrets",
            PolicyDocument=json.dumps(policy),
        )  # fmt: skip

    def task_definition(self, family: str, request: dict[str, Any]) -> str:
        """The ARN of a revision equal to ``request``: the latest one, or a new one."""
        try:
            current = self.plan.call(
                self.ecs, "describe_task_definition", write=False, taskDefinition=family
            )["taskDefinition"]
        except botocore.exceptions.ClientError:
            current = None
        if current is not None and current.get("status") == "ACTIVE" and _covers(current, request):
            return str(current["taskDefinitionArn"])
        registered = self.plan.call(self.ecs, "register_task_definition", write=True, **request)
        if registered is None:  # dry run
            return f"{family}:next"
        return str(registered["taskDefinition"]["taskDefinitionArn"])

    def service(self, name: str, request: dict[str, Any], task_definition: str) -> None:
        size = self.config.size(name.removeprefix(f"{self.config.cluster}-").replace("-", "_"))
        found = []
        if self.cluster_exists:  # a cluster still to be created has no services to describe
            found = self.plan.call(
                self.ecs, "describe_services", write=False, cluster=self.config.cluster,
                services=[name],
            )["services"]  # fmt: skip
        active = [s for s in found if s["status"] == "ACTIVE"]
        if not active:
            self.plan.call(
                self.ecs,
                "create_service",
                write=True,
                cluster=self.config.cluster,
                serviceName=name,
                taskDefinition=task_definition,
                desiredCount=size["count"],
                launchType="FARGATE",
                networkConfiguration=self._network(),
                enableExecuteCommand=False,
            )
            return
        current = active[0]
        if current["taskDefinition"] != task_definition or current["desiredCount"] != size["count"]:
            self.plan.call(
                self.ecs, "update_service", write=True, cluster=self.config.cluster,
                service=name, taskDefinition=task_definition, desiredCount=size["count"],
            )  # fmt: skip

    def _network(self) -> dict[str, Any]:
        return {
            "awsvpcConfiguration": {
                "subnets": self.config.subnets,
                "securityGroups": self.config.security_groups,
                "assignPublicIp": "ENABLED" if self.config.assign_public_ip else "DISABLED",
            }
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.sh", description=__doc__.splitlines()[0])
    parser.add_argument(
        "config", type=Path, nargs="?", default=DEFAULT_CONFIG, help="deploy file (YAML)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the calls, change nothing")
    parser.add_argument("--compose-file", type=Path, default=COMPOSE_FILE)
    args = parser.parse_args(argv)
    try:
        config = DeployConfig.load(args.config)
    except (OSError, DeployError, TypeError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    session = boto3.Session(region_name=config.region)
    plan = Plan(dry_run=args.dry_run)
    try:
        Deployer(config, plan, session).run(args.compose_file)
    except (DeployError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb}: {len(plan.writes)} write call(s)" if plan.writes else "up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
