"""Who may talk to the server: the hosts it answers for, and no writes another site can forge.

Two rules guard the app before any route runs (the Host rule before the token
check too; the cross-site rule after it, so a request without its token hears 401):

- **Hosts** (DNS rebinding): a request whose ``Host`` is not one the server
  serves is refused with 400. Loopback names are always served; more come from
  ``UNIQC_STORE_ALLOWED_HOSTS`` (comma-separated), ``create_app(...,
  allowed_hosts=...)`` and ``uniqc-store serve --allowed-host`` (plus the address
  it binds). A pattern is a name, an IP address, ``*.example.com`` (any name
  under it, as Starlette's ``TrustedHostMiddleware`` reads it) or ``*`` (any host:
  when a proxy in front checks the host). Probe paths answer for any host:
  orchestrators send the pod's IP as the host.
- **Cross-site writes** (CSRF): a request that changes data (any method but
  GET, HEAD, OPTIONS, TRACE) is refused with 403 when the browser says it comes
  from elsewhere (``Sec-Fetch-Site`` other than ``same-origin`` / ``none``, or an
  ``Origin`` that is not this server), and unless it carries something a page on
  another site cannot send without a CORS preflight (which this server never
  grants): a JSON body (``Content-Type: application/json``), an
  ``X-Requested-With`` header, or ``Authorization: Bearer``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_HOSTS_ENV = "UNIQC_STORE_ALLOWED_HOSTS"
#: Always served: a page on another site cannot make its browser send these names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: The header a script (the dashboard's, curl's) adds to a write to show it is no form post.
WRITE_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Browsers' ``Sec-Fetch-Site`` values that are not another site.
_OWN_SITE = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_HEADER = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%[\w.\-]+)?)\]|(?P<name>[^\s\[\]:/@?#\\]+))(?::(?P<port>\d{1,5}))?"
)
_NAME = re.compile(r"(?:\*\.)?[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?\.?")
_SHOWN = 100  # characters of a refused Host or Origin quoted back


@dataclass(frozen=True)
class HostPort:
    """A ``Host`` header read: the host (lower case, IPv6 without brackets) and its port."""

    host: str
    port: int | None


def parse_host(header: str | None) -> HostPort | None:
    """``Host: name[:port]`` / ``[ipv6][:port]`` read, or None when it is not one."""
    match = _HOST_HEADER.fullmatch(header or "")
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    host = (match["ipv6"] or match["name"]).lower().rstrip(".")
    return HostPort(host, port)


def host_pattern(pattern: str) -> str:
    """One allowlist entry checked and normalised (``[::1]`` -> ``::1``, lower case).

    Raises ``ValueError`` saying what is wrong: a URL, a port or a path is not a
    host, and a wildcard must be ``*`` or lead as in ``*.example.com``.
    """
    text = pattern.strip()
    if text == "*":
        return text
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if "://" in text or "/" in text:
        raise ValueError(f"allowed host {pattern!r} is a URL: give the host name only")
    if ":" in text:
        raise ValueError(f"allowed host {pattern!r} has a port: give the host name only")
    if not _NAME.fullmatch(text):
        raise ValueError(
            f"allowed host {pattern!r} is not a host name, an IP address, '*.example.com' or '*'"
        )
    return text.lower().rstrip(".")


def hosts_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names in ``UNIQC_STORE_ALLOWED_HOSTS`` (comma-separated; blanks ignored)."""
    raw = (os.environ if environ is None else environ).get(ALLOWED_HOSTS_ENV, "")
    return [item.strip() for item in raw.split(",") if item.strip()]


class HostAllowlist:
    """The hosts a server answers for: loopback names, plus the given patterns."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        given = [host_pattern(p) for p in patterns]
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys([*LOOPBACK_HOSTS, *given]))
        self._any = "*" in self.patterns
        self._exact = frozenset(p for p in self.patterns if not p.startswith("*"))
        self._suffixes = tuple(p[1:] for p in self.patterns if p.startswith("*."))

    @classmethod
    def configured(
        cls, allowed_hosts: Iterable[str] | None, environ: Mapping[str, str] | None = None
    ) -> HostAllowlist:
        """Loopback, ``UNIQC_STORE_ALLOWED_HOSTS`` and ``allowed_hosts`` together."""
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a list of host names, not one string")
        return cls([*hosts_from_env(environ), *(allowed_hosts or ())])

    def allows(self, host: str) -> bool:
        """Whether a host (as :func:`parse_host` reads it) is served."""
        return self._any or host in self._exact or host.endswith(self._suffixes)


def route_path(scope: Scope) -> str:
    """The path as the app's routes see it: without the ``root_path`` of a mount or proxy."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def host_refusal(scope: Scope, hosts: HostAllowlist) -> str | None:
    """Why the request's ``Host`` is refused, or None when it is served."""
    header = Headers(scope=scope).get("host")
    parsed = parse_host(header)
    if parsed is not None and hosts.allows(parsed.host):
        return None
    named = "no Host header" if header is None else f"the host {_shown(header)!r}"
    return (
        f"this server does not answer for {named}: add the name with "
        f"uniqc-store serve --allowed-host NAME, {ALLOWED_HOSTS_ENV}=NAME or "
        "create_app(..., allowed_hosts=[NAME])"
    )


