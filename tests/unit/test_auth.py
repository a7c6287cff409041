import base64

import pytest

from signalroom.auth import ANONYMOUS, Authenticator, AuthError, hash_token, new_token
from signalroom.config import AuthConfig, TokenConfig

pytestmark = pytest.mark.unit


def authenticator(*tokens: tuple[str, str, list[str], list[str] | None]) -> Authenticator:
    return Authenticator(
        AuthConfig(
            tokens=[
                TokenConfig(name=n, sha256=hash_token(t), scopes=s, tenants=ten)  # type: ignore[arg-type]
                for n, t, s, ten in tokens
            ]
        )
    )


def test_no_tokens_means_anonymous_with_every_scope() -> None:
    auth = Authenticator(AuthConfig())
    assert not auth.enabled
    assert auth.authenticate(None) is ANONYMOUS
    Authenticator.check(ANONYMOUS, "admin", "any-tenant", "POST /-/reload")


def test_bearer_and_basic() -> None:
    token = new_token()
    auth = authenticator(("grafana", token, ["read"], None))
    assert auth.authenticate(f"Bearer {token}").name == "grafana"
    basic = base64.b64encode(f"anything:{token}".encode()).decode()
    assert auth.authenticate(f"Basic {basic}").name == "grafana"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Token abc", "Basic !!!"])
def test_missing_or_wrong_credentials_are_401(header: str | None) -> None:
    auth = authenticator(("grafana", new_token(), ["read"], None))
    with pytest.raises(AuthError) as info:
        auth.authenticate(header)
    assert info.value.status == 401


def test_scopes_and_admin_implies_all() -> None:
    reader, writer, admin = new_token(), new_token(), new_token()
    auth = authenticator(
        ("r", reader, ["read"], None), ("w", writer, ["write"], None), ("a", admin, ["admin"], None)
    )
    read_only = auth.authenticate(f"Bearer {reader}")
    with pytest.raises(AuthError) as info:
        Authenticator.check(read_only, "write", "default", "POST /api/v1/write")
    assert info.value.status == 403
    assert info.value.message == "token 'r' lacks scope 'write' needed for POST /api/v1/write"
    Authenticator.check(auth.authenticate(f"Bearer {writer}"), "write", "default", "x")
    with pytest.raises(AuthError):
        Authenticator.check(auth.authenticate(f"Bearer {writer}"), "read", "default", "x")
    for scope in ("read", "write", "admin"):
        Authenticator.check(auth.authenticate(f"Bearer {admin}"), scope, "default", "x")  # type: ignore[arg-type]


def test_tenant_restriction() -> None:
    token = new_token()
    auth = authenticator(("shop", token, ["read"], ["shop"]))
    principal = auth.authenticate(f"Bearer {token}")
    Authenticator.check(principal, "read", "shop", "x")
    with pytest.raises(AuthError, match="may not act for tenant 'crm'"):
        Authenticator.check(principal, "read", "crm", "x")


def test_tokens_are_random_and_hash_is_sha256() -> None:
    assert new_token() != new_token()
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_exposure_guard_covers_the_otlp_grpc_listener() -> None:
    from signalroom.app import StartupError, check_exposure
    from signalroom.config import Config
    from signalroom.listen import parse_listen

    loopback = parse_listen("127.0.0.1:8290")
    open_grpc = Config.model_validate({"traces": {"otlp_grpc": {"listen": "0.0.0.0:4317"}}})
    with pytest.raises(StartupError, match=r"traces\.otlp_grpc\.listen 0\.0\.0\.0:4317"):
        check_exposure(loopback, open_grpc)
    off = Config.model_validate(
        {"traces": {"otlp_grpc": {"listen": "0.0.0.0:4317", "enabled": False}}}
    )
    check_exposure(loopback, off)
    with pytest.raises(StartupError, match=r"refusing to listen on 0\.0\.0\.0:8290"):
        check_exposure(parse_listen("0.0.0.0:8290"), Config())
