"""Listen addresses (``HOST:PORT``) and whether they are reachable from outside the machine."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["ListenAddress", "parse_listen"]


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """Parse ``HOST:PORT`` (``[::1]:8290`` for IPv6); an empty host means all interfaces."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if match is None:
        raise ValueError(f"listen address {text!r} must look like HOST:PORT, e.g. 127.0.0.1:8290")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return ListenAddress(host, port)
