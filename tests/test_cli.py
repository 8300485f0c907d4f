"""The `openremix` command as a user types it: keys, and remix against a running server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.images import photo
from tests.support.servers import TEST_KEY, OpenRemixProcess


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


def test_version_and_the_sizes_a_remix_can_have():
    from openremix import __version__
    from openremix.contract.params import ASPECT_RATIOS, RESOLUTIONS

    version = openremix("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"openremix {__version__}"
    listed = openremix("sizes", "--json")
    assert listed.returncode == 0
    body = json.loads(listed.stdout)
    assert body["resolutions"] == list(RESOLUTIONS) and len(RESOLUTIONS) == 69
    assert body["aspect_ratios"] == ASPECT_RATIOS and len(ASPECT_RATIOS) == 15
    plain = openremix("sizes").stdout
    assert all(size in plain for size in RESOLUTIONS)
    assert "16x9  -> " in plain


@pytest.fixture(scope="module")
def queue_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    """`openremix serve` without workers (ready at once): for commands that need no remix."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("queue"),
                            {"OPENREMIX_WORKERS": "0"}).wait_ready()
    yield proc
    proc.stop()


def test_text_from_users_and_servers_is_printed_as_it_is(queue_only, tmp_path: Path):
    server = queue_only
    source = tmp_path / "cat.png"
    photo("chelsea", size=64).save(source)
    common = ["--url", server.base_url, "--api-key", TEST_KEY, "-o", str(tmp_path / "o.jpg")]
    for value in ("[/]", "[bold]16x9"):
        bad = openremix("remix", str(source), "x", "--aspect-ratio", value, *common)
        assert bad.returncode == 2, bad.stderr  # a bad request, not a crash (exit 1)
        assert "Traceback" not in bad.stderr
        assert f"(got '{value}')" in bad.stderr
    named = openremix("keys", "create", "--name", "[bold]team[/bold]", "--data-dir",
                      str(tmp_path / "d"))
    assert "([bold]team[/bold])" in named.stderr
    listed = openremix("keys", "list", "--data-dir", str(tmp_path / "d"))
    assert "[bold]team[/bold]" in listed.stdout


def test_models_pull_without_the_extra_names_the_extra(tmp_path: Path):
    import os

    # A stand-in package that fails to import, as when the diffusers extra is not installed.
    missing = tmp_path / "without_extra" / "huggingface_hub"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(missing.parent), os.environ.get("PYTHONPATH", "")])}
    pulled = openremix("models", "pull", "some/model", "--data-dir", str(tmp_path), env=env)
    assert pulled.returncode == 2
    assert "pip install 'openremix[diffusers]'" in pulled.stderr


def credits_of(base_url: str, key: str) -> float:
    return httpx.get(f"{base_url}/v1/get-user-credits", headers={"x-api-key": key}).json()[
        "credits"]


def test_an_unwritable_output_is_refused_before_anything_is_charged(queue_only,
                                                                   tmp_path: Path):
    server = queue_only
    source = tmp_path / "cat.png"
    photo("chelsea", size=64).save(source)
    before = credits_of(server.base_url, TEST_KEY)
    for target, reason in ((tmp_path / "no" / "such" / "x.jpg", "no folder"),
                           (tmp_path, "it is a folder")):
        refused = openremix("remix", str(source), "x", "--url", server.base_url,
                            "--api-key", TEST_KEY, "-o", str(target))
        assert refused.returncode == 2
        assert refused.stderr.strip() == f"error: cannot save to {target}: " + (
            f"no folder {target.parent}" if reason == "no folder" else reason)
    assert credits_of(server.base_url, TEST_KEY) == before


def test_commands_find_the_data_folder_from_any_working_directory(start_process,
                                                                   tmp_path: Path):
    import os

    user_data = tmp_path / "xdg"
    env = {k: v for k, v in os.environ.items() if k != "OPENREMIX_DATA_DIR"}
    env["XDG_DATA_HOME"] = str(user_data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "openremix.cli", *args], cwd=elsewhere,
                              capture_output=True, text=True, timeout=120, env=env)

    # Nothing there yet: each command says where it looked, and leaves no folder behind.
    listed = run("keys", "list")
    assert listed.returncode == 2
    assert f"no openremix data in {user_data / 'openremix'}" in listed.stderr
    unkeyed = run("status", "some-id", "--url", "http://127.0.0.1:9")
    assert unkeyed.returncode == 3
    assert f"no development key at {user_data / 'openremix' / 'dev-api-key'}" in unkeyed.stderr
    assert not user_data.exists()
    # `serve` on the per-user default: its development key works from any folder.
    server = start_process(env={"OPENREMIX_WORKERS": "0"}, data_dir=user_data / "openremix")
    submitted = httpx.post(f"{server.base_url}/v2/ideogram-3-remix", headers={
        "x-api-key": (user_data / "openremix" / "dev-api-key").read_text().strip()},
        json={"image": "data:,", "prompt": "x"})
    assert submitted.status_code == 400  # authenticated: the key is the server's
    missing = run("status", "00000000-0000-4000-8000-000000000000", "--url", server.base_url)
    assert missing.returncode == 2 and "not found" in missing.stderr  # not 3: the key worked
    assert "dev" in run("keys", "list").stdout


