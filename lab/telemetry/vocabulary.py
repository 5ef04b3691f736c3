"""What the lab's services print, in the words their real runtimes and client libraries use.

Agents are trained and judged on real clusters, so an error has to read the
way gRPC-Go, Thrift, grpc-js, grpc-java, MongoDB or Envoy would word it: the
failure text is the evidence that points at the broken dependency. Templates
are keyed by *family* (the runtime that prints: zerolog Go, Thrift C++, pino
Node, ...) and, for databases and caches, by the kind of callee, because the
driver decides the wording.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.apps.spec import ServiceSpec

FAMILIES = frozenset(
    {"go", "logrus", "cpp", "nginx", "envoy", "node", "java", "dotnet", "python"}
    | {"mongodb", "memcached", "redis", "kafka"}
)
_ALIASES = {"c++": "cpp", "thrift": "cpp", "openresty": "nginx", "lua": "nginx"}


def family_of(spec: ServiceSpec) -> str:
    """The runtime that prints this service's logs; a plain "go" style is refined by image."""
    style = _ALIASES.get(spec.log_style, spec.log_style)
    binary = spec.command[0].rsplit("/", 1)[-1] if spec.command else ""
    if spec.kind == "kafka":
        return "kafka"
    if style != "go":
        return style if style in FAMILIES else "go"
    if "social-network-microservices" in spec.image:
        return "cpp"
    if "openresty" in spec.image or binary == "openresty":
        return "nginx"
    if binary == "envoy":
        return "envoy"
    if binary == "nginx":
        return "nginx"
    if spec.image.startswith("otel/demo"):
        return "logrus"
    return "go"


@dataclass
class FailureContext:
    """Everything a failure message may mention."""

    caller: str
    callee: str
    callee_kind: str
    port: int
    ip: str
    database: str = ""
    user: str = "admin"
    now: float = 0.0
    deadline_ms: float = 5000.0
    inner: str = ""
    host: str = ""

    def fields(self) -> dict[str, str]:
        expiry = _iso(self.now - 86400.0 * 3, frac=False) if self.now else "2024-04-28T00:00:00Z"
        return {
            "caller": self.caller,
            "callee": self.callee,
            "port": str(self.port),
            "ip": self.ip,
            "database": self.database,
            "collection": self.database.removesuffix("-db"),
            "user": self.user,
            "now": _iso(self.now, frac=False),
            "expiry": expiry,
            "deadline_s": f"{self.deadline_ms / 1000.0 - 0.001:.3f}",
            "inner": self.inner,
            "host": self.host or self.callee,
        }


