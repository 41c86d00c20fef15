"""``agentbus token``: create, list and revoke the HTTP transport's bearer tokens."""

from __future__ import annotations

from pathlib import Path

import click

from mcp_agentbus.cli.common import fail, load_settings
from mcp_agentbus.server.tokens import TokensFile


@click.group()
def token() -> None:
    """Bearer tokens for the HTTP transport (stored hashed in AGENTBUS_TOKENS_FILE, default
    ~/.config/agentbus/tokens.json). While that file exists, HTTP requires a token."""


_tokens_file_option = click.option(
    "--tokens-file", type=click.Path(dir_okay=False, path_type=Path), help="[env: AGENTBUS_TOKENS_FILE]"
)


def _tokens(tokens_file: Path | None) -> TokensFile:
    return TokensFile(load_settings(tokens_file=tokens_file).tokens_file)


@token.command("create")
@click.option(
    "--agent",
    help="Agent ids the token may act as: one id, or a glob such as 'worker-*' (required but for "
    "--role operator, whose one id is who the person acts as: default 'human').",
)
@click.option("--namespace", help="The namespace it works in [default: AGENTBUS_NAMESPACE or 'default'].")
@click.option(
    "--role",
    default="worker",
    show_default=True,
    help="Tools it may call: worker, coordinator, all, tool names, or a comma list of them. Or operator: "
    "a person's token for the web dashboard, to view it and act from it (send messages, cancel, retry, "
    "release locks) but call no agent tools. Tokens of role all may act there too; any other may only view.",
)
@click.option("--note", default="", help="What it is for (shown by `token list`).")
@_tokens_file_option
def token_create(
    agent: str | None, namespace: str | None, role: str, note: str, tokens_file: Path | None
) -> None:
    """Create a token: printed once on stdout; only its hash is kept."""
    from mcp_agentbus.server.profiles import OPERATOR, check_role

    try:
        check_role(role)
    except ValueError as exc:
        fail(f"--role {exc}")
    if agent is None:
        if role != OPERATOR:
            fail(
                "--agent is required: the agent ids the token may act as (one id, or a glob such as "
                "'worker-*')"
            )
        agent = "human"
    settings = load_settings(namespace=namespace, tokens_file=tokens_file)
    tokens = TokensFile(settings.tokens_file)
    new_file = not tokens.exists()
    try:
        secret, grant = tokens.create(namespace=settings.namespace, agent=agent, role=role, note=note)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if new_file:
        click.echo(
            f"agentbus: {tokens.path} is new: HTTP servers started before it existed serve without auth "
            "until restarted; restart them to require tokens.",
            err=True,
        )
    click.echo(
        f"agentbus: created {grant.id} (namespace {grant.namespace}, agents {grant.agent!r}, role "
        f"{grant.role}) in {tokens.path}. The token is shown only now:",
        err=True,
    )
    click.echo(secret)


@token.command("list")
@_tokens_file_option
def token_list(tokens_file: Path | None) -> None:
    """The tokens there are (never the tokens themselves)."""
    tokens = _tokens(tokens_file)
    try:
        grants = tokens.grants()
    except ValueError as exc:
        fail(str(exc))
    if not grants:
        click.echo(f"no tokens in {tokens.path}", err=True)
    for g in grants:
        click.echo(
            f"{g.id}  namespace={g.namespace}  agent={g.agent}  role={g.role}  created={g.created_at}"
            + (f"  note={g.note}" if g.note else "")
        )


@token.command("revoke")
@click.argument("token_id")
@_tokens_file_option
def token_revoke(token_id: str, tokens_file: Path | None) -> None:
    """Remove a token by its id (from `token list`); servers refuse it from their next request."""
    tokens = _tokens(tokens_file)
    try:
        gone = tokens.revoke(token_id)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if gone is None:
        fail(f"there is no token {token_id} in {tokens.path} (see `agentbus token list`)")
    click.echo(f"agentbus: revoked {token_id}", err=True)
