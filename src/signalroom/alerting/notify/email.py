"""E-mail receiver: SMTP with STARTTLS (or implicit TLS on 465) and auth; HTML and text parts.

Sending uses the standard library's ``smtplib`` in a worker thread, so a slow mail server
never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import EmailConfig
from signalroom.alerting.notify.base import Integration, NotifyError, read_secret
from signalroom.alerting.notify.templates import expand, render

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext

DEFAULT_SUBJECT = '{{ template "email.default.subject" . }}'


class EmailIntegration(Integration):
    name = "email"

    def __init__(self, config: EmailConfig, receiver: str, idx: int, external_url: str) -> None:
        super().__init__(receiver, idx, config.send_resolved, external_url)
        self.config = config

    def message(self, ctx: FlushContext, alerts: list[Alert]) -> EmailMessage:
        c = self.config
        data = self.data(ctx, alerts)
        msg = EmailMessage()
        headers = {"Subject": DEFAULT_SUBJECT, **c.headers}
        headers.setdefault("To", c.to)
        headers.setdefault("From", c.from_)
        for name, value in headers.items():
            msg[name] = expand(value, data)
        msg["Message-Id"] = f"<{uuid.uuid4().hex}@{c.hello or 'localhost'}>"
        msg["Date"] = formatdate(localtime=False)
        text = expand(c.text, data) if c.text else render("email.default.text", data)
        msg.set_content(text)
        if c.html:
            msg.add_alternative(expand(c.html, data), subtype="html")
        return msg

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        msg = self.message(ctx, alerts)
        await asyncio.to_thread(self._send, msg, self.timeout or 30.0)

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls_config or {}
        context = ssl.create_default_context(cafile=tls.get("ca_file") or None)
        if tls.get("insecure_skip_verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.get("cert_file") and tls.get("key_file"):
            context.load_cert_chain(tls["cert_file"], tls["key_file"])
        return context

    def _login(self, smtp: smtplib.SMTP, password: str) -> None:
        # One mechanism, chosen as Alertmanager chooses: CRAM-MD5 with a secret, else PLAIN,
        # else LOGIN. (smtplib's login() would try every mechanism in turn.)
        c = self.config
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        smtp.user, smtp.password = c.auth_username, password
        if "CRAM-MD5" in offered and c.auth_secret:
            smtp.password = c.auth_secret
            smtp.auth("CRAM-MD5", smtp.auth_cram_md5)
        elif "PLAIN" in offered:
            identity = c.auth_identity
            smtp.auth(
                "PLAIN",
                lambda challenge=None: f"{identity}\0{c.auth_username}\0{password}",
                initial_response_ok=True,
            )
        elif "LOGIN" in offered:
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        else:
            raise NotifyError(f"unknown auth mechanism: {' '.join(offered)}", retry=False)

    def _send(self, msg: EmailMessage, timeout: float) -> None:
        c = self.config
        host, _, port_text = c.smarthost.rpartition(":")
        host = host.strip("[]")
        port = int(port_text)
        tls = self.config.tls_config or {}
        server_name = tls.get("server_name") or host
        try:
            smtp: smtplib.SMTP
            if port == 465:
                smtp = smtplib.SMTP_SSL(
                    host,
                    port,
                    local_hostname=c.hello,
                    timeout=timeout,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(host, port, local_hostname=c.hello, timeout=timeout)
            with smtp:
                smtp.ehlo(c.hello)
                if port != 465:
                    if smtp.has_extn("starttls"):
                        context = self._tls_context()
                        smtp._host = server_name  # type: ignore[attr-defined]  # SNI / check
                        smtp.starttls(context=context)
                        smtp.ehlo(c.hello)
                    elif c.require_tls is not False:
                        raise NotifyError(
                            f"'require_tls' is true (default) but \"{c.smarthost}\" does not "
                            "advertise the STARTTLS extension",
                            retry=True,
                        )
                password = read_secret(c.auth_password, c.auth_password_file)
                if c.auth_username and smtp.has_extn("auth"):
                    self._login(smtp, password)
                to = [a.strip() for a in str(msg["To"]).split(",") if a.strip()]
                smtp.send_message(msg, from_addr=str(msg["From"]), to_addrs=to)
        except NotifyError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"smtp auth: {exc}", retry=False, reason="clientError") from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(
                f"smtp: {exc.smtp_code} {exc.smtp_error!r}",
                retry=exc.smtp_code >= 400 and exc.smtp_code < 500,
                reason="serverError" if exc.smtp_code < 500 else "clientError",
            ) from None
        except (TimeoutError, OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            raise NotifyError(f"smtp: {type(exc).__name__}: {exc}", retry=True) from None