_GO_RPC = {
    "refused": 'rpc error: code = Unavailable desc = connection error: desc = "transport: '
    'Error while dialing dial tcp {ip}:{port}: connect: connection refused"',
    "no_such_host": 'rpc error: code = Unavailable desc = connection error: desc = "transport: '
    'Error while dialing dial tcp: lookup {host} on 10.96.0.10:53: no such host"',
    "x509": 'rpc error: code = Unavailable desc = connection error: desc = "transport: '
    "authentication handshake failed: x509: certificate has expired or is not yet valid: "
    'current time {now} is after {expiry}"',
    "timeout": "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
    "upstream": "rpc error: code = Unknown desc = {inner}",
}
_RPC: dict[str, dict[str, str]] = {
    "go": _GO_RPC,
    "logrus": _GO_RPC,
    "cpp": {
        "refused": "TSocket::open() connect() <Host: {host} Port: {port}>: Connection refused",
        "no_such_host": "TSocket::open() getaddrinfo() <Host: {host} Port: {port}>: "
        "Name or service not known",
        "x509": "SSL_connect: error:1416F086:SSL routines:tls_process_server_certificate:"
        "certificate verify failed (certificate has expired)",
        "timeout": "TSocket::read() recv() <Host: {host} Port: {port}>: "
        "Resource temporarily unavailable (THRIFT_EAGAIN (timed out))",
        "upstream": "{inner}",
    },
    "nginx": {
        "refused": "connect() failed (111: Connection refused) while connecting to upstream "
        "{host}:{port}",
        "no_such_host": "{host} could not be resolved (3: Host not found)",
        "x509": "SSL_do_handshake() failed (SSL: error:1416F086:SSL routines:"
        "tls_process_server_certificate:certificate verify failed)",
        "timeout": "upstream timed out (110: Connection timed out) while reading response "
        "header from upstream {host}:{port}",
        "upstream": "{inner}",
    },
    "envoy": {
        "no_endpoints": "no healthy upstream",
        "refused": "upstream connect error or disconnect/reset before headers. reset reason: "
        "connection failure, transport failure reason: delayed connect error: 111",
        "no_such_host": "no healthy upstream",
        "x509": "upstream connect error or disconnect/reset before headers. reset reason: "
        "connection failure, transport failure reason: TLS_error:|268435581:SSL routines:"
        "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
        "timeout": "upstream request timeout",
        "upstream": "upstream {host} answered 500: {inner}",
    },
    "node": {
        "refused": "14 UNAVAILABLE: No connection established. Last error: "
        "connect ECONNREFUSED {ip}:{port}",
        "no_such_host": "14 UNAVAILABLE: Name resolution failed for target dns:{host}:{port}",
        "x509": "14 UNAVAILABLE: No connection established. Last error: certificate has expired",
        "timeout": "4 DEADLINE_EXCEEDED: Deadline exceeded after {deadline_s}s",
        "upstream": "13 INTERNAL: {inner}",
    },
    "java": {
        "refused": "io.grpc.StatusRuntimeException: UNAVAILABLE: io exception "
        "(Connection refused: {host}/{ip}:{port})",
        "no_such_host": "io.grpc.StatusRuntimeException: UNAVAILABLE: Unable to resolve "
        "host {host}",
        "x509": "io.grpc.StatusRuntimeException: UNAVAILABLE: io exception (javax.net.ssl."
        "SSLHandshakeException: PKIX path validation failed: java.security.cert."
        "CertificateExpiredException: NotAfter: {expiry})",
        "timeout": "io.grpc.StatusRuntimeException: DEADLINE_EXCEEDED: deadline exceeded "
        "after {deadline_s}s",
        "upstream": "io.grpc.StatusRuntimeException: UNKNOWN: {inner}",
    },
    "dotnet": {
        "refused": 'Grpc.Core.RpcException: Status(StatusCode="Unavailable", Detail="Error '
        'connecting to subchannel.", DebugException="System.Net.Sockets.SocketException (111): '
        'Connection refused")',
        "no_such_host": 'Grpc.Core.RpcException: Status(StatusCode="Unavailable", Detail="Error '
        'connecting to subchannel.", DebugException="System.Net.Sockets.SocketException '
        '(00000005, 0xFFFDFFFF): Name or service not known")',
        "x509": 'Grpc.Core.RpcException: Status(StatusCode="Unavailable", Detail="Error '
        'connecting to subchannel.", DebugException="System.Security.Authentication.'
        "AuthenticationException: The remote certificate is invalid because of errors in the "
        'certificate chain: NotTimeValid")',
        "timeout": 'Grpc.Core.RpcException: Status(StatusCode="DeadlineExceeded", Detail="")',
        "upstream": 'Grpc.Core.RpcException: Status(StatusCode="Unknown", Detail="{inner}")',
    },
    "python": {
        "refused": "<_InactiveRpcError of RPC that terminated with: status = "
        'StatusCode.UNAVAILABLE details = "failed to connect to all addresses; last error: '
        'UNKNOWN: ipv4:{ip}:{port}: Failed to connect to remote host: Connection refused">',
        "no_such_host": "<_InactiveRpcError of RPC that terminated with: status = "
        'StatusCode.UNAVAILABLE details = "DNS resolution failed for {host}:{port}">',
        "x509": "<_InactiveRpcError of RPC that terminated with: status = "
        'StatusCode.UNAVAILABLE details = "failed to connect to all addresses; last error: '
        'UNKNOWN: Ssl handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED">',
        "timeout": "<_InactiveRpcError of RPC that terminated with: status = "
        'StatusCode.DEADLINE_EXCEEDED details = "Deadline Exceeded">',
        "upstream": "<_InactiveRpcError of RPC that terminated with: status = "
        'StatusCode.UNKNOWN details = "{inner}">',
    },
}