def test_ctrl_c_during_remix_cancels_the_request_and_refunds_it(start_process, tmp_path: Path):
    import signal
    import time

    server = start_process(env={"OPENREMIX_WORKERS": "0"}, data_dir=tmp_path / "q")
    source = tmp_path / "cat.png"
    photo("chelsea", size=64).save(source)
    before = credits_of(server.base_url, TEST_KEY)
    running = subprocess.Popen(
        [sys.executable, "-m", "openremix.cli", "remix", str(source), "x", "--url",
         server.base_url, "--api-key", TEST_KEY, "-o", str(tmp_path / "o.jpg")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while credits_of(server.base_url, TEST_KEY) == before:  # reserved once it is queued
        assert time.monotonic() < deadline and running.poll() is None
        time.sleep(0.1)
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=60)
    assert running.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: cancelled request ") and "Traceback" not in stderr
    request_id = last.split()[3]
    status = httpx.get(f"{server.base_url}/v2/requests/{request_id}/status",
                       headers={"x-api-key": TEST_KEY}).json()
    assert status["status"] == "FAILED" and status["error"] == "cancelled"
    assert credits_of(server.base_url, TEST_KEY) == before


def test_remix_sends_magic_prompt_style_codes_and_reference_images(server, tmp_path: Path):
    source = tmp_path / "cat.png"
    photo("chelsea", size=96).save(source)
    reference = tmp_path / "ref.png"
    photo("astronaut", size=96).save(reference)
    common = ["--url", server.base_url, "--api-key", TEST_KEY, "--speed", "TURBO", "--json",
              "-o", str(tmp_path / "o.jpg")]
    coded = openremix("remix", str(source), "a poster", "--magic-prompt", "OFF",
                      "--style-code", "0a1b2c3d", "--style-code", "DEADBEEF", *common)
    assert coded.returncode == 0, coded.stderr
    body = json.loads(coded.stdout)
    assert body["prompt"] == "a poster"
    assert body["details"]["style_codes"] == ["0A1B2C3D", "DEADBEEF"]
    referenced = openremix("remix", str(source), "a poster", "--style-ref", str(reference),
                           *common)
    assert referenced.returncode == 0, referenced.stderr
    assert json.loads(referenced.stdout)["details"]["style_source"] == "style_reference_images"


@pytest.mark.parametrize(("name", "value"), [("OPENREMIX_MAX_SIDE", "abc"),
                                             ("OPENREMIX_DTYPE", "float8"),
                                             ("OPENREMIX_PORT", "-1")])
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, name: str, value: str):
    """A typo in an environment variable is the operator's most common mistake: the command
    says which variable and why, exit 2, before anything starts (an unknown dtype used to
    pass until the model loaded)."""
    for command in (["serve", "--data-dir", str(tmp_path)], ["keys", "list"]):
        done = openremix(*command, env={name: value, "OPENREMIX_DATA_DIR": str(tmp_path)})
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[0].startswith(f"error: {name}='{value}': ")


def test_models_pull_fetches_every_file_of_an_ideogram_4_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The pull's allow patterns, applied by the hub client's own matcher to the files of the
    tiny Ideogram 4 (the real folder layout, with the enhancer head), keep every file a load
    needs and nothing else; the download itself is stood in for (no hub here)."""
    import shutil

    hub = pytest.importorskip("huggingface_hub")
    pytest.importorskip("diffusers.pipelines.ideogram4")
    from huggingface_hub.utils import filter_repo_objects
    from typer.testing import CliRunner

    from openremix.cli import app
    from tests.support.tiny_ideogram4 import build_tiny_ideogram4

    repo = build_tiny_ideogram4(tmp_path / "repo", seed=0, enhancer_head=True)
    model_files = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # in every hub repo
    (repo / "transformer" / "weights.onnx").write_bytes(b"not for diffusers")
    asked: list[tuple[str, list[str]]] = []

    def snapshot_download(repo_id: str, local_dir: Path, allow_patterns: list[str],
                          **_: object) -> str:
        asked.append((repo_id, allow_patterns))
        files = [p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / name, Path(local_dir) / name)
        return str(local_dir)

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    pulled = CliRunner().invoke(app, ["models", "pull", "ideogram-ai/ideogram-4-nf4-diffusers",
                                      "--data-dir", str(tmp_path / "data")])
    assert pulled.exit_code == 0, pulled.output
    assert [repo_id for repo_id, _ in asked] == ["ideogram-ai/ideogram-4-nf4-diffusers"]
    target = tmp_path / "data" / "models" / "ideogram-ai--ideogram-4-nf4-diffusers"
    got = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert {"model_index.json", "tokenizer/chat_template.jinja",
            "prompt_enhancer_head/config.json"} <= model_files
    assert got == model_files
