"""Shared fixtures: real photos as inputs, and real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import data_uri, photo
from tests.support.pg_server import PostgresCluster, unavailable_reason
from tests.support.servers import OTHER_KEY, TEST_KEY, OpenRemixProcess


@pytest.fixture(scope="session")
def astronaut_uri() -> str:
    return data_uri(photo("astronaut"), "JPEG")


@pytest.fixture(scope="session")
def chelsea_uri() -> str:
    return data_uri(photo("chelsea"), "JPEG")


@pytest.fixture(scope="session")
def test_key() -> str:
    return TEST_KEY


@pytest.fixture(scope="session")
def other_key() -> str:
    return OTHER_KEY


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    """`openremix serve` on its embedded defaults (SQLite, local outputs, one worker)."""
    data_dir: Path = tmp_path_factory.mktemp("serve")
    proc = OpenRemixProcess("serve", data_dir).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator:
    """Start openremix processes with custom settings; all are stopped at the end."""
    started: list[OpenRemixProcess] = []

    def start(command: str = "serve", env: dict[str, str] | None = None,
              data_dir: Path | None = None, ready: bool = True,
              port: int | None = None) -> OpenRemixProcess:
        proc = OpenRemixProcess(command, data_dir or tmp_path / "data", env, port=port)
        started.append(proc)
        return proc.wait_ready() if ready else proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.stop()


# --- PostgreSQL -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server for the whole session (see `pg_server`); skips the tests
    that use it, saying why, only when the server is not installed."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PostgresCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The session cluster's maintenance database (for creating others, not for stores)."""
    return postgres_cluster.url()


@pytest.fixture
def postgres_db(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a new, empty database on the session cluster, dropped after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)
