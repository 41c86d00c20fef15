"""The web dashboard: a page of the bus that a person keeps open beside the agents.

``GET /`` is the page (plain HTML and JS under ``static/``, no build); ``GET /dashboard/snapshot`` is one
namespace as JSON (`dashboard_data.take`, as `agentbus status` reads it; ``?workflow=<id>`` adds that
workflow's tasks); ``GET /dashboard/stream`` says ``changed`` whenever the namespace changes
(`dashboard_stream.py`), on which the page fetches the snapshot again; ``GET /dashboard/access`` says
which namespaces the caller may look at and whether it may act.

Access is that of ``/mcp``: the Host/Origin checks against DNS rebinding always; without a tokens file,
loopback clients only; with one, the data routes need ``Authorization: Bearer <token>`` (401 otherwise)
and show the token's namespace. The page sends the header with ``fetch`` (streamed for the events), so a
token never goes into a URL, where logs and browser history would keep it. Every data or action route
(this module's and those of the other ``dashboard_*`` modules) starts with `Dashboard.open`, which does
all of that and says whether the caller may act (`may_act`) or only look, and answers as
`dashboard_replies` says (one error shape; Redis down is 503 ``backend_unavailable`` on every route).

Which namespace a request shows: with tokens, its token's (the page keeps one token per namespace and
sends the one of the namespace shown); without, the one ``?namespace=`` (or the header
``X-Agentbus-Namespace``, which the page sends) names among those the server serves (the first when it
names none): `agentbus dashboard --namespace a,b` serves several, ``serve``
its own. Any other is refused (403 with tokens, 404 without) with a hint naming what is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.server import profiles
from mcp_agentbus.server.dashboard_actions import Actions, acting_as
from mcp_agentbus.server.dashboard_data import take
from mcp_agentbus.server.dashboard_inbox import Inbox
from mcp_agentbus.server.dashboard_replies import HEADERS, NOT_ROUTED, answer, refuse, route
from mcp_agentbus.server.dashboard_stats import Stats
from mcp_agentbus.server.dashboard_stream import Streams
from mcp_agentbus.server.dashboard_task import TaskDetail
from mcp_agentbus.server.tokens import Grant, TokensFile
from mcp_agentbus.settings import Settings

EVENTS_SHOWN = 30
NAMESPACE_HEADER = "X-Agentbus-Namespace"  # the page's way to say ?namespace= on every request
STATIC = {  # path → (file under static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/common.js": ("common.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/access.js": ("access.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
    "/dashboard/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/dashboard/inbox.js": ("inbox.js", "text/javascript; charset=utf-8"),
    "/dashboard/charts.css": ("charts.css", "text/css; charset=utf-8"),
    "/dashboard/actions.js": ("actions.js", "text/javascript; charset=utf-8"),
    "/dashboard/dag.js": ("dag.js", "text/javascript; charset=utf-8"),
    "/dashboard/detail.js": ("detail.js", "text/javascript; charset=utf-8"),
    "/dashboard/views.css": ("views.css", "text/css; charset=utf-8"),
}


def may_act(grant: Grant | None) -> bool:
    """Whether a dashboard caller may act (send, cancel, retry, release), not only look: anyone the
    server lets in without a tokens file (loopback only), else a token whose role is, or lists,
    ``all`` or ``operator``."""
    return grant is None or profiles.may_act(grant.role)


@dataclass(frozen=True)
class Opened:
    """A dashboard request let in: the bus of the namespace it shows, the token's grant (None without
    a tokens file) and whether it may act."""

    bus: AgentBus
    grant: Grant | None
    may_act: bool


class Dashboard:
    """The dashboard's routes, for the namespaces `bus_for` opens: without tokens those of `namespace`
    (one name, or several: the first is shown by default), with tokens each token's own."""

    def __init__(
        self,
        namespace: str | Sequence[str],
        bus_for: Callable[[str], Awaitable[AgentBus | None]],
        security: TransportSecuritySettings,
        tokens: TokensFile | None = None,
    ) -> None:
        self._served = [namespace] if isinstance(namespace, str) else list(namespace)
        self._bus_for = bus_for
        self._security = TransportSecurityMiddleware(security)
        self._tokens = tokens
        self._streams = Streams(tokens)

    def routes(self) -> list[Route]:
        """The page's files, then the routes that start with `open` (`dashboard_replies.route`)."""
        return [
            *(Route(path, self._static, methods=["GET"]) for path in STATIC),
            route("/dashboard/access", self._access),
            route("/dashboard/snapshot", self._snapshot),
            route("/dashboard/stream", self._stream),
            *Stats(self).routes(),
            *Inbox(self).routes(),
            *TaskDetail(self).routes(),
            *Actions(self).routes(),
        ]

    async def open(self, request: Request) -> Opened | Response:
        """The request let in (`Opened`), or the answer that refuses it, checked in this order: a foreign
        Host/Origin (421/403), no tokens file and not loopback (403), no valid token (401), a namespace
        not served (403/404), a POST that is not JSON (415), the server not serving yet (503). Who asks
        comes before what it sends. Routes that act refuse with 403 themselves when `Opened.may_act` is
        False."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        grant = self._grant(request)
        if isinstance(grant, Response):
            return grant
        namespace = self._namespace(request, grant)
        if isinstance(namespace, Response):
            return namespace
        # A POST (an action) must be JSON, which a form on another site cannot send unasked.
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and media_type != "application/json":
            return refuse(
                415,
                "unsupported_media_type",
                "an action needs a JSON body (Content-Type: application/json)",
                "Send the action's fields as a JSON object, as the dashboard page does.",
            )
        bus = await self._bus_for(namespace)
        if bus is None:
            return refuse(503, "unavailable", "the server is starting or stopping", "Try again in a moment.")
        return Opened(bus, grant, may_act(grant))

    async def open_bus(self, request: Request) -> AgentBus | Response:
        """`open` for a route that only reads: the namespace's bus, or the refusal."""
        opened = await self.open(request)
        return opened if isinstance(opened, Response) else opened.bus

    async def _refused(self, request: Request) -> Response | None:
        """The refusal of a request from where it must not come (foreign Host/Origin, or not loopback
        without a tokens file), before anything else is looked at."""
        refused = await self._security.validate_request(request)
        if refused is not None:  # the SDK's check, answered in plain text
            return _foreign(request, refused.status_code)
        client = request.client.host if request.client else ""
        if self._tokens is None and not _is_loopback(client):
            return refuse(
                403,
                "forbidden",
                "this server has no tokens file, so its dashboard answers loopback only",
                "Open it on the server's machine, or serve with a tokens file and send a token.",
            )
        return None

    def _grant(self, request: Request) -> Grant | Response | None:
        """The request's grant (None without tokens), or the 401 to answer."""
        if self._tokens is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._tokens.find(token.strip()) if scheme.lower() == "bearer" and token else None
        if grant is None:
            return refuse(
                401,
                "unauthorized",
                "the dashboard needs a valid token",
                "Send 'Authorization: Bearer <token>' (agentbus token create makes one).",
            )
        return grant

    def _namespace(self, request: Request, grant: Grant | None) -> str | Response:
        asked = request.query_params.get("namespace") or request.headers.get(NAMESPACE_HEADER) or None
        shown = repr(asked[:80]) if asked else ""
        if grant is not None:
            if asked is not None and asked != grant.namespace:
                return refuse(
                    403,
                    "forbidden",
                    f"this token is for namespace {grant.namespace!r}, not {shown}",
                    f'Add a token of namespace {shown} on the page ("add a token"), or look at '
                    f"{grant.namespace!r}.",
                )
            return grant.namespace
        if asked is None:
            return self._served[0]
        if asked not in self._served:
            return refuse(
                404,
                "not_found",
                f"this dashboard does not serve namespace {shown}; it serves {', '.join(self._served)}",
                "Pick one of those, or start `agentbus dashboard --namespace a,b` listing the ones you want.",
            )
        return asked

    async def _static(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        name, media_type = STATIC[request.url.path]
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=media_type, headers=HEADERS)

    async def _access(self, request: Request) -> Response:
        """What the page may show and do: the namespaces it may pick from (with tokens, the one of the
        token sent: the page keeps the others' tokens) and whether it may act."""
        opened = await self.open(request)
        if isinstance(opened, Response):
            return opened
        grant = opened.grant
        return answer(
            {
                "namespace": opened.bus.settings.namespace,
                "namespaces": self._served if grant is None else [grant.namespace],
                "tokens": self._tokens is not None,
                "token": None
                if grant is None
                else {"id": grant.id, "agent": grant.agent, "role": grant.role},
                "may_act": opened.may_act,
                "acts_as": acting_as(grant),
            }
        )

    async def _snapshot(self, request: Request) -> Response:
        bus = await self.open_bus(request)
        if isinstance(bus, Response):
            return bus
        snap = await take(bus, workflow_id=request.query_params.get("workflow"), events=EVENTS_SHOWN)
        return answer(snap.to_json())

    async def _stream(self, request: Request) -> Response:
        opened = await self.open(request)
        if isinstance(opened, Response):
            return opened
        return self._streams.respond(opened.bus, opened.grant)


