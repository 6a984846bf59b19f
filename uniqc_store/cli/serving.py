"""``serve``: the REST API and the dashboard under uvicorn (the ``api`` extra).

Everything that can be refused (the token, the hosts, the root path) is
checked before the store is opened, so a mistake is one line and nothing runs.
"""

from __future__ import annotations

import ipaddress
from types import FrameType

import click

from uniqc_store.cli.support import (
    Command,
    environment_store_options,
    existing_url,
    fail,
    reports_errors,
    shown_url,
    url_option,
)
from uniqc_store.repository.store import TaskStore


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer for this Host (a name, an IP, *.example.com or *); repeatable. "
    "Loopback names and --host are always served; UNIQC_STORE_ALLOWED_HOSTS adds more "
    "(comma-separated).",
)
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    help="The path prefix a proxy serves the app under (e.g. /store), as uvicorn's --root-path.",
)
@url_option
@reports_errors
def serve(
    host: str, port: int, allowed_hosts: tuple[str, ...], root_path: str, url: str | None
) -> None:
    """Run the REST API and the dashboard (at /) with uvicorn (the api extra).

    Credentials in responses are redacted. Set UNIQC_STORE_API_TOKEN to require
    "Authorization: Bearer <token>" on every API request; a token that is set but
    empty, blank or not sendable in a header is refused. The server answers only
    for the hosts it serves (others get 400) and refuses writes another web site
    could send (403): see the README's "Security" section. Probes at /api/live and
    /api/ready (no token, any host), Prometheus metrics at /metrics (token and host
    rules as /api): the README's "Running in production".
    """
    try:
        import uvicorn

        from uniqc_store.api.app import create_app
        from uniqc_store.api.auth import api_token
        from uniqc_store.api.dashboard import close_streams
        from uniqc_store.api.edge import ALLOWED_HOSTS_ENV, HostAllowlist
    except ImportError:
        fail("the REST API needs the api extra: pip install 'uniqc-store[api]'")
        return
    token = api_token()  # before opening anything: a bad token is a ValueError, one line
    served_hosts = [*allowed_hosts, host]
    hosts = HostAllowlist.configured(served_hosts)  # a bad name: one line, nothing opened
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise click.BadParameter("give it as /prefix (a leading slash, none at the end)")
    if token is None and not _is_loopback(host):
        click.echo(
            f"warning: serving on {host} without UNIQC_STORE_API_TOKEN: anyone who can reach "
            f"port {port} can read, archive and delete every task. Set UNIQC_STORE_API_TOKEN "
            "to require a bearer token.",
            err=True,
        )
    store = TaskStore(url=existing_url(url), **environment_store_options())
    app = create_app(store, allowed_hosts=served_hosts)
    click.echo(
        f"serving {shown_url(url, store.url)} on http://{host}:{port}{root_path}/ "
        "(the dashboard at /, the API under /api)",
        err=True,
    )
    click.echo(
        f"answering for the hosts {', '.join(hosts.patterns)} "
        f"(add one with --allowed-host NAME or {ALLOWED_HOSTS_ENV})",
        err=True,
    )

    class Server(uvicorn.Server):
        """Ends the dashboards' event streams on Ctrl-C: they would hold the shutdown."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            close_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, root_path=root_path, log_level="info")
    Server(config).run()


def _is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


#: What ``commands`` adds to the group.
COMMANDS = (serve,)
