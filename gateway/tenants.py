"""Tenants: which caller an API key is, and the session ids each caller may reach.

A tenant's session ``s1`` is stored as ``acme@s1``: the tenant and ``@`` prefix every session
id it sends, and are stripped from every id it is shown. Tenant names hold no ``@``, so no id
one tenant can send reaches another tenant's sessions: a session of another tenant is simply
absent (404). Admin keys, and an open gateway, use stored ids as they are and see all.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from tokenwindow.constants import SESSION_ID_PATTERN
from tokenwindow.errors import ConfigurationError, InvalidInputError
from tokenwindow.settings import Settings

DEFAULT_TENANT = "default"
"""The tenant of a key configured without a ``tenant:`` prefix."""
SEPARATOR = "@"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_SESSION_ID = 128
"""Longest stored session id (``SESSION_ID_PATTERN``); a tenant's ids are shorter by its
prefix."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request; ``tenant=None`` sees every session under its stored id."""

    tenant: str | None

    @property
    def prefix(self) -> str:
        return "" if self.tenant is None else f"{self.tenant}{SEPARATOR}"

    def internal(self, session_id: str, field: str = "session_id") -> str:
        """The stored id of one of the caller's sessions."""
        stored = self.prefix + session_id
        if not SESSION_ID_PATTERN.fullmatch(session_id) or len(stored) > MAX_SESSION_ID:
            longest = MAX_SESSION_ID - len(self.prefix)
            raise InvalidInputError(
                f"{field}: must be 1-{longest} characters of letters, digits, "
                f"'_', '-', '.', '@'; got {session_id!r:.80}"
            )
        return stored

    def external(self, stored: str) -> str:
        """The id the caller knows a stored session by (it must be one of its own)."""
        return stored.removeprefix(self.prefix)

    def owns(self, stored: str) -> bool:
        return stored.startswith(self.prefix)


ADMIN = Caller(None)


@dataclass(frozen=True)
class KeyTable:
    """Every configured key with the caller it stands for."""

    entries: tuple[tuple[bytes, Caller], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyTable:
        """Parse ``TOKENWINDOW_GATEWAY_API_KEYS`` (``tenant:key``) and ``..._ADMIN_KEYS``."""
        entries = []
        for secret in settings.gateway_api_keys:
            tenant, sep, key = secret.get_secret_value().partition(":")
            if not sep:
                tenant, key = DEFAULT_TENANT, tenant
            if not TENANT_PATTERN.fullmatch(tenant) or not key:
                raise ConfigurationError(
                    "TOKENWINDOW_GATEWAY_API_KEYS: each entry is KEY or TENANT:KEY, TENANT being "
                    f"1-32 letters, digits, '_', '-', '.'; got an entry for tenant {tenant!r:.40}"
                )
            entries.append((key.encode(), Caller(tenant)))
        entries += [(s.get_secret_value().encode(), ADMIN) for s in settings.gateway_admin_keys]
        return cls(tuple(entries))

    @property
    def open(self) -> bool:
        return not self.entries

    def caller(self, token: str) -> Caller | None:
        """The caller of a bearer token, compared in constant time against every key."""
        given = token.encode()
        found = None
        for key, caller in self.entries:
            if hmac.compare_digest(given, key):
                found = caller
        return found
