"""Syslog receivers: RFC 5424 and RFC 3164 messages over UDP and TCP.

TCP accepts octet-counted frames (RFC 6587 ``<len> <msg>``) and newline- or NUL-terminated
messages (what Python's ``SysLogHandler`` and most daemons send). Messages are batched for a
short moment and written through the same pipeline and WAL as every other receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from signalroom.logs.config import SyslogConfig
from signalroom.logs.pipeline import EntryBatch, parse_timestamp

if TYPE_CHECKING:
    from signalroom.logs.service import LogService

__all__ = ["SyslogMessage", "SyslogServer", "messages_to_batch", "parse_syslog"]

log = logging.getLogger(__name__)

SEVERITIES = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
_LEVEL = {"emerg": "critical", "alert": "critical", "crit": "critical", "error": "error",
          "warning": "warn", "notice": "info", "info": "info", "debug": "debug"}  # fmt: skip
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
              "authpriv", "ftp", "ntp", "security", "console", "solaris-cron", "local0",
              "local1", "local2", "local3", "local4", "local5", "local6", "local7")  # fmt: skip
_RFC5424 = re.compile(
    r"^1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$",
    re.DOTALL,
)
_RFC3164 = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (?P<host>\S+) "
    r"(?P<tag>[^:\[\s]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)$",
    re.DOTALL,
)
_SD_ELEMENT = re.compile(r'\[([^\s\]]+)((?:\s+[^=\s]+="(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(r'([^=\s]+)="((?:[^"\\]|\\.)*)"')


@dataclass
class SyslogMessage:
    timestamp_ns: int
    facility: str
    severity: str
    host: str
    app: str
    message: str
    metadata: dict[str, str]


def parse_syslog(data: bytes, received_ns: int | None = None) -> SyslogMessage:
    """Parse one message (RFC 5424, RFC 3164, or a bare ``<PRI>text``). Never raises: a
    message without a valid ``<PRI>`` is kept whole as a ``user.notice`` line."""
    now = time.time_ns() if received_ns is None else received_ns
    text = data.decode("utf-8", "replace").rstrip("\x00\r\n").removeprefix("\ufeff")
    match = re.match(r"^<(\d{1,3})>", text)
    if not match or int(match.group(1)) > 191:
        return SyslogMessage(now, "user", "notice", "", "", text, {})
    pri = int(match.group(1))
    facility = FACILITIES[pri >> 3] if (pri >> 3) < len(FACILITIES) else str(pri >> 3)
    severity = SEVERITIES[pri & 7]
    rest = text[match.end() :]
    metadata: dict[str, str] = {}
    full = _RFC5424.match(rest)
    if full:
        timestamp = now
        if full.group("ts") != "-":
            with contextlib.suppress(ValueError):
                timestamp = parse_timestamp(full.group("ts"))
        for name in ("pid", "msgid"):
            if full.group(name) != "-":
                metadata[name] = full.group(name)
        if full.group("sd") != "-":
            for element in _SD_ELEMENT.finditer(full.group("sd")):
                for key, value in _SD_PARAM.findall(element.group(2)):
                    metadata[f"{element.group(1)}.{key}"] = value.replace('\\"', '"')
        message = (full.group("msg") or "").removeprefix("\ufeff")
        host = "" if full.group("host") == "-" else full.group("host")
        app = "" if full.group("app") == "-" else full.group("app")
        return SyslogMessage(timestamp, facility, severity, host, app, message, metadata)
    legacy = _RFC3164.match(rest)
    if legacy:
        timestamp = _bsd_time(legacy.group("ts"), now)
        if legacy.group("pid"):
            metadata["pid"] = legacy.group("pid")
        return SyslogMessage(
            timestamp, facility, severity, legacy.group("host"), legacy.group("tag"),
            legacy.group("msg"), metadata,
        )  # fmt: skip
    # A bare "<PRI>message" (Python's SysLogHandler): "tag: message" if it looks like one.
    tagged = re.match(r"^([A-Za-z0-9_.\-/]{1,48})(?:\[(\d+)\])?: (.*)$", rest, re.DOTALL)
    if tagged:
        if tagged.group(2):
            metadata["pid"] = tagged.group(2)
        return SyslogMessage(
            now, facility, severity, "", tagged.group(1), tagged.group(3), metadata
        )
    return SyslogMessage(now, facility, severity, "", "", rest, metadata)


def _bsd_time(text: str, now_ns: int) -> int:
    now = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    try:
        parsed = datetime.strptime(f"{now.year} {text}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return now_ns
    if parsed.timestamp() - now.timestamp() > 86400:  # December's message read in January
        parsed = parsed.replace(year=now.year - 1)
    return int(parsed.timestamp()) * 10**9


def messages_to_batch(messages: Sequence[SyslogMessage]) -> EntryBatch:
    stream_of: dict[tuple[str, str, str], int] = {}
    streams: list[dict[str, str]] = []
    index = np.empty(len(messages), np.int64)
    for i, message in enumerate(messages):
        level = _LEVEL[message.severity]
        key = (message.app, message.host, level)
        position = stream_of.get(key)
        if position is None:
            position = stream_of[key] = len(streams)
            labels = {"service": message.app or "syslog", "level": level, "job": "syslog"}
            if message.host:
                labels["host"] = message.host
            streams.append(labels)
        index[i] = position
    metadata: list[str | None] = [
        json.dumps(
            {"facility": m.facility, "severity": m.severity, **m.metadata},
            sort_keys=True,
            separators=(",", ":"),
        )
        for m in messages
    ]
    stamps = np.asarray([m.timestamp_ns for m in messages], np.int64)
    return EntryBatch(streams, index, stamps, [m.message for m in messages], metadata=metadata)


def _split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.received(data)


class SyslogServer:
    """UDP and TCP syslog listeners feeding one batching writer."""

    def __init__(
        self, service: LogService, config: SyslogConfig, *, tenant: str = "default"
    ) -> None:
        self.service = service
        self.config = config
        self.tenant = tenant
        self.addresses: dict[str, tuple[str, int]] = {}
        self._pending: list[SyslogMessage] = []
        self._wake = asyncio.Event()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = asyncio.create_task(self._write_loop(), name="syslog-writer")
        if self.config.udp:
            host, port = _split_address(self.config.udp)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(host, port)
            )
            self._udp = transport
            self.addresses["udp"] = transport.get_extra_info("sockname")[:2]
        if self.config.tcp:
            host, port = _split_address(self.config.tcp)
            self._tcp = await asyncio.start_server(self._handle_tcp, host, port)
            self.addresses["tcp"] = self._tcp.sockets[0].getsockname()[:2]
        log.info("syslog receivers listening", extra={"addresses": self.addresses})

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._flush()

    def received(self, data: bytes) -> None:
        if len(data) > self.config.max_message_bytes:
            data = data[: self.config.max_message_bytes]
        self._pending.append(parse_syslog(data))
        if len(self._pending) >= 1000:
            self._wake.set()

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        limit = self.config.max_message_bytes
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                buffer = self._frames(buffer, limit)
            if buffer.strip(b"\x00\r\n "):
                self.received(buffer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _frames(self, buffer: bytes, limit: int) -> bytes:
        while buffer:
            counted = re.match(rb"^(\d{1,7}) ", buffer)
            if counted:
                size = int(counted.group(1))
                end = counted.end() + size
                if len(buffer) < end:
                    return buffer
                self.received(buffer[counted.end() : end])
                buffer = buffer[end:].lstrip(b"\n")
                continue
            cut = min((p for p in (buffer.find(b"\n"), buffer.find(b"\x00")) if p >= 0), default=-1)
            if cut < 0:
                if len(buffer) > limit:
                    self.received(buffer)
                    return b""
                return buffer
            if buffer[:cut].strip():
                self.received(buffer[:cut])
            buffer = buffer[cut + 1 :]
        return buffer

    async def _write_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
            self._wake.clear()
            try:
                await self._flush()
            except Exception:
                log.exception("syslog batch could not be stored")

    async def _flush(self) -> None:
        if not self._pending:
            return
        messages, self._pending = self._pending, []
        await self.service.ingest(self.tenant, messages_to_batch(messages), "syslog")
