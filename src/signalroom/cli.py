"""The ``signalroom`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

import signalroom
from signalroom.config import Config, ConfigError
from signalroom.listen import parse_listen
from signalroom.loadtest.cli import loadtest
from signalroom.packs.freshfoodz.capacity import capacity_app
from signalroom.simulate.cli import simulate

app = typer.Typer(
    name="signalroom",
    help="Metrics, alerting, logs, traces, events and business KPIs for product teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Create API tokens for auth.tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
rules_app = typer.Typer(help="Check and unit-test Prometheus rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
alerting_app = typer.Typer(
    help="Work with the alert manager's configuration.", no_args_is_help=True
)
routes_app = typer.Typer(help="Inspect the routing tree.", no_args_is_help=True)
alerting_app.add_typer(routes_app, name="routes")
app.add_typer(alerting_app, name="alerting")
app.add_typer(capacity_app, name="capacity")
app.command("loadtest")(loadtest)
app.command("simulate")(simulate)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _load(path: Path | None) -> Config:
    from signalroom.app import load_configuration

    if path is None:
        return Config()
    try:
        return load_configuration(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Configuration file (signalroom.yml).")
    ] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where all data is stored.")] = Path(
        "data"
    ),
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen", help="HOST:PORT to serve on [default: server.listen, 127.0.0.1:8290]."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="json (one object a line) or console.")] = "json",
) -> None:
    """Run the signalroom server."""
    from signalroom.app import Signalroom, StartupError, check_exposure
    from signalroom.log import setup_logging
    from signalroom.web.server import serve as run_server

    if log_format not in ("json", "console"):
        raise typer.BadParameter("use json or console", param_hint="--log-format")
    fmt: Literal["json", "console"] = "json" if log_format == "json" else "console"
    setup_logging(log_level, fmt)
    from signalroom.tsdb.malloc import tune_malloc

    tune_malloc()  # before any thread starts: fewer arenas, freed query arrays returned sooner
    cfg = _load(config)
    try:
        address = parse_listen(listen or cfg.server.listen)
        check_exposure(address, cfg)
    except (ValueError, StartupError) as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    runtime = Signalroom(cfg, data_dir=data_dir.resolve(), config_path=config, listen=address)
    run_server(runtime)


@app.command("check-config")
def check_config(
    files: Annotated[list[Path], typer.Argument(help="Configuration files to check.")],
) -> None:
    """Check configuration files; every problem is printed with its file, line and key."""
    from signalroom.app import load_configuration

    failed = False
    for path in files:
        try:
            cfg = load_configuration(path)
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                err.print(f"[red]FAILED:[/red] {problem}", soft_wrap=True)
            continue
        out.print(
            f"[green]SUCCESS:[/green] {path} is valid signalroom configuration ({cfg.digest()})"
        )
    raise typer.Exit(1 if failed else 0)


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option(help="A name for the token, shown in logs and errors.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes: read, write (ingest), admin.")
    ] = "read",
) -> None:
    """Print a new random API token and the auth.tokens entry that accepts it."""
    from signalroom.auth import hash_token, new_token

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ("read", "write", "admin")]
    if unknown or not wanted:
        raise typer.BadParameter(
            f"unknown scopes {unknown}; use read, write, admin", param_hint="--scopes"
        )
    token = new_token()
    err.print("Keep this token secret; signalroom stores only its hash.")
    typer.echo(f"token: {token}")
    typer.echo("\n# add to signalroom.yml:\nauth:\n  tokens:")
    typer.echo(
        f"    - name: {name}\n"
        f"      sha256: {hash_token(token)}\n"
        f"      scopes: [{', '.join(wanted)}]"
    )


@app.command("promql-test")
def promql_test(
    files: Annotated[list[Path], typer.Argument(help="promqltest files (Prometheus' test DSL).")],
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each failing case.")
    ] = False,
) -> None:
    """Run PromQL test files against signalroom's engine; prints 'N passed, N failed'."""
    from signalroom.promql.promqltest import main as run_promqltest

    raise typer.Exit(run_promqltest([str(f) for f in files], verbose=verbose))


@rules_app.command("check")
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Prometheus rule files.")],
) -> None:
    """Check rule files for syntax and semantic errors, as `promtool check rules`."""
    from signalroom.rules.check import check_rules

    output, code = check_rules([str(f) for f in files])
    sys.stdout.write(output)
    raise typer.Exit(code)


@rules_app.command("test")
def rules_test(
    files: Annotated[list[Path], typer.Argument(help="Rule unit-test files (promtool format).")],
) -> None:
    """Run rule unit tests, as `promtool test rules`."""
    from signalroom.rules.unittest import run_rule_tests

    output, code = run_rule_tests([str(f) for f in files])
    sys.stdout.write(output)
    raise typer.Exit(code)


@routes_app.command("test")
def routes_test(
    labels: Annotated[
        list[str] | None, typer.Argument(help="Labels of the alert, as NAME=VALUE.")
    ] = None,
    config_file: Annotated[
        Path,
        typer.Option(
            "--config.file", help="alertmanager.yml, or signalroom.yml with an alerting section."
        ),
    ] = Path("alertmanager.yml"),
    tree: Annotated[bool, typer.Option("--tree", help="Show the routing tree as well.")] = False,
    verify_receivers: Annotated[
        str | None, typer.Option("--verify.receivers", help="Expected receivers, comma-separated.")
    ] = None,
) -> None:
    """Answer which receivers an alert with these labels goes to, as `amtool config routes test`."""
    from signalroom.alerting.routes_test import routes_test as run_routes_test

    output, code = run_routes_test(
        config_file, labels or [], tree=tree, verify_receivers=verify_receivers
    )
    # amtool's exact bytes, so scripts that compare outputs keep working
    (sys.stderr if output.startswith("amtool: error") else sys.stdout).write(output)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"signalroom {signalroom.__version__} (python {sys.version.split()[0]})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
