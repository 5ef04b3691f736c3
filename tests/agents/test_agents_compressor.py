"""The compressor keeps the evidence (errors verbatim, unhealthy rows, order) and drops the
bulk (repeats, healthy rows, quiet log stretches) within a token budget."""

from __future__ import annotations

import re

from incident_samples import geo_logs, incident_sections, pods_table

from agents.compressor import TIMES, compress, is_error_line


def _quiet_log(lines: int, start: int = 0) -> list[str]:
    return [
        f"2024-11-25T10:{(start + i) // 60 % 60:02d}:{(start + i) % 60:02d}.{i % 1000:03d}Z INFO "
        f"GET /api/hotels?id={i} from 10.244.{i % 5}.{i % 200} took {i % 13}ms "
        f"req={i * 2654435761 % 16**8:08x} pod=frontend-7d9f8c6b5-x{i % 10}x9z"
        for i in range(lines)
    ]


def test_repeats_fold_into_one_line_with_a_count() -> None:
    obs = compress([("kubectl logs frontend", "\n".join(_quiet_log(500)))], budget_tokens=2000)
    lines = obs.text.splitlines()
    assert lines[0] == "$ kubectl logs frontend"
    assert lines[1].endswith(f"({TIMES}500)")
    assert lines[1].startswith("2024-11-25T10:00:00.000Z INFO GET /api/hotels?id=0 ")
    assert obs.folded_lines == 499


def test_errors_never_fold_with_healthy_lines() -> None:
    raw = "\n".join(
        ["GET /api/search status=200 took 3ms"] * 5 + ["GET /api/search status=503 took 3ms"] * 2
    )
    obs = compress([("kubectl logs search", raw)], budget_tokens=500)
    assert f"GET /api/search status=200 took 3ms ({TIMES}5)" in obs.text
    assert f"GET /api/search status=503 took 3ms ({TIMES}2)" in obs.text
    assert obs.errors_kept == 1


def test_error_lines_are_kept_verbatim_and_in_order() -> None:
    logs = geo_logs()
    obs = compress([("kubectl logs geo", logs)], budget_tokens=400)
    error_lines = [line for line in logs.splitlines() if is_error_line(line)]
    distinct = list(dict.fromkeys(re.sub(r"10:43:\d\d", "10:43:XX", e) for e in error_lines))
    kept = [line for line in obs.text.splitlines() if is_error_line(line)]
    assert len(kept) == len(distinct) == obs.errors_kept
    for line in kept:
        assert line.split(f" ({TIMES}")[0] in logs  # verbatim, only the count appended
    assert kept[0].endswith(f"({TIMES}41)")
    assert "panic: runtime error: invalid memory address" in kept[-1]


def test_large_logs_are_windowed_around_errors() -> None:
    lines = (
        _quiet_log(60)
        + ["E1125 10:21:00.000000 1 geo.go:88] connection refused"]
        + [
            f"2024-11-25T11:{i:02d}:00Z DEBUG step {chr(97 + i % 26) * (i % 7 + 1)} done"
            for i in range(60)
        ]
    )
    # Distinct lines so that folding cannot shrink the log: only windowing can.
    lines = [f"{line} #{word}" for line, word in zip(lines, _words(len(lines)), strict=True)]
    obs = compress([("kubectl logs geo", "\n".join(lines))], budget_tokens=4000)
    out = obs.text.splitlines()
    error_at = next(i for i, line in enumerate(out) if "connection refused" in line)
    assert out[error_at - 3 : error_at] == lines[57:60]  # three lines of context before
    assert out[error_at + 1 : error_at + 4] == lines[61:64]  # and after
    markers = [int(m) for m in re.findall(r"… (\d+) lines omitted …", obs.text)]
    assert markers
    assert sum(markers) + (len(out) - 1 - len(markers)) == len(lines)
    # One line of context when asked; head (3) and tail (5) lines stay too.
    narrow = compress([("kubectl logs geo", "\n".join(lines))], budget_tokens=4000, context_lines=1)
    narrow_out = narrow.text.splitlines()
    at = narrow_out.index(lines[60])
    assert narrow_out[at - 2 : at + 3] == [
        "… 56 lines omitted …",
        *lines[59:62],
        "… 54 lines omitted …",
    ]


