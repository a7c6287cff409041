import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from signalroom.auth import Authenticator
from signalroom.cli import app
from signalroom.config import load_config

pytestmark = pytest.mark.unit
runner = CliRunner()


def test_token_new_prints_a_config_entry_that_accepts_the_token(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "new", "--name", "ci", "--scopes", "read,write"])
    assert result.exit_code == 0, result.output
    token = re.search(r"token: (\S+)", result.stdout)
    assert token is not None
    snippet = result.stdout[result.stdout.index("auth:") :]
    (tmp_path / "s.yml").write_text(snippet)
    config = load_config(tmp_path / "s.yml")
    principal = Authenticator(config.auth).authenticate(f"Bearer {token.group(1)}")
    assert principal.name == "ci"
    assert principal.scopes == {"read", "write"}


def test_token_new_rejects_unknown_scope() -> None:
    result = runner.invoke(app, ["token", "new", "--name", "ci", "--scopes", "read,root"])
    assert result.exit_code != 0


def test_check_config(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text("global: {scrape_interval: 30s}\n")
    bad.write_text("global:\n  scrape_interval: often\n")
    assert runner.invoke(app, ["check-config", str(good)]).exit_code == 0
    result = runner.invoke(app, ["check-config", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2:20: global.scrape_interval" in result.output.replace("\n", "")


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("signalroom 0.1.0")
