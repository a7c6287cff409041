"""The configuration file, ``signalroom.yml``: models, loading and error reporting.

The file is close to Prometheus' and Alertmanager's so their sections can be pasted in.
Loading is strict: unknown keys are errors, and every error names the file, the line and
the key at fault, for example ``signalroom.yml:12:5: storage.wal.fsync: ...``.

Two conveniences are resolved while loading:

* ``${VAR}`` and ``${VAR:-default}`` in string values expand from the environment
  (``$$`` is a literal ``$``); an unset variable without a default is an error.
* a key ``<name>_file`` next to a model field ``<name>`` reads that field's value from a
  file (secrets kept out of the config), relative to the config file's directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from signalroom.events.config import EventsConfig
from signalroom.listen import parse_listen
from signalroom.logs.config import LogsConfig
from signalroom.traces.config import TracesConfig
from signalroom.units import parse_bytes, parse_duration_ms

DEFAULT_LISTEN = "127.0.0.1:8290"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ConfigError(Exception):
    """A configuration file could not be loaded; ``str()`` is a message for a person."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --- value types -----------------------------------------------------------------------


def _duration(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s or 5m")
    if isinstance(value, int):  # already milliseconds (defaults, programmatic configs)
        return value
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s or 5m")
    return parse_duration_ms(value)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a size such as 512MB or 10GB")
    return parse_bytes(value)


DurationMs = Annotated[int, BeforeValidator(_duration)]
"""A Prometheus duration string (``15s``, ``1h30m``), held as milliseconds."""
ByteSize = Annotated[int, BeforeValidator(_size)]
Count = Annotated[int, Field(ge=0)]
"""A size string (``512MB``, ``1GiB``), held as bytes."""


class ConfigModel(BaseModel):
    """Base of every config section: strict keys, and ``<field>_file`` secret indirection."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _read_file_secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        resolved = dict(data)
        for key in data:
            if not (isinstance(key, str) and key.endswith("_file")) or key in cls.model_fields:
                continue
            target = key[: -len("_file")]
            if target not in cls.model_fields:
                continue
            if target in data:
                raise ValueError(f"set either {target!r} or {key!r}, not both")
            path = base_dir / str(data[key])
            try:
                resolved[target] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
            del resolved[key]
        return resolved


# --- sections ----------------------------------------------------------------------------


class GlobalConfig(ConfigModel):
    """Defaults shared by scraping and rule evaluation, as in prometheus.yml."""

    scrape_interval: DurationMs = 15_000
    scrape_timeout: DurationMs = 10_000
    evaluation_interval: DurationMs = 60_000
    external_labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> GlobalConfig:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not be greater than scrape_interval")
        return self


class ServerConfig(ConfigModel):
    """The HTTP server."""

    listen: str = DEFAULT_LISTEN
    external_url: str | None = None
    shutdown_timeout: DurationMs = 30_000
    self_scrape: bool = True
    """Scrape signalroom's own /metrics as job ``signalroom``."""

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class WALConfig(ConfigModel):
    """Write-ahead log tuning. ``batch`` fsyncs concurrent writes together (group commit)."""

    fsync: Literal["always", "batch", "never"] = "batch"
    batch_interval: DurationMs = 2
    segment_size: ByteSize = 64 * 1024**2


class RetentionConfig(ConfigModel):
    """How long, and how much, of one signal is kept. Zero means no limit."""

    time: DurationMs = 0
    size: ByteSize = 0


def _retention(time: str) -> Any:
    return Field(default_factory=lambda: RetentionConfig(time=parse_duration_ms(time)))


class StorageConfig(ConfigModel):
    """Where and how signalroom stores everything (embedded by default)."""

    state_url: str | None = None
    """SQLAlchemy URL of the relational state; default ``sqlite:///<data-dir>/state.db``."""
    wal: WALConfig = Field(default_factory=WALConfig)
    metrics_retention: RetentionConfig = _retention("15d")
    metrics_out_of_order_window: DurationMs = 0
    """How much older than a series' newest sample a sample may be; 0 rejects them."""


Scope = Literal["read", "write", "admin"]


class TokenConfig(ConfigModel):
    """An API token, stored only as its SHA-256 hash (``signalroom token new`` makes one)."""

    name: str
    sha256: str
    scopes: list[Scope] = Field(min_length=1)
    tenants: list[str] | None = None
    """Tenants this token may act for; ``None`` means any."""

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower().removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError(
                "expected the 64 hex digits of a SHA-256 hash (see `signalroom token new`)"
            )
        return value

    @field_validator("tenants")
    @classmethod
    def _valid_tenants(cls, value: list[str] | None) -> list[str] | None:
        for tenant in value or []:
            if not TENANT_PATTERN.match(tenant):
                raise ValueError(f"invalid tenant id {tenant!r}: use 1-128 of A-Z a-z 0-9 _ . -")
        return value


class AuthConfig(ConfigModel):
    """Who may call the API. Without tokens the server accepts loopback clients only."""

    tokens: list[TokenConfig] = Field(default_factory=list)

    @field_validator("tokens")
    @classmethod
    def _unique(cls, tokens: list[TokenConfig]) -> list[TokenConfig]:
        names = [t.name for t in tokens]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate token names: {', '.join(duplicates)}")
        return tokens


class LimitsConfig(ConfigModel):
    """Guards that keep one client from hurting the server; each breach names its limit.
    Zero means no limit."""

    max_request_body: ByteSize = 64 * 1024**2
    max_series_total: Count = 2_000_000
    max_series_per_tenant: Count = 0
    max_series_per_metric: Count = 0
    max_label_name_length: Count = 1024
    max_label_value_length: Count = 4096
    max_label_names_per_series: Count = 64
    max_samples_per_request: Count = 5_000_000


class Config(ConfigModel):
    """The whole ``signalroom.yml``."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    # Sections owned by later packages keep their raw shape here; each package validates
    # its own section when it is built (scrape/, rules/, alerting/, logs/, ...).
    scrape_configs: list[dict[str, Any]] = Field(default_factory=list)
    rule_files: list[str] = Field(default_factory=list)
    alerting: dict[str, Any] = Field(default_factory=dict)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    traces: TracesConfig = Field(default_factory=TracesConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    packs: list[str] = Field(default_factory=list)
    # Raw like scrape_configs: validated by their packages (see app.CONFIG_SECTIONS).
    sql_sources: list[dict[str, Any]] = Field(default_factory=list)
    finops: dict[str, Any] | None = None
    freshfoodz: dict[str, Any] | None = None
    recovery_objectives: list[dict[str, Any]] | None = None

    def digest(self) -> str:
        """A short hash of the effective configuration, shown in status and logs."""
        text = self.model_dump_json(by_alias=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- loading -----------------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Position = tuple[int, int]  # 1-based line and column
Path_ = tuple[str | int, ...]


class _Positions:
    """Where each key and value of a YAML document stands, by its path in the document."""

    def __init__(self) -> None:
        self.key: dict[Path_, Position] = {}
        self.value: dict[Path_, Position] = {}

    def nearest(self, path: Path_, *, prefer_key: bool = False) -> Position | None:
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            if end == len(path) and not prefer_key and prefix in self.value:
                return self.value[prefix]
            if prefix in self.key:
                return self.key[prefix]
        return None


def _mark(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _to_python(node: yaml.Node, path: Path_, positions: _Positions, env: Mapping[str, str]) -> Any:
    """Turn a composed YAML node into Python values, recording positions and expanding ${VAR}."""
    positions.value[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (
                yaml.safe_load(yaml.serialize(key_node))
                if key_node.tag != "tag:yaml.org,2002:str"
                else key_node.value
            )
            if key in result:
                line, column = _mark(key_node)
                raise ConfigError([f"{line}:{column}: duplicate key {key!r}"])
            positions.key[(*path, key)] = _mark(key_node)
            result[key] = _to_python(value_node, (*path, key), positions, env)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), positions, env) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str) and "$" in value:
        value = _expand_env(value, env, _mark(node))
    return value


def _expand_env(text: str, env: Mapping[str, str], where: Position) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            [
                f"{where[0]}:{where[1]}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}})"
            ]
        )

    return _ENV_RE.sub(substitute, text)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[str | int, ...]) -> Path_:
    # pydantic adds the names of union members and validators to loc; keep document keys only.
    return tuple(
        p for p in loc if isinstance(p, int) or not (p.startswith("function-") or "[" in p)
    )


SectionProblem = tuple[Path_, str]
"""A problem in one section: the path below the section's key, and the message."""
SectionValidator = Callable[[Any, Config, Path], list[SectionProblem]]
"""Validates a section that a package owns (``scrape_configs``, ``alerting``, ...): given the
raw section, the parsed configuration and the config file's directory, lists the problems."""


def parse_config(
    text: str,
    *,
    filename: str = "signalroom.yml",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, SectionValidator] | None = None,
) -> Config:
    """Parse and validate a configuration document; raise ``ConfigError`` naming file and line.

    ``sections`` validate the sections owned by other packages, with the same error form."""
    environment = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}"]) from None
    positions = _Positions()
    try:
        data = _to_python(node, (), positions, environment) if node is not None else {}
    except ConfigError as exc:
        raise ConfigError([f"{filename}:{p}" for p in exc.problems]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1:1: the configuration must be a mapping of sections"])
    directory = base_dir or Path(".")
    try:
        config = Config.model_validate(data, context={"base_dir": directory})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = _clean_loc(error["loc"])
            position = positions.nearest(loc, prefer_key=error["type"] == "extra_forbidden")
            where = f"{filename}:{position[0]}:{position[1]}" if position else filename
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r} (check its spelling and section)"
            problems.append(f"{where}: {_format_loc(loc) or '(top level)'}: {message}")
        raise ConfigError(problems) from None
    section_problems = []
    for key, validate in (sections or {}).items():
        if key not in data:
            continue
        for relative, message in validate(data[key], config, directory):
            path = (key, *relative)
            position = positions.nearest(path)
            where = f"{filename}:{position[0]}:{position[1]}" if position else filename
            section_problems.append(f"{where}: {_format_loc(path)}: {message}")
    if section_problems:
        raise ConfigError(section_problems)
    return config


def load_config(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, SectionValidator] | None = None,
) -> Config:
    """Load ``path``; raise ``ConfigError`` with every problem, each naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration: {exc.strerror}"]) from None
    return parse_config(text, filename=str(path), base_dir=path.parent, env=env, sections=sections)
