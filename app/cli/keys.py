"""``rapport keys``: create, list and revoke the API keys of tenants (apps)."""

from __future__ import annotations

from datetime import datetime, timedelta

import click
from sqlalchemy.orm import Session, sessionmaker

from app.cli.support import load_settings, log_start, open_database
from app.settings import Settings


@click.group()
def keys() -> None:
    """API keys of tenants (apps)."""


def _sessions(command: str) -> tuple[Settings, sessionmaker[Session]]:
    """The settings and a session factory on a database whose schema is up to date."""
    from app.storage.db.engine import make_engine, make_sessionmaker

    settings = load_settings()
    log_start(command, settings)
    open_database(settings)
    return settings, make_sessionmaker(make_engine(settings.resolved_database_url))


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise click.BadParameter("use a positive number of days, hours or minutes: 90d, 12h, 30m")
    return timedelta(**{units[unit]: int(number)})


@keys.command("create")
@click.option("--tenant", required=True, help="tenant (app) name; created if new")
@click.option("--expires-in", default=None, help="e.g. 90d, 12h, 30m; default: never")
def keys_create(tenant: str, expires_in: str | None) -> None:
    """Create an API key and print it alone on stdout (only its keyed hash is stored)."""
    from app.domain.ids import TENANT_NAME
    from app.security.keys import create_key

    try:
        TENANT_NAME.check(tenant)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--tenant") from None
    from app.storage.db.models import utcnow

    lifetime = _duration(expires_in)
    expires_at = utcnow() + lifetime if lifetime else None
    settings, sessions = _sessions("keys create")
    with sessions() as session:
        key = create_key(
            session=session, tenant_name=tenant, secret=settings.key_secret, expires_at=expires_at
        )
        session.commit()
    click.echo(key)


@keys.command("list")
@click.option("--tenant", required=True, help="tenant (app) name")
def keys_list(tenant: str) -> None:
    """A tenant's keys by prefix: created, expiry, revoked (the keys themselves are never
    stored, so never shown)."""
    from app.storage.repository.keys import list_keys
    from app.storage.repository.tenants import find_tenant

    _, sessions = _sessions("keys list")
    with sessions() as session:
        found = find_tenant(session=session, name=tenant)
        if found is None:
            raise click.ClickException(f"no tenant named {tenant!r}")
        rows = list_keys(session=session, tenant_id=found.id)
    click.echo(f"{'prefix':<14}{'created':<22}{'expires':<22}revoked")
    for row in rows:
        click.echo(
            f"{row.prefix:<14}{_when(row.created_at):<22}{_when(row.expires_at):<22}"
            f"{_when(row.revoked_at)}"
        )


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


@keys.command("revoke")
@click.argument("key_or_prefix")
def keys_revoke(key_or_prefix: str) -> None:
    """Revoke a key, given in full or by its prefix (the 12 characters after 'rk_')."""
    from app.security.keys import revoke_key

    _, sessions = _sessions("keys revoke")
    with sessions() as session:
        revoked = revoke_key(session=session, key_or_prefix=key_or_prefix)
        session.commit()
    if not revoked:
        raise click.ClickException("no live key matches")
    click.echo("revoked", err=True)
