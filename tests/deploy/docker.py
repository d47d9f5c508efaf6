"""The Docker engine as tests use it: is one answering, and the image built from a local base.

The engine must run without a bridge (``dockerd --bridge=none --iptables=false``), so every
container here uses the host's network. Nothing is pulled: the image is built from a base made
from Debian's packages (``make base-image``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_IMAGE = os.environ.get("TOKENWINDOW_BASE_IMAGE", "tokenwindow-base:bookworm")
IMAGE = os.environ.get("TOKENWINDOW_TEST_IMAGE", "tokenwindow:test")


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def unavailable() -> str | None:
    """Why the Docker tests cannot run here, or None when they can."""
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install docker.io docker-compose)"
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=10)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine answers ({exc}); start: dockerd --bridge=none --iptables=false"
    if not docker("image", "ls", "-q", BASE_IMAGE, timeout=10).strip():
        return f"base image {BASE_IMAGE} is missing: make base-image"
    return None


def build_image() -> str:
    """``make image``: cached layers make a rebuild cheap when only tests changed."""
    subprocess.run(
        ["make", "image", f"BASE_IMAGE={BASE_IMAGE}", f"IMAGE={IMAGE}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return IMAGE


def bridges() -> list[str]:
    """Network interfaces a bridged engine would create (there must be none)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    names = [line.split(":")[1].strip() for line in links.stdout.splitlines() if ":" in line]
    return [n for n in names if n == "docker0" or n.startswith(("br-", "veth"))]