_MONGO_GO = {
    "no_endpoints": "no reachable servers",
    "refused": "no reachable servers",
    "no_such_host": "no reachable servers",
    "timeout": "read tcp {ip}:27017: i/o timeout",
    "x509": "x509: certificate has expired or is not yet valid: current time {now} is after "
    "{expiry}",
    "unauthorized": 'not authorized on {database} to execute command {{ find: "{collection}", '
    'filter: {{}}, $db: "{database}" }}',
    "auth_failed": "server returned error on SASL authentication step: Authentication failed.",
    "tls_required": "connection() error occurred during connection handshake: connection("
    "{callee}:27017[-3]) incomplete read of message header: EOF",
}
_MONGO_C = {
    "no_endpoints": "No suitable servers found (`serverSelectionTryOnce` set): [connection "
    "refused calling hello on '{callee}:27017']",
    "refused": "No suitable servers found (`serverSelectionTryOnce` set): [connection refused "
    "calling hello on '{callee}:27017']",
    "no_such_host": "No suitable servers found (`serverSelectionTryOnce` set): [Failed to "
    "resolve '{callee}']",
    "timeout": "No suitable servers found (`serverSelectionTryOnce` set): [socket timeout "
    "calling hello on '{callee}:27017']",
    "x509": "No suitable servers found: [TLS handshake failed: certificate has expired calling "
    "hello on '{callee}:27017']",
    "unauthorized": 'not authorized on {database} to execute command {{ find: "{collection}", '
    '$db: "{database}" }}',
    "auth_failed": "Authentication failed.",
    "tls_required": "No suitable servers found (`serverSelectionTryOnce` set): [socket error "
    "or timeout calling hello on '{callee}:27017']",
}
_STORE_GENERIC = {
    "no_endpoints": "connect ECONNREFUSED {ip}:{port}",
    "refused": "connect ECONNREFUSED {ip}:{port}",
    "no_such_host": "getaddrinfo ENOTFOUND {host}",
    "timeout": "connection to {host}:{port} timed out",
    "x509": "certificate has expired",
    "unauthorized": "not authorized on {database} to execute command",
    "auth_failed": "Authentication failed.",
    "tls_required": "connection closed by {host}:{port} during handshake",
}
_STORES: dict[tuple[str, str], dict[str, str]] = {
    ("go", "mongodb"): _MONGO_GO,
    ("logrus", "mongodb"): _MONGO_GO,
    ("cpp", "mongodb"): _MONGO_C,
    ("nginx", "mongodb"): _MONGO_C,
    ("go", "memcached"): {
        "refused": "dial tcp {ip}:{port}: connect: connection refused",
        "no_endpoints": "dial tcp {ip}:{port}: connect: connection refused",
        "no_such_host": "dial tcp: lookup {host} on 10.96.0.10:53: no such host",
        "timeout": "memcache: connect timeout to {ip}:{port}",
    },
    ("cpp", "memcached"): {
        "refused": "CONNECTION FAILURE: connect() to {host}:{port} failed: Connection refused",
        "no_endpoints": "CONNECTION FAILURE: connect() to {host}:{port} failed: Connection refused",
        "no_such_host": "HOSTNAME LOOKUP FAILURE: {host}",
        "timeout": "A TIMEOUT OCCURRED",
    },
    ("cpp", "redis"): {
        "refused": "Could not connect to Redis at {host}:{port}: Connection refused",
        "no_endpoints": "Could not connect to Redis at {host}:{port}: Connection refused",
        "no_such_host": "Could not connect to Redis at {host}:{port}: Name or service not known",
        "timeout": "Redis timeout reading from {host}:{port}",
    },
    ("dotnet", "redis"): {
        "refused": "It was not possible to connect to the redis server(s). UnableToConnect on "
        "{host}:{port}/Interactive",
        "no_endpoints": "It was not possible to connect to the redis server(s). UnableToConnect "
        "on {host}:{port}/Interactive",
        "no_such_host": "It was not possible to connect to the redis server(s). "
        "UnableToResolvePhysicalConnection on {host}:{port}/Interactive",
        "timeout": "Timeout awaiting response (outbound=0KiB, inbound=0KiB, 5000ms elapsed, "
        "timeout is 5000ms), command=HGET, next: HGET, inst: 0, qu: 0, qs: 1",
    },
    ("logrus", "kafka"): {
        "refused": "kafka: client has run out of available brokers to talk to: dial tcp "
        "{ip}:{port}: connect: connection refused",
        "no_endpoints": "kafka: client has run out of available brokers to talk to: dial tcp "
        "{ip}:{port}: connect: connection refused",
        "no_such_host": "kafka: client has run out of available brokers to talk to: dial tcp: "
        "lookup {host}: no such host",
        "timeout": "kafka: Failed to produce message to topic orders: i/o timeout",
    },
}

