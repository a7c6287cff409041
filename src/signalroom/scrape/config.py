"""Prometheus ``scrape_configs``: models with Prometheus's defaults and validation messages.

A ``scrape_configs`` section pasted from a prometheus.yml validates here unchanged.
``parse_scrape_configs`` raises ``ScrapeConfigError`` whose problems each carry the path of
the key at fault (``("scrape_configs", 2, "relabel_configs", 0, "action")``) so the caller can
point at the line of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    field_validator,
    model_validator,
)

from signalroom.config import DurationMs, GlobalConfig
from signalroom.scrape.relabel import RelabelConfig, RelabelError
from signalroom.units import parse_bytes

ConfigPath = tuple[str | int, ...]

SCRAPE_PROTOCOL_HEADERS: dict[str, str] = {
    "PrometheusProto": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
}
DEFAULT_SCRAPE_PROTOCOLS = (
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
)
# file_sd accepts one '*' in the last path element and a JSON or YAML extension.
_FILE_SD_NAME = re.compile(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")


class ScrapeProblem(BaseModel):
    """One thing wrong in ``scrape_configs``: where (a path into the document) and what."""

    path: ConfigPath
    message: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"


class ScrapeConfigError(ValueError):
    """``scrape_configs`` is invalid; ``problems`` names each key at fault."""

    def __init__(self, problems: list[ScrapeProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def format_path(path: ConfigPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_one_of(data: Mapping[str, Any], a: str, b: str, message: str) -> None:
    if data.get(a) not in (None, "") and data.get(b) not in (None, ""):
        raise ValueError(message)


class BasicAuth(_Model):
    """``basic_auth``: username (or username_file) and password (or password_file)."""

    username: str = ""
    username_file: str | None = None
    password: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BasicAuth:
        _check_one_of(
            self.__dict__,
            "username",
            "username_file",
            "at most one of basic_auth username & username_file must be configured",
        )
        _check_one_of(
            self.__dict__,
            "password",
            "password_file",
            "at most one of basic_auth password & password_file must be configured",
        )
        return self


class Authorization(_Model):
    """``authorization``: a header ``Authorization: <type> <credentials>``."""

    type: str = "Bearer"
    credentials: str | None = None
    credentials_file: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Authorization:
        if self.type.strip().lower() == "basic":
            raise ValueError(
                'authorization type cannot be set to "basic", use "basic_auth" instead'
            )
        _check_one_of(
            self.__dict__,
            "credentials",
            "credentials_file",
            "at most one of authorization credentials & credentials_file must be configured",
        )
        return self


class TLSConfig(_Model):
    """``tls_config``: CA, client certificate and key (inline or files), server name, verify."""

    ca: str | None = None
    ca_file: str | None = None
    cert: str | None = None
    cert_file: str | None = None
    key: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None

    @model_validator(mode="after")
    def _valid(self) -> TLSConfig:
        d = self.__dict__
        _check_one_of(d, "ca", "ca_file", "at most one of ca and ca_file must be configured")
        _check_one_of(
            d, "cert", "cert_file", "at most one of cert and cert_file must be configured"
        )
        _check_one_of(d, "key", "key_file", "at most one of key and key_file must be configured")
        has_cert = bool(self.cert or self.cert_file)
        has_key = bool(self.key or self.key_file)
        if has_cert and not has_key:
            raise ValueError(
                "exactly one of key or key_file must be configured when a client "
                "certificate is configured"
            )
        if has_key and not has_cert:
            raise ValueError(
                "exactly one of cert or cert_file must be configured when a client "
                "key is configured"
            )
        return self


class StaticConfig(_Model):
    """One target group of ``static_configs``."""

    targets: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("targets")
    @classmethod
    def _hostnames(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if "/" in target:
                raise ValueError(f'"{target}" is not a valid hostname')
        return targets

    @field_validator("labels", mode="before")
    @classmethod
    def _label_values(cls, labels: Any) -> Any:
        if isinstance(labels, Mapping):
            return {k: (v if isinstance(v, str) else str(v)) for k, v in labels.items()}
        return labels


class FileSDConfig(_Model):
    """``file_sd_configs``: JSON or YAML files of target groups, re-read when they change."""

    files: list[str]
    refresh_interval: DurationMs = 300_000

    @field_validator("files")
    @classmethod
    def _patterns(cls, files: list[str]) -> list[str]:
        if not files:
            raise ValueError("file service discovery config must contain at least one path name")
        for name in files:
            if not _FILE_SD_NAME.match(name):
                raise ValueError(f'path name "{name}" is not valid for file discovery')
        return files


def _relabel_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list of relabel configs")
    out = []
    for item in value:
        if isinstance(item, RelabelConfig):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValueError("each relabel config must be a mapping")
        out.append(RelabelConfig.from_dict(item))
    return out


class ScrapeConfig(_Model):
    """One ``scrape_configs`` entry, with Prometheus's defaults filled in.

    ``scrape_interval`` and ``scrape_timeout`` are milliseconds; unset ones take the global
    values (a timeout longer than the job's interval is cut to the interval, as Prometheus).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    job_name: str
    honor_labels: bool = False
    honor_timestamps: bool = True
    track_timestamps_staleness: bool = False
    params: dict[str, list[str]] = Field(default_factory=dict)
    scrape_interval: DurationMs = 0
    scrape_timeout: DurationMs = 0
    scrape_protocols: list[str] = Field(default_factory=lambda: list(DEFAULT_SCRAPE_PROTOCOLS))
    fallback_scrape_protocol: str | None = None
    scrape_classic_histograms: bool = False
    always_scrape_classic_histograms: bool = False
    convert_classic_histograms_to_nhcb: bool = False
    scrape_native_histograms: bool | None = None
    metric_name_validation_scheme: Literal["", "utf8", "legacy"] = ""
    metric_name_escaping_scheme: Literal["", "allow-utf-8", "underscores", "dots", "values"] = ""
    metrics_path: str = "/metrics"
    scheme: str = "http"
    enable_compression: bool = True
    body_size_limit: int = 0
    sample_limit: int = Field(default=0, ge=0)
    target_limit: int = Field(default=0, ge=0)
    label_limit: int = Field(default=0, ge=0)
    label_name_length_limit: int = Field(default=0, ge=0)
    label_value_length_limit: int = Field(default=0, ge=0)
    keep_dropped_targets: int = Field(default=0, ge=0)
    # HTTP client
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    tls_config: TLSConfig = Field(default_factory=TLSConfig)
    proxy_url: str | None = None
    no_proxy: str | None = None
    proxy_from_environment: bool = False
    follow_redirects: bool = True
    enable_http2: bool = True
    http_headers: dict[str, Any] | None = None
    # targets
    static_configs: list[StaticConfig] = Field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = Field(default_factory=list)
    relabel_configs: list[InstanceOf[RelabelConfig]] = Field(default_factory=list)
    metric_relabel_configs: list[InstanceOf[RelabelConfig]] = Field(default_factory=list)

    @field_validator("relabel_configs", "metric_relabel_configs", mode="before")
    @classmethod
    def _relabel(cls, value: Any) -> Any:
        return _relabel_list(value)

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str) -> str:
        if value == "":
            raise ValueError("job_name is empty")
        return value

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value not in ("http", "https"):
            raise ValueError(f'scheme must be "http" or "https", got "{value}"')
        return value

    @field_validator("metrics_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @field_validator("body_size_limit", mode="before")
    @classmethod
    def _body_size(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_bytes(value)
        return value

    @field_validator("scrape_protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("scrape_protocols cannot be empty")
        seen: set[str] = set()
        for proto in value:
            _check_protocol(proto)
            if proto in seen:
                raise ValueError(f"duplicated protocol in scrape_protocols, got {value}")
            seen.add(proto)
        return value

    @field_validator("fallback_scrape_protocol")
    @classmethod
    def _fallback(cls, value: str | None) -> str | None:
        if value:
            _check_protocol(value)
        return value or None

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: ([v] if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _auth(self) -> ScrapeConfig:
        check_http_auth(
            self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization
        )
        return self

    @property
    def accept_header(self) -> str:
        """The ``Accept`` header Prometheus sends for these ``scrape_protocols``."""
        escaping = self.metric_name_escaping_scheme or (
            "underscores" if self.metric_name_validation_scheme == "legacy" else "allow-utf-8"
        )
        values = []
        weight = len(SCRAPE_PROTOCOL_HEADERS) + 1
        for proto in self.scrape_protocols:
            if proto == "PrometheusProto":
                continue  # signalroom reads the text formats only; the target picks another
            value = SCRAPE_PROTOCOL_HEADERS[proto]
            if proto in ("PrometheusText1.0.0", "OpenMetricsText1.0.0"):
                value += f";escaping={escaping}"
            values.append(f"{value};q=0.{weight}")
            weight -= 1
        values.append(f"*/*;q=0.{weight}")
        return ",".join(values)


def _check_protocol(proto: str) -> None:
    if proto not in SCRAPE_PROTOCOL_HEADERS:
        supported = ", ".join(sorted(SCRAPE_PROTOCOL_HEADERS))
        raise ValueError(f"unknown scrape protocol {proto}, supported: [{supported}]")


_UNSUPPORTED = {
    "oauth2": "oauth2 is not supported by signalroom yet",
}


def check_http_auth(
    bearer_token: str | None, bearer_token_file: str | None, basic_auth: Any, authorization: Any
) -> None:
    """Prometheus' rules for combining the auth options of an HTTP client config."""
    if bearer_token and bearer_token_file:
        raise ValueError("at most one of bearer_token & bearer_token_file must be configured")
    bearer = bool(bearer_token or bearer_token_file)
    if basic_auth is not None and bearer:
        raise ValueError(
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
        )
    if authorization is not None and (bearer or basic_auth is not None):
        raise ValueError(
            "authorization is not compatible with bearer_token & "
            "bearer_token_file, and at most one of basic_auth, oauth2 & "
            "authorization must be configured"
        )


def parse_scrape_configs(
    raw: Sequence[Mapping[str, Any]],
    global_cfg: GlobalConfig,
    *,
    base_dir: Path | None = None,
    section: str = "scrape_configs",
) -> list[ScrapeConfig]:
    """Validate a raw ``scrape_configs`` list; fill in the global defaults.

    Relative file names (``*_file``, ``file_sd_configs.files``) resolve against ``base_dir``,
    the directory of the configuration file. Raises ``ScrapeConfigError`` with every problem.
    """
    problems: list[ScrapeProblem] = []
    configs: list[ScrapeConfig] = []
    seen_jobs: dict[str, int] = {}
    for index, item in enumerate(raw):
        where: ConfigPath = (section, index)
        if not isinstance(item, Mapping):
            problems.append(ScrapeProblem(path=where, message="must be a mapping"))
            continue
        data = dict(item)
        if "job_name" not in data:
            problems.append(ScrapeProblem(path=where, message="job_name is empty"))
            continue
        for key, message in _UNSUPPORTED.items():
            if key in data:
                problems.append(ScrapeProblem(path=(*where, key), message=message))
        for key in list(data):
            if key.endswith("_sd_configs") and key not in ("file_sd_configs",):
                problems.append(
                    ScrapeProblem(
                        path=(*where, key),
                        message=f"{key} is not supported by signalroom (use static_configs or "
                        "file_sd_configs)",
                    )
                )
        if any(p.path[: len(where)] == where for p in problems):
            continue
        relabel_problem = _relabel_problems(data, where)
        if relabel_problem:
            problems.extend(relabel_problem)
            continue
        try:
            cfg = ScrapeConfig.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = tuple(p for p in error["loc"] if isinstance(p, int) or not _is_meta(p))
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = f"field {loc[-1]} not found in type config.ScrapeConfig"
                    if len(loc) > 1:
                        message = f"unknown key {loc[-1]!r}"
                elif error["type"] == "missing":
                    message = f"{loc[-1]} is required"
                problems.append(ScrapeProblem(path=(*where, *loc), message=message))
            continue
        cfg = _with_defaults(cfg, global_cfg, base_dir)
        if cfg.scrape_timeout > cfg.scrape_interval:
            problems.append(
                ScrapeProblem(
                    path=(*where, "scrape_timeout"),
                    message="scrape timeout greater than scrape interval for scrape config with "
                    f'job name "{cfg.job_name}"',
                )
            )
            continue
        if cfg.job_name in seen_jobs:
            problems.append(
                ScrapeProblem(
                    path=(*where, "job_name"),
                    message=f'found multiple scrape configs with job name "{cfg.job_name}"',
                )
            )
            continue
        seen_jobs[cfg.job_name] = index
        configs.append(cfg)
    if problems:
        raise ScrapeConfigError(problems)
    return configs


def _is_meta(part: str) -> bool:
    # pydantic puts validator and union-member names into loc; keep document keys only.
    return part.startswith("function-") or "[" in part


def _relabel_problems(data: Mapping[str, Any], where: ConfigPath) -> list[ScrapeProblem]:
    problems = []
    for key in ("relabel_configs", "metric_relabel_configs"):
        items = data.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                problems.append(ScrapeProblem(path=(*where, key, i), message="must be a mapping"))
                continue
            try:
                RelabelConfig.from_dict(item)
            except RelabelError as exc:
                problems.append(
                    ScrapeProblem(
                        path=(*where, key, i, _relabel_key(item, str(exc))), message=str(exc)
                    )
                )
    return problems


def _relabel_key(item: Mapping[str, Any], message: str) -> str:
    """The key of a relabel config that a validation message is most about."""
    for key in ("action", "regex", "modulus", "target_label", "replacement", "source_labels"):
        if key in message and key in item:
            return key
    if "regexp" in message:
        return "regex"
    if "action" in message or "requires only" in message:
        return "action"
    return "action" if "action" in item else next(iter(item), "action")


def _with_defaults(
    cfg: ScrapeConfig, global_cfg: GlobalConfig, base_dir: Path | None
) -> ScrapeConfig:
    updates: dict[str, Any] = {}
    interval = cfg.scrape_interval or global_cfg.scrape_interval
    updates["scrape_interval"] = interval
    if cfg.scrape_timeout == 0:
        updates["scrape_timeout"] = min(global_cfg.scrape_timeout, interval)
    if base_dir is not None:

        def resolve(name: str | None) -> str | None:
            return None if name is None else str(base_dir / name)

        if cfg.bearer_token_file:
            updates["bearer_token_file"] = resolve(cfg.bearer_token_file)
        if cfg.basic_auth is not None:
            updates["basic_auth"] = cfg.basic_auth.model_copy(
                update={
                    "password_file": resolve(cfg.basic_auth.password_file),
                    "username_file": resolve(cfg.basic_auth.username_file),
                }
            )
        if cfg.authorization is not None and cfg.authorization.credentials_file:
            updates["authorization"] = cfg.authorization.model_copy(
                update={"credentials_file": resolve(cfg.authorization.credentials_file)}
            )
        tls = cfg.tls_config
        updates["tls_config"] = tls.model_copy(
            update={
                "ca_file": resolve(tls.ca_file),
                "cert_file": resolve(tls.cert_file),
                "key_file": resolve(tls.key_file),
            }
        )
        updates["file_sd_configs"] = [
            sd.model_copy(update={"files": [str(base_dir / f) for f in sd.files]})
            for sd in cfg.file_sd_configs
        ]
    return cfg.model_copy(update=updates)


def default_self_scrape_config(address: str, *, job_name: str = "signalroom") -> dict[str, Any]:
    """The raw scrape config for signalroom's own ``/metrics`` at ``address`` (HOST:PORT)."""
    host = address
    if host.startswith("0.0.0.0:"):
        host = "127.0.0.1:" + host.split(":", 1)[1]
    return {"job_name": job_name, "static_configs": [{"targets": [host]}]}
