"""The `openremix` command as a user types it: keys, and remix against a running server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from tests.support.images import photo
from tests.support.servers import TEST_KEY


def openremix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openremix.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_keys_create_list_revoke(tmp_path: Path, start_process):
    data_dir = tmp_path / "keys"
    created = openremix("keys", "create", "--name", "team-a", "--credits", "5",
                        "--data-dir", str(data_dir))
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("or_")
    listed = openremix("keys", "list", "--data-dir", str(data_dir))
    assert "team-a" in listed.stdout
    assert secret not in listed.stdout  # secrets are never listed
    key_id = created.stderr.split()[1]
    server = start_process("api", data_dir=data_dir)
    credits = httpx.get(f"{server.base_url}/v1/get-user-credits", headers={"x-api-key": secret})
    assert credits.json() == {"credits": 5.0, "free-credits": 0.0}
    revoked = openremix("keys", "revoke", key_id, "--data-dir", str(data_dir))
    assert revoked.returncode == 0, revoked.stderr
    answer = httpx.get(f"{server.base_url}/v1/get-user-credits", headers={"x-api-key": secret})
    assert answer.status_code == 401
    assert openremix("keys", "revoke", "key_nope", "--data-dir", str(data_dir)).returncode == 2


def test_a_scoped_key_is_refused_other_models_with_403_and_nothing_charged(
    tmp_path: Path, start_process, astronaut_uri
):
    data_dir = tmp_path / "keys"
    bad = openremix("keys", "create", "--scope", "wire:telnet", "--data-dir", str(data_dir))
    assert bad.returncode == 2 and "the wire must be one of segmind" in bad.stderr
    created = openremix("keys", "create", "--credits", "5", "--scope", "model:ideogram-4-remix",
                        "--data-dir", str(data_dir))
    assert created.returncode == 0, created.stderr
    assert "scopes: model:ideogram-4-remix" in created.stderr
    secret, key_id = created.stdout.strip(), created.stderr.split()[1]
    listed = openremix("keys", "list", "--data-dir", str(data_dir)).stdout
    assert "model:ideogram-4-remix" in "".join(listed.replace("│", "\n").split())
    server = start_process("api", data_dir=data_dir)
    headers = {"x-api-key": secret}
    submit = {"image": astronaut_uri, "prompt": "a cat"}
    refused = httpx.post(f"{server.base_url}/v2/ideogram-3-remix", json=submit, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == ("This API key may not use model 'ideogram-3-remix': its "
                                       "scopes allow ideogram-4-remix")
    assert refused.json()["request_id"]
    credits = httpx.get(f"{server.base_url}/v1/get-user-credits", headers=headers).json()
    assert credits["credits"] == 5.0  # nothing charged, nothing queued
    widened = openremix("keys", "scope", key_id, "--scope", "wire:segmind",
                        "--data-dir", str(data_dir))
    assert widened.returncode == 0 and "scopes: wire:segmind" in widened.stderr
    allowed = httpx.post(f"{server.base_url}/v2/ideogram-3-remix", json=submit, headers=headers)
    assert allowed.status_code == 200, allowed.text
    assert openremix("keys", "scope", "key_nope", "--data-dir", str(data_dir)).returncode == 2


def test_remix_command_saves_the_image(server, tmp_path: Path):
    source = tmp_path / "cat.png"
    photo("chelsea").save(source)
    out = tmp_path / "out.jpg"
    done = openremix("remix", str(source), "stained glass window", "-o", str(out),
                     "--url", server.base_url, "--api-key", TEST_KEY, "--seed", "4",
                     "--aspect-ratio", "3x2", "--speed", "TURBO", "--palette", "JUNGLE")
    assert done.returncode == 0, done.stderr
    assert "seed 4" in done.stderr
    assert Image.open(out).size == (1248, 832)


def test_remix_command_reports_errors_in_one_line_with_exit_codes(server, tmp_path: Path):
    source = tmp_path / "cat.png"
    photo("chelsea", size=64).save(source)
    bad = openremix("remix", str(source), "x", "--url", server.base_url, "--api-key", TEST_KEY,
                    "--resolution", "10x10", "-o", str(tmp_path / "o.jpg"))
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: resolution: must be one of")
    assert "Traceback" not in bad.stderr
    unauthorized = openremix("remix", str(source), "x", "--url", server.base_url,
                             "--api-key", "nope", "-o", str(tmp_path / "o.jpg"))
    assert unauthorized.returncode == 3
    unreachable = openremix("remix", str(source), "x", "--url", "http://127.0.0.1:9",
                            "--api-key", TEST_KEY, "-o", str(tmp_path / "o.jpg"))
    assert unreachable.returncode == 4
    assert "cannot reach" in unreachable.stderr


def test_models_pull_without_a_hub_fails_in_one_line(tmp_path: Path):
    import os

    import pytest

    pytest.importorskip("huggingface_hub")
    # HF_HUB_OFFLINE makes the hub client answer at once, with no network traffic at all.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    pulled = openremix("models", "pull", "stabilityai/sdxl-turbo", "--data-dir",
                       str(tmp_path), env=env)
    assert pulled.returncode == 4
    last = pulled.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot download stabilityai/sdxl-turbo:")
    assert "Traceback" not in pulled.stderr


def test_status_and_cancel_commands_with_json(start_process, tmp_path: Path, astronaut_uri):
    import json

    server = start_process(env={"OPENREMIX_WORKERS": "0"}, data_dir=tmp_path / "q")
    submitted = httpx.post(f"{server.base_url}/v2/ideogram-3-remix",
                           json={"image": astronaut_uri, "prompt": "x"},
                           headers={"x-api-key": TEST_KEY}).json()
    request_id = submitted["request_id"]
    common = ["--url", server.base_url, "--api-key", TEST_KEY]
    queued = openremix("status", request_id, *common)
    assert queued.returncode == 0
    assert queued.stdout.strip() == f"{request_id}: queued (0 ahead)"
    as_json = openremix("status", request_id, *common, "--json")
    assert json.loads(as_json.stdout)["status"] == "QUEUED"
    cancelled = openremix("cancel", request_id, *common)
    assert cancelled.returncode == 0, cancelled.stderr
    failed = openremix("status", request_id, *common, "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"] == "cancelled"
    missing = openremix("status", "00000000-0000-4000-8000-000000000000", *common)
    assert missing.returncode == 2
    assert "not found" in missing.stderr


def test_remix_json_output(server, tmp_path: Path):
    import json

    source = tmp_path / "cat.png"
    photo("chelsea", size=128).save(source)
    out = tmp_path / "out.png"
    done = openremix("remix", str(source), "neon", "-o", str(out), "--url", server.base_url,
                     "--api-key", TEST_KEY, "--speed", "TURBO", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "COMPLETED" and body["saved_to"] == str(out)
    assert Image.open(out).format == "PNG"


def test_db_backup_copies_a_running_store(start_process, tmp_path: Path, astronaut_uri):
    import os
    import shutil
    import sqlite3

    data_dir = tmp_path / "live"
    server = start_process(env={"OPENREMIX_WORKERS": "0"}, data_dir=data_dir)
    for seed in range(3):
        answer = httpx.post(f"{server.base_url}/v2/ideogram-3-remix", headers={
            "x-api-key": TEST_KEY}, json={"image": astronaut_uri, "prompt": "x", "seed": seed})
        assert answer.status_code == 200, answer.text
    target = tmp_path / "backup.db"

    def jobs_in(path: Path) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    done = openremix("db", "backup", str(target), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert f"to {target}" in done.stdout and jobs_in(target) == 3  # while the server runs
    again = openremix("db", "backup", str(target), "--data-dir", str(data_dir))
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert openremix("db", "backup", str(target), "--force", "--data-dir",
                     str(data_dir)).returncode == 0
    server.stop()  # and after it stops, the database file alone holds everything
    alone = tmp_path / "alone" / "openremix.db"
    alone.parent.mkdir()
    shutil.copyfile(data_dir / "openremix.db", alone)
    assert jobs_in(alone) == 3

    postgres = openremix("db", "backup", str(tmp_path / "pg.db"), env={
        **os.environ, "OPENREMIX_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert postgres.returncode == 2 and "pg_dump" in postgres.stderr
    assert not (tmp_path / "pg.db").exists()
