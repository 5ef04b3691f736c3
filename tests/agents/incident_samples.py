"""Raw tool output shaped like a real incident (hotel reservation, geo cannot reach its
database), shared by the compressor tests and the benchmark figures."""

from __future__ import annotations

_SERVICES = [
    "consul",
    "frontend",
    "jaeger",
    "memcached-profile",
    "memcached-rate",
    "memcached-reserve",
    "mongodb-profile",
    "mongodb-rate",
    "mongodb-recommendation",
    "mongodb-reservation",
    "mongodb-user",
    "profile",
    "rate",
    "recommendation",
    "reservation",
    "search",
    "user",
]


def pods_table() -> str:
    """`kubectl get pods`: 17 healthy pods and the crashing geo pod in the middle."""
    rows = [
        "NAME                                     READY   STATUS             RESTARTS        AGE"
    ]
    for i, name in enumerate(_SERVICES):
        pod = f"{name}-{7 + i % 3}d9f8c6b{i % 10}-x{i}x9z"
        rows.append(f"{pod:<40} 1/1     Running            0               4h12m")
        if name == "frontend":
            rows.append(
                f"{'geo-6b4b5d8b9c-x2x9z':<40} 0/1     CrashLoopBackOff   7 (2m ago)      4h12m"
            )
            db = "mongodb-geo-5ff578bcb8-k7q2n"
            rows.append(f"{db:<40} 1/1     Running            0               4h12m")
    return "\n".join(rows)


def geo_logs(lines: int = 2000) -> str:
    """`kubectl logs geo-…`: repetitive info, one secret leak, a failure burst near the end."""
    out = []
    for i in range(lines):
        second = i % 60
        minute = 10 + i // 60 % 50
        out.append(
            f'{{"level":"info","time":"2024-11-25T10:{minute:02d}:{second:02d}.{i % 1000:03d}Z",'
            f'"message":"geo: handled Nearby request lat=37.{7000 + i} lon=-122.{4000 + i} '
            f'took {i % 13}ms trace={i * 7919 % 16**12:012x}"}}'
        )
        if i % 97 == 0:
            out.append(
                f"2024-11-25T10:{minute:02d}:{second:02d}Z INFO cache refresh ok in {i % 7}ms"
            )
    out.insert(
        5,
        "2024-11-25T10:10:05Z INFO connecting to mongodb://admin:geo-Passw0rd@mongodb-geo:27017/geo-db",
    )
    tail = [
        '{"level":"error","time":"2024-11-25T10:43:01.000Z","message":"geo: failed to query '
        'mongodb-geo:27017: (Unauthorized) command find requires authentication"}',
        "2024-11-25T10:43:01Z ERR retrying in 1s",
        '{"level":"fatal","time":"2024-11-25T10:43:02.000Z","message":"geo: giving up after 5 '
        'attempts: not authorized on geo-db to execute command"}',
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "goroutine 1 [running]:",
        "main.main()",
    ]
    for k in range(40):
        out.append(tail[0].replace("10:43:01.000Z", f"10:43:{k:02d}.000Z"))
    return "\n".join(out + tail)


def describe_events() -> str:
    """`kubectl describe pod geo-…`: the Events part."""
    return "\n".join(
        [
            "Name:         geo-6b4b5d8b9c-x2x9z",
            "Namespace:    hotel-reservation",
            "Status:       Running",
            "Events:",
            "  Type     Reason     Age          From     Message",
            "  ----     ------     ----         ----     -------",
            "  Normal   Pulled     12m (x8)     kubelet  Container image present",
            "  Normal   Started    12m (x8)     kubelet  Started container geo",
            "  Warning  BackOff    2m (x160)    kubelet  Back-off restarting failed container",
        ]
    )


def incident_sections() -> list[tuple[str, str]]:
    return [
        ("kubectl get pods -n hotel-reservation", pods_table()),
        ("kubectl describe pod geo-6b4b5d8b9c-x2x9z -n hotel-reservation", describe_events()),
        ("kubectl logs geo-6b4b5d8b9c-x2x9z -n hotel-reservation --tail=2000", geo_logs()),
    ]
