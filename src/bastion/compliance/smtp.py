"""Sending one e-mail over SMTP (``smtplib``) and keeping the server's answer as the receipt.

Only threat-to-life escalations send e-mail. The message is plain text with the evidence package attached as JSON;
the receipt is the server's reply to the end of DATA (``250 ... queued as ...``), which is what a mail operator can
trace. Any refusal or connection failure raises :class:`SmtpFailed` for the caller's retry logic.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from typing import Any

from bastion.errors import BastionError
from bastion.settings import Settings

TIMEOUT_SECONDS = 10.0


class SmtpFailed(BastionError):
    code = "smtp_failed"
    http_status = 502


def build_message(
    settings: Settings,
    to: str,
    subject: str,
    body: str,
    attachment: dict[str, Any] | None = None,
    filename: str = "evidence.json",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or "bastion.localhost")
    msg.set_content(body)
    if attachment is not None:
        data = json.dumps(attachment, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
        msg.add_attachment(data, maintype="application", subtype="json", filename=filename)
    return msg


def send(settings: Settings, msg: EmailMessage) -> str:
    """Send ``msg`` through ``settings.smtp_host``; the server's final reply as the receipt. SmtpFailed otherwise."""
    if not settings.smtp_host:
        raise SmtpFailed("no SMTP server is configured (BASTION_SMTP_HOST)", code="smtp_not_configured")
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
            smtp.ehlo()
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            sender = str(msg["From"])
            recipients = [str(msg["To"])]
            code, reply = smtp.mail(sender)
            if code != 250:
                raise SmtpFailed(f"MAIL FROM refused: {code} {reply.decode(errors='replace')}")
            for rcpt in recipients:
                code, reply = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    raise SmtpFailed(f"RCPT TO {rcpt} refused: {code} {reply.decode(errors='replace')}")
            code, reply = smtp.data(
                msg.as_bytes(policy=SMTP_POLICY)
            )  # CRLF line ends: smtplib leaves bytes as they are
            if code != 250:
                raise SmtpFailed(f"DATA refused: {code} {reply.decode(errors='replace')}")
            return f"{code} {reply.decode(errors='replace')}"[:500]
    except SmtpFailed:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise SmtpFailed(f"SMTP delivery failed: {type(exc).__name__}: {exc}"[:500]) from None