def dashboard_app(settings: Settings, also: Sequence[str] = ()) -> Starlette:
    """Only the dashboard, of `settings.namespace` and the namespaces `also` names, for loopback
    clients (`agentbus dashboard`), who may look and act there; no reaper, no MCP endpoint, no
    wake-ups."""
    from mcp_agentbus.server.http import LOOPBACK_HOSTS

    served = list(dict.fromkeys([settings.namespace, *also]))
    buses: dict[str, AgentBus] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        redis = connect(settings.redis_url, timeout=settings.redis_timeout_seconds)
        try:
            for namespace in served:
                buses[namespace] = AgentBus(redis, settings.model_copy(update={"namespace": namespace}))
            yield
        finally:
            buses.clear()
            await close(redis)

    async def bus_for(namespace: str) -> AgentBus | None:
        return buses.get(namespace)

    security = TransportSecuritySettings(
        allowed_hosts=list(LOOPBACK_HOSTS),
        allowed_origins=[f"http://{host}" for host in LOOPBACK_HOSTS],
    )
    return Starlette(
        routes=Dashboard(served, bus_for, security).routes(), lifespan=lifespan, exception_handlers=NOT_ROUTED
    )


def _foreign(request: Request, status: int) -> Response:
    """The refusal of a request whose Host (421) or Origin (403) is not this server's: against DNS
    rebinding, and pages of other sites."""
    if status == 421:
        return refuse(
            421,
            "misdirected_request",
            f"this server does not answer to host {request.headers.get('host', '')[:80]!r}",
            "Open the dashboard at the address the server printed, or serve with --allowed-host host:port.",
        )
    return refuse(
        403,
        "forbidden",
        f"requests from {request.headers.get('origin', '')[:80]!r} are refused: only this server's own page "
        "may use it",
        "Open the dashboard page on this server itself.",
    )


def _is_loopback(host: str) -> bool:
    from mcp_agentbus.server.http import is_loopback

    return is_loopback(host)
