from pathlib import Path

import pytest

from signalroom.config import Config, ConfigError, load_config, parse_config
from signalroom.listen import parse_listen

pytestmark = pytest.mark.unit

VALID_HASH = "a" * 64


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="s.yml", **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_empty_file_gives_defaults() -> None:
    config = parse_config("")
    assert config == Config()
    assert config.server.listen == "127.0.0.1:8290"
    assert config.global_.scrape_interval == 15_000
    assert config.logs.retention == 30 * 86_400_000
    assert config.storage.metrics_retention.time == 15 * 86_400_000


def test_sections_parse() -> None:
    config = parse_config(
        f"""
global:
  scrape_interval: 30s
  external_labels: {{cluster: eu1}}
storage:
  wal: {{fsync: always, segment_size: 8MB}}
  metrics_retention: {{time: 90d, size: 10GB}}
auth:
  tokens:
    - {{name: grafana, sha256: "sha256:{VALID_HASH.upper()}", scopes: [read], tenants: [shop]}}
limits: {{max_request_body: 1MB}}
packs: [freshfoodz]
"""
    )
    assert config.global_.external_labels == {"cluster": "eu1"}
    assert config.storage.wal.fsync == "always"
    assert config.storage.wal.segment_size == 8 * 1024**2
    assert config.storage.metrics_retention.size == 10 * 1024**3
    assert config.auth.tokens[0].sha256 == VALID_HASH
    assert config.auth.tokens[0].tenants == ["shop"]
    assert config.limits.max_request_body == 1024**2


def test_errors_name_line_column_and_key() -> None:
    found = problems("server:\n  listen: 127.0.0.1:1\n\nstorage:\n  wal:\n    fsync: sometimes\n")
    assert found == ["s.yml:6:12: storage.wal.fsync: Input should be 'always', 'batch' or 'never'"]


def test_unknown_key_is_an_error_with_its_line() -> None:
    found = problems("global:\n  scrape_intervall: 10s\n")
    assert len(found) == 1
    assert found[0].startswith("s.yml:2:")
    assert "unknown key 'scrape_intervall'" in found[0]


def test_every_problem_is_reported() -> None:
    found = problems(
        "global: {scrape_interval: 5x}\nauth: {tokens: [{name: a, sha256: nope, scopes: []}]}\n"
    )
    assert len(found) == 3
    assert any("global.scrape_interval" in p and "5x" in p for p in found)
    assert any("auth.tokens[0].sha256" in p for p in found)
    assert any("auth.tokens[0].scopes" in p for p in found)


def test_invalid_yaml_names_its_line() -> None:
    found = problems("global:\n  scrape_interval: [15s\nserver: {}\n")
    assert found[0].startswith("s.yml:3:")
    assert "invalid YAML" in found[0]


def test_duplicate_keys_are_rejected() -> None:
    found = problems("server: {listen: '127.0.0.1:1'}\nserver: {listen: '127.0.0.1:2'}\n")
    assert found == ["s.yml:2:1: duplicate key 'server'"]


def test_scrape_timeout_must_fit_interval() -> None:
    found = problems("global: {scrape_interval: 10s, scrape_timeout: 20s}\n")
    assert "scrape_timeout must not be greater than scrape_interval" in found[0]


def test_duplicate_token_names() -> None:
    token = f"{{name: x, sha256: {VALID_HASH}, scopes: [read]}}"
    assert "duplicate token names: x" in problems(f"auth: {{tokens: [{token}, {token}]}}")[0]


def test_env_expansion() -> None:
    env = {"PORT": "9000", "TOKEN_HASH": VALID_HASH}
    config = parse_config(
        "server: {listen: '127.0.0.1:${PORT}', external_url: 'https://x/$${literal}'}\n"
        "auth: {tokens: [{name: a, sha256: '${TOKEN_HASH}', scopes: [read]}]}\n"
        "global: {external_labels: {region: '${REGION:-eu-central}'}}\n",
        env=env,
    )
    assert config.server.listen == "127.0.0.1:9000"
    assert config.server.external_url == "https://x/${literal}"
    assert config.auth.tokens[0].sha256 == VALID_HASH
    assert config.global_.external_labels == {"region": "eu-central"}


def test_unset_env_variable_names_line_and_variable() -> None:
    found = problems("server:\n  listen: '${NOT_SET_ANYWHERE}'\n", env={})
    assert found == [
        "s.yml:2:11: environment variable NOT_SET_ANYWHERE is not set "
        "(set it, or write ${NOT_SET_ANYWHERE:-default})"
    ]


def test_file_secrets(tmp_path: Path) -> None:
    (tmp_path / "grafana.sha256").write_text(VALID_HASH + "\n")
    (tmp_path / "signalroom.yml").write_text(
        "auth:\n  tokens:\n    - name: grafana\n"
        "      sha256_file: grafana.sha256\n      scopes: [read]\n"
    )
    config = load_config(tmp_path / "signalroom.yml")
    assert config.auth.tokens[0].sha256 == VALID_HASH


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "s.yml").write_text(
        "auth:\n  tokens:\n    - {name: a, sha256_file: gone.txt, scopes: [read]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "s.yml")
    assert "s.yml:3:" in info.value.problems[0]
    assert "sha256_file: cannot read" in info.value.problems[0]
    assert "gone.txt" in info.value.problems[0]


def test_both_value_and_file_is_an_error() -> None:
    found = problems(
        f"auth: {{tokens: [{{name: a, sha256: {VALID_HASH}, sha256_file: x, scopes: [read]}}]}}"
    )
    assert "set either 'sha256' or 'sha256_file', not both" in found[0]


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(Path("/nonexistent/signalroom.yml"))


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["s.yml:1:1: the configuration must be a mapping of sections"]


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:8290", "127.0.0.1", 8290, True),
        ("localhost:1", "localhost", 1, True),
        ("[::1]:9", "::1", 9, True),
        ("0.0.0.0:80", "0.0.0.0", 80, False),
        (":8290", "0.0.0.0", 8290, False),
        ("10.1.2.3:5", "10.1.2.3", 5, False),
    ],
)
def test_parse_listen(text: str, host: str, port: int, loopback: bool) -> None:
    address = parse_listen(text)
    assert (address.host, address.port, address.is_loopback) == (host, port, loopback)


@pytest.mark.parametrize("text", ["8290", "host", "1.2.3.4:99999", "[::1]"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_example_files_are_valid() -> None:
    """Every example is a valid configuration, or a valid rule file."""
    import yaml

    from signalroom.app import load_configuration
    from signalroom.rules.check import check_rules

    for path in Path(__file__).resolve().parents[2].glob("examples/*.yml"):
        if "groups" in (yaml.safe_load(path.read_text()) or {}):
            output, code = check_rules([str(path)])
            assert code == 0, output
        else:
            load_configuration(path)
