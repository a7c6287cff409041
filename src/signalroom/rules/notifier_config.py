"""Where rule alerts go besides signalroom's own alert manager: prometheus.yml's ``alerting:``
keys ``alertmanagers`` and ``alert_relabel_configs``, validated as Prometheus validates them.

In signalroom.yml the ``alerting:`` section is also the Alertmanager configuration (route,
receivers, ...); these two keys are reserved there (``DELIVERY_KEYS``) so a prometheus.yml
``alerting:`` block can be pasted in unchanged. ``parse_delivery_config`` reads only them and
raises ``DeliveryConfigError`` whose problems each carry the path of the key at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from signalroom.config import DurationMs
from signalroom.scrape.config import (
    Authorization,
    BasicAuth,
    FileSDConfig,
    StaticConfig,
    TLSConfig,
    check_http_auth,
)
from signalroom.scrape.relabel import RelabelConfig, RelabelError

#: Keys of the ``alerting:`` section that configure delivery to external Alertmanagers.
DELIVERY_KEYS = frozenset({"alertmanagers", "alert_relabel_configs"})
#: The Alertmanager API versions Prometheus 3 speaks.
SUPPORTED_API_VERSIONS = ("v2",)

ConfigPath = tuple[str | int, ...]


class DeliveryConfigError(ValueError):
    """``alerting.alertmanagers`` or ``alerting.alert_relabel_configs`` is invalid."""

    def __init__(self, problems: list[tuple[ConfigPath, str]]) -> None:
        self.problems = problems
        super().__init__(
            "\n".join(f"{'.'.join(str(p) for p in path)}: {msg}" for path, msg in problems)
        )


def _relabel_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list of relabel configs")
    out = []
    for item in value:
        if isinstance(item, RelabelConfig):
            out.append(item)
        elif item is None:
            raise ValueError("empty or null relabeling rule")
        elif not isinstance(item, Mapping):
            raise ValueError("each relabel config must be a mapping")
        else:
            try:
                out.append(RelabelConfig.from_dict(item))
            except RelabelError as exc:
                raise ValueError(str(exc)) from None
    return out


class AlertmanagerEndpointConfig(BaseModel):
    """One entry of ``alerting.alertmanagers`` (Prometheus's ``alertmanager_config``):
    how to find a set of Alertmanagers and how to talk to them. ``timeout`` is ms."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    scheme: Literal["http", "https"] = "http"
    path_prefix: str = ""
    timeout: DurationMs = 10_000
    api_version: str = "v2"
    # HTTP client
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    tls_config: TLSConfig = Field(default_factory=TLSConfig)
    proxy_url: str | None = None
    no_proxy: str | None = None
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, Any] | None = None
    follow_redirects: bool = True
    enable_http2: bool = True
    http_headers: dict[str, Any] | None = None
    # discovery and relabelling
    static_configs: list[StaticConfig] = Field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = Field(default_factory=list)
    relabel_configs: list[InstanceOf[RelabelConfig]] = Field(default_factory=list)
    alert_relabel_configs: list[InstanceOf[RelabelConfig]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                key = str(key)
                if key.endswith("_sd_configs") and key != "file_sd_configs":
                    raise ValueError(
                        f"{key} is not supported: signalroom finds Alertmanagers through "
                        "static_configs and file_sd_configs"
                    )
                if key in ("oauth2", "sigv4"):
                    raise ValueError(f"{key} is not supported for Alertmanagers yet")
        return data

    @field_validator("relabel_configs", "alert_relabel_configs", mode="before")
    @classmethod
    def _relabel(cls, value: Any) -> Any:
        return _relabel_list(value)

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value not in SUPPORTED_API_VERSIONS:
            versions = "[" + " ".join(SUPPORTED_API_VERSIONS) + "]"
            raise ValueError(
                f"expected Alertmanager api version to be one of {versions} but got {value}"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("timeout must be greater than zero")
        return value

    @field_validator("http_headers")
    @classmethod
    def _headers(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in value or {}:
            if name.lower() == "authorization":
                raise ValueError(
                    "authorization header must be changed via the basic_auth or "
                    "authorization parameter"
                )
        return value

    @model_validator(mode="after")
    def _auth(self) -> AlertmanagerEndpointConfig:
        check_http_auth(
            self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization
        )
        return self


class DeliveryConfig(BaseModel):
    """Delivery of rule alerts to external Alertmanagers (prometheus.yml's ``alerting:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    alertmanagers: list[AlertmanagerEndpointConfig] = Field(default_factory=list)
    alert_relabel_configs: list[InstanceOf[RelabelConfig]] = Field(default_factory=list)

    @field_validator("alert_relabel_configs", mode="before")
    @classmethod
    def _relabel(cls, value: Any) -> Any:
        return _relabel_list(value)

    @field_validator("alertmanagers", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list) and any(item is None for item in value):
            raise ValueError("empty or null Alertmanager config")
        return value


def _resolve(data: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative file names in one ``alertmanagers`` entry, made relative to the config file's
    directory (Prometheus's SetDirectory)."""

    def under(name: Any) -> Any:
        if isinstance(name, str) and name and not Path(name).is_absolute():
            return str(base_dir / name)
        return name

    out = dict(data)
    if isinstance(out.get("bearer_token_file"), str):
        out["bearer_token_file"] = under(out["bearer_token_file"])
    for block, keys in (
        ("basic_auth", ("username_file", "password_file")),
        ("authorization", ("credentials_file",)),
        ("tls_config", ("ca_file", "cert_file", "key_file")),
    ):
        if isinstance(out.get(block), Mapping):
            inner = dict(out[block])
            for key in keys:
                if key in inner:
                    inner[key] = under(inner[key])
            out[block] = inner
    if isinstance(out.get("file_sd_configs"), list):
        out["file_sd_configs"] = [
            {**sd, "files": [under(f) for f in sd["files"]]}
            if isinstance(sd, Mapping) and isinstance(sd.get("files"), list)
            else sd
            for sd in out["file_sd_configs"]
        ]
    return out


def parse_delivery_config(
    section: Mapping[str, Any] | None, *, base_dir: Path | None = None
) -> DeliveryConfig:
    """The delivery keys of an ``alerting:`` section (every other key is ignored: it is the
    Alertmanager configuration). Raises ``DeliveryConfigError``."""
    data = {k: v for k, v in (section or {}).items() if k in DELIVERY_KEYS}
    if base_dir is not None and isinstance(data.get("alertmanagers"), list):
        data["alertmanagers"] = [
            _resolve(entry, base_dir) if isinstance(entry, Mapping) else entry
            for entry in data["alertmanagers"]
        ]
    try:
        return DeliveryConfig.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[ConfigPath, str]] = []
        for error in exc.errors(include_url=False):
            # Drop pydantic's union/function markers such as "function-after[...]".
            path = tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in p)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"field {path[-1]} not found in type config.AlertmanagerConfig"
            problems.append((path, message))
        raise DeliveryConfigError(problems) from None


def validate_delivery_section(raw: Any, config: Any, base_dir: Path) -> list[tuple[Any, str]]:
    """The problems of ``alerting.alertmanagers`` and ``alerting.alert_relabel_configs``, in
    the shape of ``signalroom.config.SectionValidator`` (paths below ``alerting``)."""
    if not isinstance(raw, Mapping):
        return []
    try:
        parse_delivery_config(raw, base_dir=base_dir)
    except DeliveryConfigError as exc:
        return list(exc.problems)
    return []


def without_delivery_keys(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``alerting:`` section less the delivery keys: what the Alertmanager model sees."""
    return {k: v for k, v in (section or {}).items() if k not in DELIVERY_KEYS}


__all__ = [
    "DELIVERY_KEYS",
    "SUPPORTED_API_VERSIONS",
    "AlertmanagerEndpointConfig",
    "DeliveryConfig",
    "DeliveryConfigError",
    "parse_delivery_config",
    "validate_delivery_section",
    "without_delivery_keys",
]
