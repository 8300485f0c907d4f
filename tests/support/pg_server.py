"""A throwaway PostgreSQL cluster on loopback, for the tests and `bench/bench_queue.py`.

`PostgresCluster.start()` runs Debian's own binaries (`/usr/lib/postgresql/<major>/bin`, put
there by `scripts/install_postgres.sh`): `initdb` into a fresh folder under /tmp, then `pg_ctl
start` on a free port of 127.0.0.1 with trust authentication and the socket in that folder. The
server refuses to run as root, so as root every command runs as the `postgres` OS user (the
folder is given to it). Each test gets its own database (`create_database`), dropped after.

Test clusters trade durability for speed (`FAST_SETTINGS`: `fsync=off`, ...); the benchmark
passes its own settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.servers import free_port

INSTALL_HINT = "PostgreSQL server not installed: run scripts/install_postgres.sh"
PSYCOPG_HINT = "psycopg not installed: pip install -e '.[postgres]'"
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""A crash may corrupt such a cluster: fine for throwaway test data, and much faster."""
START_TIMEOUT = 30.0


def find_postgres_bin() -> Path | None:
    """The newest `/usr/lib/postgresql/<major>/bin` that has `pg_ctl`, `initdb` and `postgres`."""
    root = Path("/usr/lib/postgresql")
    found = []
    for candidate in root.glob("*/bin") if root.is_dir() else []:
        if all((candidate / name).is_file() for name in ("pg_ctl", "initdb", "postgres")):
            major = candidate.parent.name
            found.append((int(major) if major.isdigit() else 0, candidate))
    return max(found)[1] if found else None


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    if find_postgres_bin() is None:
        return INSTALL_HINT
    if os.geteuid() == 0 and not _postgres_user_exists():
        return "PostgreSQL needs a non-root OS user `postgres` to run as; none exists"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return PSYCOPG_HINT
    return None


def _postgres_user_exists() -> bool:
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return shutil.which("runuser") is not None


class PostgresCluster:
    """One running throwaway PostgreSQL server; `stop()` removes it and its folder."""

    def __init__(self, bin_dir: Path, root: Path, port: int, settings: dict[str, str]) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.log_path = root / "server.log"
        self.port = port
        self.settings = settings

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> PostgresCluster:
        """initdb + start a new cluster with these server `settings` (default
        `FAST_SETTINGS`); raises RuntimeError, with the server's log, on failure."""
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        bin_dir = find_postgres_bin()
        assert bin_dir is not None
        root = Path(tempfile.mkdtemp(prefix="openremix-pg-"))
        server_settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(root),
            "max_connections": "200",
            **(FAST_SETTINGS if settings is None else settings),
        }
        cluster = cls(bin_dir, root, free_port(), server_settings)
        try:
            if os.geteuid() == 0:
                shutil.chown(root, "postgres", "postgres")
            cluster._run("initdb", "-D", str(cluster.data_dir), "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
                         "--no-instructions")
            cluster.start_server()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    # --- the server process -------------------------------------------------------------------
    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}{self.server_log()}"
            )

    def start_server(self) -> None:
        options = " ".join([f"-p {self.port}", *(f"-c {k}={v}" for k, v in self.settings.items())])
        self._run("pg_ctl", "start", "-w", "-t", str(int(START_TIMEOUT)), "-D",
                  str(self.data_dir), "-l", str(self.log_path), "-o", options)

    def stop_server(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended), keeping its data."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down `down_seconds`, start again on the same port."""
        self.stop_server()
        time.sleep(down_seconds)
        self.start_server()

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return "\n--- server log ---\n" + self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # --- databases ----------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """The same database over the server's Unix socket (no TCP: cheaper round trips)."""
        return f"postgresql://postgres@/{dbname}?host={self.root}&port={self.port}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database (a copy of template0); returns its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of `url`, ending any session still on it."""
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
