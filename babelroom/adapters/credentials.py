"""The one Entra ID credential rule every adapter follows.

In Azure the app runs as a user-assigned managed identity whose client id is `AZURE_CLIENT_ID`:
`ManagedIdentityCredential` asks for exactly that identity and nothing else. On a laptop
(`func start`) there is no managed identity and `AZURE_CLIENT_ID` is unset:
`DefaultAzureCredential` then uses `az login` / `azd auth login` / VS Code sign-in.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings


def credential(settings: Settings, *, aio: bool = False) -> Any:
    """A sync (`aio=False`) or async token credential for the app's identity."""
    if aio:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
    else:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential  # type: ignore[assignment]
    if settings.client_id:
        return ManagedIdentityCredential(client_id=settings.client_id)
    return DefaultAzureCredential()
