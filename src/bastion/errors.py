"""Bastion's error hierarchy.

Every error a user can cause carries a stable machine-readable ``code`` (never renamed: API clients and scripts
match on it), an HTTP status for the API, and an exit code for the CLI. Messages are for people and may change.
"""

from __future__ import annotations

from typing import Any


class BastionError(Exception):
    """Base of every error Bastion reports to a user."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(BastionError):
    """The caller sent something malformed (a bad hash, label, file format...)."""

    code = "invalid_input"
    http_status = 400
    exit_code = 2


class InvalidSignal(InvalidInput):
    code = "invalid_signal"


class InvalidLabel(InvalidInput):
    code = "invalid_label"


class UnsupportedContent(InvalidInput):
    """The bytes are not a kind of content Bastion can hash (or not what they claim to be)."""

    code = "unsupported_content"
    http_status = 415


class ContentTooLarge(InvalidInput):
    """Too many bytes, pixels or seconds: refused before decoding (decompression bombs land here)."""

    code = "content_too_large"
    http_status = 413


class UnsupportedMediaType(InvalidInput):
    """The request body's Content-Type is not one the endpoint takes."""

    code = "unsupported_media_type"
    http_status = 415


class CorruptContent(InvalidInput):
    """The bytes claim a format but cannot be decoded (truncated or damaged files)."""

    code = "corrupt_content"
    http_status = 422


class EmptyContent(InvalidInput):
    code = "empty_content"
    http_status = 422


class UnreadableFile(BastionError):
    """The file exists but cannot be read (permissions, a symlink loop, a directory...)."""

    code = "unreadable_file"
    http_status = 400
    exit_code = 2


class NotFound(BastionError):
    code = "not_found"
    http_status = 404
    exit_code = 3


class Unauthenticated(BastionError):
    """No credentials, or credentials that do not identify anyone (codes: invalid_api_key, api_key_revoked...)."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 5


class Forbidden(BastionError):
    """Valid credentials without the scope the operation needs."""

    code = "forbidden_scope"
    http_status = 403
    exit_code = 5


class Conflict(BastionError):
    code = "conflict"
    http_status = 409
    exit_code = 4


class ImportFailed(InvalidInput):
    """A whole import was refused (unreadable file, unknown format); per-row errors do not raise this."""

    code = "import_failed"


class IndexCorrupt(BastionError):
    """A saved index cannot be used (missing, truncated, damaged or from another format version): rebuild it.

    ``details["reason"]`` says which: "missing", "unreadable", "malformed", "version", "truncated", "checksum".
    """

    code = "index_corrupt"


class UrlForbiddenAddress(InvalidInput):
    """A URL (or a redirect hop) points at an address Bastion must not reach: private, loopback, link-local..."""

    code = "url_forbidden_address"


class UrlSchemeUnsupported(InvalidInput):
    """Only http and https URLs are fetched."""

    code = "url_scheme_unsupported"


class UrlPortForbidden(InvalidInput):
    """The URL names a port outside the allowed set (80, 443, 8080, 8443 by default)."""

    code = "url_port_forbidden"


class UrlFetchFailed(BastionError):
    """The remote server could not be reached or answered unusably (connection refused, bad response...)."""

    code = "url_fetch_failed"
    http_status = 502
    exit_code = 6


class UrlFetchTimeout(UrlFetchFailed):
    """Fetching took longer than the total time limit (connect and read together)."""

    code = "url_fetch_timeout"
    http_status = 504


class UrlTooManyRedirects(UrlFetchFailed):
    code = "url_too_many_redirects"


class SecretUnreadable(BastionError):
    """A stored secret cannot be decrypted: BASTION_SECRET_KEY (or data_dir/secret.key) is not the key it was
    encrypted with. Restore the key, or rotate the secret (webhooks: rotate-secret)."""

    code = "secret_unreadable"
    http_status = 500


class InvalidPolicy(InvalidInput):
    """A rules file that cannot be used: ``details["problems"]`` lists each problem (line, path, rule, message)."""

    code = "invalid_policy"
    http_status = 422