def _words(count: int) -> list[str]:
    alphabet = "bcdfghjklmnpqrstvwxz"
    return [
        alphabet[i % 20] + alphabet[i // 20 % 20] + alphabet[i // 400 % 20] for i in range(count)
    ]


def test_tables_keep_the_header_and_put_unhealthy_rows_first() -> None:
    obs = compress([("kubectl get pods", pods_table())], budget_tokens=120)
    lines = obs.text.splitlines()
    assert lines[1].startswith("NAME ")
    assert "STATUS" in lines[1]
    assert lines[2].startswith("geo-6b4b5d8b9c-x2x9z")
    assert "CrashLoopBackOff" in lines[2]
    assert re.search(r"… \d+ healthy rows omitted …", obs.text)
    assert obs.tokens <= 120


def test_endpoint_and_event_tables_flag_what_is_wrong() -> None:
    endpoints = "\n".join(
        [
            "NAME           ENDPOINTS                           AGE",
            "frontend       10.244.1.5:5000                     4h",
            "user-service   <none>                              4h",
            "search         10.244.1.9:8082                     4h",
        ]
    )
    events = "\n".join(
        [
            "LAST SEEN   TYPE      REASON             OBJECT                  MESSAGE",
            "4m          Normal    Scheduled          pod/search-1            Assigned",
            "2m          Warning   FailedScheduling   pod/user-service-2      0/3 nodes ok",
        ]
    )
    obs = compress(
        [("kubectl get endpoints", endpoints), ("kubectl get events", events)], budget_tokens=500
    )
    lines = obs.text.splitlines()
    assert lines[2].startswith("user-service   <none>")
    assert lines[lines.index("$ kubectl get events") + 2].startswith("2m          Warning")
    assert obs.errors_kept == 2


def test_the_budget_is_respected_and_errors_survive_it() -> None:
    sections = incident_sections()
    for budget in (2000, 800, 400, 250):
        obs = compress(sections, budget_tokens=budget)
        assert obs.tokens <= budget
        assert obs.within_budget
        assert "CrashLoopBackOff" in obs.text
        assert "(Unauthorized) command find requires authentication" in obs.text
        assert "Back-off restarting failed container" in obs.text


def test_commands_keep_their_order_and_the_ratio_is_reported() -> None:
    sections = incident_sections()
    obs = compress(sections, budget_tokens=600)
    positions = [obs.text.index(f"$ {command}") for command, _ in sections]
    assert positions == sorted(positions)
    assert obs.raw_chars == sum(len(c) + len(r) for c, r in sections)
    assert obs.kept_chars == len(obs.text)
    assert obs.ratio == round(obs.kept_chars / obs.raw_chars, 4)
    assert obs.ratio < 0.02


def test_secrets_are_redacted_before_anything_is_returned() -> None:
    obs = compress(
        [
            ("kubectl logs geo --token=0123456789abcdef", "connecting with password=geo-s3cret"),
            ("kubectl get pods", pods_table()),
        ],
        budget_tokens=300,
    )
    assert "geo-s3cret" not in obs.text
    assert "0123456789abcdef" not in obs.text
    assert "password=[REDACTED:password]" in obs.text
    assert obs.redactions == 2


def test_a_tokenizer_callable_decides_the_budget() -> None:
    calls: list[str] = []

    def words(text: str) -> int:
        calls.append(text)
        return len(text.split())

    obs = compress(incident_sections(), budget_tokens=150, tokenizer=words)
    assert calls
    assert obs.tokens == len(obs.text.split()) <= 150


def test_it_is_deterministic_and_handles_empty_output() -> None:
    sections = [*incident_sections(), ("kubectl get pods -n empty", "")]
    first = compress(sections, budget_tokens=500)
    assert compress(sections, budget_tokens=500) == first
    assert first.text.endswith("$ kubectl get pods -n empty\n(no output)")


def test_errors_alone_over_budget_are_cut_last_and_it_says_so() -> None:
    errors = "\n".join(
        f"E1125 10:20:{i:02d}.000000 1 x.go:1] error number {'x' * i}" for i in range(40)
    )
    obs = compress([("kubectl logs x", errors)], budget_tokens=60)
    assert not obs.within_budget
    assert obs.errors_kept == 5
    assert "lines omitted" in obs.text
