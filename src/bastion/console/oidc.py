"""The hook for single sign-on (OpenID Connect or any other identity provider).

Bastion ships no OIDC client: which library, which discovery document, which claims name the organisation all
differ between deployments. Instead, :func:`bastion.api.app.create_app` takes an ``identity_provider``: any object
with the two methods of :class:`IdentityProvider`. When one is configured, the login page offers "Sign in with
<name>", ``GET /console/oidc/start`` sends the browser to :meth:`IdentityProvider.authorization_url` with a fresh
``state`` (kept in a short-lived cookie), and ``GET /console/oidc/callback`` checks that ``state`` and hands the
callback's query parameters to :meth:`IdentityProvider.verify_callback`, which must verify everything (code
exchange, ID token signature, issuer, audience, nonce, expiry, ``email_verified``) and return the verified address.

The identity is then mapped to an existing, enabled Bastion user with that address (in the organisation the
provider names, if it does). Nobody is ever created by signing in, least of all an admin: an unknown address gets
403 ``unknown_user``. Sessions made this way are like password sessions (audited ``login`` with ``method: oidc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from bastion.accounts.sessions import VerifiedIdentity


@runtime_checkable
class IdentityProvider(Protocol):
    """A configured identity provider (see the module docstring)."""

    name: str  # shown on the login page: "Sign in with <name>"

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        """Where to send the browser to sign in; the provider must send it back to ``redirect_uri`` with ``state``."""
        ...

    def verify_callback(self, params: Mapping[str, str], redirect_uri: str) -> VerifiedIdentity:
        """Verify the callback's query parameters; raise a BastionError (e.g. Unauthenticated) when they fail."""
        ...


__all__ = ["IdentityProvider", "VerifiedIdentity"]