FLAG_MESSAGES = {
    "adFailure": "GetAds Failed with status Status{code=UNAVAILABLE, description=null, cause=null}",
    "cartFailure": "Can't access cart storage. System.ApplicationException: Wasn't able to "
    "connect to redis",
    "paymentFailure": "Payment request failed. Invalid token. app.loyalty.level=gold",
    "productCatalogFailure": "Error: Product Catalog Fail Feature Flag Enabled",
}


def failure_message(kind: str, family: str, ctx: FailureContext) -> str:
    """How a client in ``family`` words a failed call of the given kind to ``ctx.callee``."""
    fields = ctx.fields()
    if ctx.callee_kind in ("mongodb", "memcached", "redis", "kafka"):
        table = _STORES.get((family, ctx.callee_kind)) or _STORES.get(("go", ctx.callee_kind))
        template = (table or {}).get(kind) or _STORE_GENERIC.get(kind)
        if template:
            return template.format(**fields)
    table = _RPC.get(family, _GO_RPC)
    if kind == "no_endpoints":
        template = table.get("no_endpoints", table["refused"])
    elif kind in table:
        template = table[kind]
    else:
        template = table["upstream"]
        fields["inner"] = f"{ctx.callee}: {kind.replace('_', ' ')}"
    return template.format(**fields)


def down_message(kind: str, service: str, port: int) -> str:
    """Why a service cannot be reached at all, as its own health summary states it."""
    if kind == "no_endpoints":
        return f'service "{service}" has no ready endpoints: no healthy upstream'
    return f"nothing is listening on {service}'s port {port}: connection refused"


# -- operation names ----------------------------------------------------------------

OPERATIONS = {
    # hotel reservation (gRPC)
    "search": "search.Search/Nearby",
    "geo": "geo.Geo/Nearby",
    "rate": "rate.Rate/GetRates",
    "profile": "profile.Profile/GetProfiles",
    "recommendation": "recommendation.Recommendation/GetRecommendations",
    "user": "user.User/CheckUser",
    "reservation": "reservation.Reservation/MakeReservation",
    # social network (Thrift; DeathStarBench names spans <method>_server / _client)
    "compose-post-service": "compose_post",
    "text-service": "compose_text",
    "url-shorten-service": "compose_urls",
    "user-mention-service": "compose_user_mentions",
    "media-service": "compose_media",
    "unique-id-service": "compose_unique_id",
    "user-service": "compose_creator_with_userid",
    "post-storage-service": "store_post",
    "user-timeline-service": "write_user_timeline",
    "home-timeline-service": "write_home_timeline",
    "social-graph-service": "get_followers",
    # astronomy shop (OpenTelemetry demo)
    "ad": "oteldemo.AdService/GetAds",
    "cart": "oteldemo.CartService/GetCart",
    "checkout": "oteldemo.CheckoutService/PlaceOrder",
    "currency": "oteldemo.CurrencyService/Convert",
    "product-catalog": "oteldemo.ProductCatalogService/GetProduct",
    "payment": "oteldemo.PaymentService/Charge",
    "shipping": "oteldemo.ShippingService/GetQuote",
    "email": "POST /send_order_confirmation",
    "quote": "POST /getquote",
    "flagd": "flagd.evaluation.v1.Service/ResolveBoolean",
    "image-provider": "GET /images",
}
"""Service -> the operation its server spans carry (the demo's own names where they exist)."""
_ASTRONOMY_RECOMMENDATION = "oteldemo.RecommendationService/ListRecommendations"

ROUTES = {
    "search": "/hotels",
    "profile": "/hotels",
    "recommendation": "/recommendations",
    "user": "/user",
    "reservation": "/reservation",
    "compose-post-service": "/wrk2-api/post/compose",
    "home-timeline-service": "/wrk2-api/home-timeline/read",
    "user-timeline-service": "/wrk2-api/user-timeline/read",
    "user-service": "/wrk2-api/user/register",
    "social-graph-service": "/wrk2-api/user/follow",
    "media-mongodb": "/upload-media",
    "media-memcached": "/get-media",
    "frontend": "ingress",
    "ad": "GET /api/data",
    "cart": "GET /api/cart",
    "checkout": "POST /api/checkout",
    "currency": "GET /api/currency",
    "product-catalog": "GET /api/products",
    "shipping": "GET /api/shipping",
}
"""First call of a request -> the HTTP route a frontend or proxy served it on."""
_ASTRONOMY_ROUTES = {"recommendation": "GET /api/recommendations", "image-provider": "GET /images"}

