"""Triton's admin APIs behind a header key: the header, the env var and the restricted APIs.

Why: Triton's model-repository API can load a model from a config and files sent in the
request itself (``file:1/model.py``), which makes the server import and run that Python. So
every server this project starts restricts that API (and the other admin APIs: shared-memory
registration, trace and log settings that name files on the server, statistics) to requests
that carry :data:`ADMIN_HEADER` with the server's key. Inference, health, metadata and
model-config stay open: ``damo infer`` needs them and they cannot change what the server runs.

The key comes from :data:`ADMIN_KEY_ENV` when set; otherwise the local server makes one up
(:func:`new_key`). Clients in the same process find the key of a local server they talk to
through :func:`remember`/:func:`key_for`; other processes through the env var. On the
cluster the key is a Secret (see ``manifests/``), injected into Triton's args and the deploy
step's env. Defined once here so the server flags, the clients and the tests cannot drift.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from typing import Any

from damo_core.errors import UserInputError

ADMIN_HEADER = "damo-admin-key"
ADMIN_KEY_ENV = "DAMO_TRITON_ADMIN_KEY"
# Triton only checks gRPC metadata under this prefix (HTTP uses the bare header name).
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
# Cluster side (manifests/): the Secret holding the key, and the pod label that lets the
# pipeline's deploy step through Triton's NetworkPolicy.
ADMIN_KEY_SECRET, ADMIN_KEY_SECRET_KEY = "damo-triton-admin", "key"
DEPLOYER_POD_LABEL = ("damo-yolo/triton-deployer", "true")
# The key sits inside Triton's ``api,...:header=value`` flag: no ':', ',', '=' or spaces.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,}")

_LOCAL_KEYS: dict[str, str] = {}  # url of a server started in this process -> its key


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe characters only)."""
    return secrets.token_urlsafe(32)


def check_key(key: str) -> str:
    """``key`` if Triton can take it in its flags and it is not trivially guessable."""
    if not _KEY_PATTERN.fullmatch(key):
        raise UserInputError(f"the Triton admin key (env {ADMIN_KEY_ENV}) must be at least 16 "
                             "characters of A-Z a-z 0-9 _ -; e.g. `openssl rand -hex 32`")
    return key


def server_args(key: str) -> list[str]:
    """``tritonserver`` flags that put the admin APIs behind ``key`` on HTTP and gRPC."""
    rule = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={check_key(key)}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]


def http_headers(key: str | None) -> dict[str, str]:
    return {ADMIN_HEADER: key} if key else {}


def grpc_headers(key: str | None) -> dict[str, str] | None:
    """The ``headers=`` argument of tritonclient.grpc calls (``None``: send nothing)."""
    return {GRPC_HEADER_PREFIX + ADMIN_HEADER: key} if key else None


def remember(urls: Iterable[str], key: str) -> None:
    for url in urls:
        _LOCAL_KEYS[url] = key


def forget(urls: Iterable[str]) -> None:
    for url in urls:
        _LOCAL_KEYS.pop(url, None)


def key_for(url: str | None, explicit: str | None = None) -> str | None:
    """The key to send to ``url``: the caller's, a local server's of this process, or the
    env var's; ``None`` when there is none (the request goes without and may be refused)."""
    if explicit:
        return explicit
    if url and url in _LOCAL_KEYS:
        return _LOCAL_KEYS[url]
    return os.environ.get(ADMIN_KEY_ENV) or None


def is_refusal(err: BaseException) -> bool:
    """Whether a Triton error is the restricted-API refusal (no key or a wrong one)."""
    text = str(err)
    return "restricted" in text and ADMIN_HEADER in text


def refusal_message(url: str, key: str | None) -> str:
    """One line for a user whose client was refused: what to set, and where to get it."""
    where = (f"the key `damo serve local` printed, or the cluster's Secret {ADMIN_KEY_SECRET}, "
             f"key {ADMIN_KEY_SECRET_KEY!r}")
    if key is None:
        return (f"the Triton server at {url} refuses its model-repository API without the "
                f"admin key: set {ADMIN_KEY_ENV} ({where})")
    return (f"the Triton server at {url} refused the admin key: {ADMIN_KEY_ENV} does not hold "
            f"this server's key ({where})")


class KeyedClient:
    """A tritonclient.grpc client whose repository calls carry the admin key.

    Only the restricted calls get the header; every other attribute is the wrapped client's,
    so deploy code reads the same as with a plain client.
    """

    def __init__(self, client: Any, key: str | None) -> None:
        self._client, self._headers = client, grpc_headers(key)

    def load_model(self, name: str, **kwargs: Any) -> Any:
        return self._client.load_model(name, headers=self._headers, **kwargs)

    def unload_model(self, name: str, **kwargs: Any) -> Any:
        return self._client.unload_model(name, headers=self._headers, **kwargs)

    def get_model_repository_index(self, **kwargs: Any) -> Any:
        return self._client.get_model_repository_index(headers=self._headers, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