def _same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``Origin`` names this server: the host and port the request was sent to."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (a sandboxed page, a file), or something that is no origin
    target = parse_host(host_header)
    if target is None:
        return False
    default = _DEFAULT_PORTS[parts.scheme]
    same_host = parts.hostname.lower().rstrip(".") == target.host
    return same_host and (origin_port or default) == (target.port or default)


def _has_write_marker(headers: Headers) -> bool:
    """Something a page on another site cannot send without a preflight."""
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    scheme = headers.get("authorization", "").split(" ")[0].lower()
    return (
        media_type == "application/json"
        or (media_type.startswith("application/") and media_type.endswith("+json"))
        or WRITE_HEADER.lower() in headers
        or scheme == "bearer"
    )


def cross_site_refusal(scope: Scope) -> str | None:
    """Why a write is refused as one another site could have sent, or None."""
    if scope["method"] in SAFE_METHODS:
        return None
    headers = Headers(scope=scope)
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in _OWN_SITE:
        return f"refused: this {_shown(site)} request may not change data (Sec-Fetch-Site)"
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host")):
        return f"refused: a page at {_shown(origin)!r} may not change data on this server"
    if not _has_write_marker(headers):
        return (
            "refused: a request that changes data must carry a JSON body "
            f"(Content-Type: application/json), an {WRITE_HEADER} header "
            f"(e.g. curl -H '{WRITE_HEADER}: curl') or Authorization: Bearer <token>, "
            "so that no other web page can send it"
        )
    return None


class _Refuse:
    """ASGI middleware: answer ``status`` with the reason when ``reason(scope)`` has one."""

    def __init__(self, app: ASGIApp, *, status: int, reason: Callable[[Scope], str | None]) -> None:
        self.app = app
        self.status = status
        self.reason = reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.reason(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(status_code=self.status, content={"detail": refusal})
        await response(scope, receive, send)


_HOST_REFUSED = "The Host is not one this server answers for (see --allowed-host)."
_WRITE_REFUSED = (
    "A write another site could have sent: a cross-site Origin or Sec-Fetch-Site, or none "
    f"of a JSON body, {WRITE_HEADER} or Authorization: Bearer."
)


def declare_edge_statuses(app: FastAPI, *, any_host: Callable[[str], bool]) -> None:
    """Declare the guards' 400 and 403 in the OpenAPI document, on every operation
    (routes added later included), so the document says what the server answers."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                _declare(operation, host_checked=not any_host(path), writes=method.upper())
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(operation: dict[str, Any], *, host_checked: bool, writes: str) -> None:
    responses = operation.setdefault("responses", {})
    detail = {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
    if host_checked:
        declared = responses.get("400", {}).get("description", "")
        if _HOST_REFUSED not in declared:
            text = f"{declared} Or: {_HOST_REFUSED}" if declared else _HOST_REFUSED
            responses["400"] = {"description": text, "content": detail}
    if writes not in SAFE_METHODS:
        responses["403"] = {"description": _WRITE_REFUSED, "content": detail}


def guard_cross_site(app: FastAPI) -> None:
    """Refuse (403) writes another site could have sent.

    Add it before the token check, so the token is checked first: a request
    without a valid token hears 401, which says what it lacks.
    """
    app.add_middleware(_Refuse, status=403, reason=cross_site_refusal)


def guard_hosts(app: FastAPI, hosts: HostAllowlist, *, any_host: Callable[[str], bool]) -> None:
    """Refuse (400) a ``Host`` not in ``hosts``, except on the paths ``any_host`` names.

    Add it last, so it runs first: a request for another host learns nothing else.
    """

    def refused_host(scope: Scope) -> str | None:
        return None if any_host(route_path(scope)) else host_refusal(scope, hosts)

    app.add_middleware(_Refuse, status=400, reason=refused_host)
    app.state.allowed_hosts = hosts.patterns