STORE_OPERATIONS = {
    "mongodb": "mongo_find",
    "memcached": "memcached_get",
    "redis": "redis_get",
    "kafka": "orders publish",
}


def operation_name(service: str, kind: str, *, family: str = "go", route: str = "") -> str:
    """The span name of a request served by ``service`` (routed to ``route``, for frontends)."""
    otel = family in ("logrus", "node", "java", "dotnet", "python", "envoy")
    if kind in ("frontend", "proxy", "loadgenerator"):
        if otel and route in _ASTRONOMY_ROUTES:
            return _ASTRONOMY_ROUTES[route]
        return ROUTES.get(route, f"/{route}" if route else "/")
    if service == "recommendation" and otel:
        return _ASTRONOMY_RECOMMENDATION
    if kind in STORE_OPERATIONS:
        return STORE_OPERATIONS[kind]
    if service in OPERATIONS:
        return OPERATIONS[service]
    camel = "".join(part.capitalize() for part in service.split("-"))
    return f"{service}.{camel}/Handle"


# -- time formats ---------------------------------------------------------------


def _iso(t: float, *, frac: bool = True) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    if not frac:
        return base + "Z"
    return f"{base}.{int((t % 1) * 1e6):06d}Z"


def rfc3339_nano(t: float) -> str:
    """The kubelet's ``timestamps=true`` prefix format."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{base}.{round((t % 1) * 1e9) % 1_000_000_000:09d}Z"


def _ms(t: float) -> str:
    return f"{int((t % 1) * 1000):03d}"


# -- line rendering ---------------------------------------------------------------

_GO_LEVELS = {"info": "INF", "warn": "WRN", "error": "ERR", "fatal": "FTL", "debug": "DBG"}


def render(family: str, level: str, source: str, message: str, t: float, pod: str) -> str:
    """One log line as the family's logger prints it."""
    gm = time.gmtime(t)
    if family == "go":
        return f"{_iso(t, frac=False)} {_GO_LEVELS[level]} {source} > {message}"
    if family == "logrus":
        level_name = "warning" if level == "warn" else level
        return _json({"message": message, "severity": level_name, "timestamp": _iso(t)})
    if family == "cpp":
        stamp = time.strftime("%Y-%b-%d %H:%M:%S", gm) + f".{int((t % 1) * 1e6):06d}"
        return f"[{stamp}] <{level}>: ({source}) {message}"
    if family == "nginx":
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", gm)
        return f"{stamp} [{'warn' if level == 'warn' else level}] 1#1: {message}"
    if family == "node":
        number = {"debug": 20, "info": 30, "warn": 40, "error": 50, "fatal": 60}[level]
        return _json(
            {"level": number, "time": int(t * 1000), "pid": 1, "hostname": pod, "msg": message}
        )
    if family == "java":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", gm)
        return f"{stamp} - {source} - {message}"
    if family == "dotnet":
        short = {"info": "info", "warn": "warn", "error": "fail", "fatal": "crit"}
        return f"{short.get(level, 'info')}: {source}[0] {message}"
    if family == "python":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", gm) + f",{_ms(t)}"
        return f"{stamp} {level.upper()} [main] [{source}] - {message}"
    if family == "envoy" and level == "access":
        return f"[{_iso(t)}] {message}"
    if family == "envoy":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", gm) + f".{_ms(t)}"
        return f"[{stamp}][1][{level}][{source}] {message}"
    if family == "redis":
        stamp = time.strftime("%d %b %Y %H:%M:%S", gm) + f".{_ms(t)}"
        return f"1:M {stamp} {'#' if level in ('warn', 'error') else '*'} {message}"
    if family == "kafka":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", gm) + f",{_ms(t)}"
        return f"[{stamp}] {level.upper()} {message} ({source})"
    return f"{_iso(t)} {level.upper()} {message}"


def mongo_line(
    t: float, severity: str, component: str, id_: int, ctx: str, msg: str, attr: dict[str, object]
) -> str:
    """MongoDB 4.4+ structured log line."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{_ms(t)}+00:00"
    record: dict[str, object] = {
        "t": {"$date": stamp},
        "s": severity,
        "c": component,
        "id": id_,
        "ctx": ctx,
        "msg": msg,
    }
    if attr:
        record["attr"] = attr
    return _json(record)


def _json(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":"))
