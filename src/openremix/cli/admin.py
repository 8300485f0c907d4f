"""`openremix keys | db | models`: the operator's commands on a data folder and its store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import typer
from rich.console import Console

from openremix.cli.app import DataOpt, app, console, settings_for
from openremix.config import Settings

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
models_app = typer.Typer(help="Manage diffusion models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
db_app = typer.Typer(help="The job store's schema (versioned migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


ScopeOpt = typer.Option(
    None, "--scope",
    help="Limit the key to a wire (wire:segmind, wire:ideogram, wire:openai) or a model "
    "(model:SLUG); repeat for several. Requests outside them answer 403. None: everything.",
)


def _checked_scopes(scopes: list[str] | None) -> tuple[str, ...] | None:
    """The --scope values, checked (exit 2 with the rule when one is malformed)."""
    with _one_line_errors():
        return _admin().checked_scopes(scopes)


def _admin() -> ModuleType:
    """`server.store_admin`, imported when a command runs (it loads the whole server: `--help`
    stays fast)."""
    from openremix.server import store_admin

    return store_admin


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """An `AdminError` is the operator's one line: printed, exit 2."""
    from openremix.server.store_admin import AdminError

    try:
        yield
    except AdminError as exc:
        console.print(f"error: {exc}")
        raise typer.Exit(2) from None


def _scopes_text(scopes: tuple[str, ...] | None) -> str:
    return "everything" if scopes is None else " ".join(scopes)


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("default", help="A label for the key."),
    credits: float = typer.Option(1000.0, help="Paid credits to start with."),
    free_credits: float = typer.Option(0.0, "--free-credits", help="Free credits (used first)."),
    scope: list[str] | None = ScopeOpt,
    data_dir: Path | None = DataOpt,
) -> None:
    """Create a key; prints the secret once."""
    scopes = _checked_scopes(scope)
    settings = settings_for(data_dir=data_dir)
    store = _admin().open_store(settings)
    record, secret = store.create_api_key(name, credits, free_credits, scopes=scopes)
    store.close()
    console.print(f"created {record.key_id} ({name}) in {_admin().store_name(settings)}, "
                  f"credits {credits:g} + free {free_credits:g}, scopes: "
                  f"{_scopes_text(record.scopes)}")
    print(secret)


@keys_app.command("scope")
def keys_scope(
    key_id: str,
    scope: list[str] | None = ScopeOpt,
    data_dir: Path | None = DataOpt,
) -> None:
    """Set a key's scopes (replacing its old ones); without --scope, allow everything."""
    scopes = _checked_scopes(scope)
    with _one_line_errors():
        record = _admin().set_key_scopes(settings_for(data_dir=data_dir), key_id, scopes)
    console.print(f"{record.key_id} scopes: {_scopes_text(record.scopes)}")


@keys_app.command("list")
def keys_list(data_dir: Path | None = DataOpt) -> None:
    """List keys (ids, names, balances; never the secrets)."""
    from rich.table import Table

    store = _admin().open_store(existing_store(settings_for(data_dir=data_dir)))
    table = Table()
    for column in ("key id", "name"):  # ids and names whole, so they can be copied
        table.add_column(column, no_wrap=True)
    for column in ("credits", "free credits", "revoked"):
        table.add_column(column)
    table.add_column("scopes", overflow="fold")  # shown whole, however narrow the terminal
    for record in store.list_api_keys():
        table.add_row(record.key_id, record.name, f"{record.credits:g}",
                      f"{record.free_credits:g}", "yes" if record.revoked else "",
                      _scopes_text(record.scopes))
    store.close()
    Console(markup=False, highlight=False).print(table)  # names are the users' text


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: Path | None = DataOpt) -> None:
    """Revoke a key by its id; requests with it answer 401 from now on."""
    store = _admin().open_store(existing_store(settings_for(data_dir=data_dir)))
    ok = store.revoke_api_key(key_id)
    store.close()
    if not ok:
        console.print(f"error: no key {key_id}")
        raise typer.Exit(2)
    console.print(f"revoked {key_id}")


def existing_store(settings: Settings) -> Settings:
    """`settings` when their job store exists; else one line saying where it looked, exit 2."""
    with _one_line_errors():
        _admin().require_existing(settings)
    return settings


@db_app.command("upgrade")
def db_upgrade(data_dir: Path | None = DataOpt) -> None:
    """Create the job store's tables or apply its pending migrations, then exit.

    Safe to run on every deploy and from several machines at once (an advisory lock makes one
    of them apply each step). Exit codes: 0 done or nothing to do, 2 error.
    """
    with _one_line_errors():
        print(_admin().upgrade_schema(settings_for(data_dir=data_dir)))


@db_app.command("status")
def db_status(data_dir: Path | None = DataOpt) -> None:
    """Print the job store's schema version and pending migrations.

    Exit codes: 0 up to date, 1 migrations pending (or the database is newer than this
    openremix), 2 error.
    """
    with _one_line_errors():
        text, up_to_date = _admin().schema_status(settings_for(data_dir=data_dir))
    print(text)
    if not up_to_date:
        raise typer.Exit(1)


@db_app.command("backup")
def db_backup(
    path: Path = typer.Argument(..., help="Where to write the copy (a new SQLite file)."),
    force: bool = typer.Option(False, "--force", help="Replace PATH if it exists."),
    data_dir: Path | None = DataOpt,
) -> None:
    """Copy the SQLite job store (jobs, keys, credits) into PATH, safely while servers run.

    Exit codes: 0 done, 2 error (PATH exists without --force, no database, PostgreSQL: use
    pg_dump).
    """
    with _one_line_errors():
        print(_admin().backup_store(settings_for(data_dir=data_dir), path, overwrite=force))


@models_app.command("pull")
def models_pull(
    model_id: str = typer.Argument(..., help="A hub model id, e.g. stabilityai/sdxl-turbo."),
    revision: str | None = typer.Option(None, help="A branch, tag or commit."),
    data_dir: Path | None = DataOpt,
) -> None:
    """Download a diffusers model into the data folder (needs a reachable model hub).

    Then run with OPENREMIX_ENGINE=diffusers OPENREMIX_MODEL=<the same id>.
    """
    settings = settings_for(data_dir=data_dir)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        console.print("error: pulling models needs the diffusers extra: "
                      "pip install 'openremix[diffusers]'")
        raise typer.Exit(2) from None
    target = settings.models_dir / model_id.replace("/", "--")
    console.print(f"pulling {model_id} into {target}")
    try:
        snapshot_download(
            repo_id=model_id,
            revision=revision,
            local_dir=target,
            # `*.jinja`: chat templates kept in their own file (Ideogram 4's Qwen3-VL tokenizer)
            allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*.md", "*.jinja"],
        )
    except Exception as exc:  # the hub client raises many kinds; report one line
        reason = (str(exc).splitlines() or [""])[0]
        console.print(f"error: cannot download {model_id}: {type(exc).__name__}: {reason}")
        raise typer.Exit(4) from None
    console.print(f"done: OPENREMIX_ENGINE=diffusers OPENREMIX_MODEL={model_id} "
                  f"OPENREMIX_DATA_DIR={settings.data_dir} openremix serve")


