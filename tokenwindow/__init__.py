"""tokenwindow: keep LLM conversations inside their context window.

Producers import only this package: ``TokenManagementClient`` (asyncio) or
``SyncTokenManagementClient``. Imports are lazy so ``import tokenwindow`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenwindow.client import TokenManagementClient
    from tokenwindow.sync_client import SyncTokenManagementClient

__version__ = "0.1.0"
"""The one version of both distributions (the client and the service)."""

__all__ = ["SyncTokenManagementClient", "TokenManagementClient", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "TokenManagementClient":
        from tokenwindow.client import TokenManagementClient

        return TokenManagementClient
    if name == "SyncTokenManagementClient":
        from tokenwindow.sync_client import SyncTokenManagementClient

        return SyncTokenManagementClient
    raise AttributeError(name)
