"""The LLM judge reward against real HTTP servers on loopback: one that grades, ones that
answer garbage or too slowly, and none at all."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.judge import JudgeError, judge_reward, parse_score

DECISION = json.dumps(
    {
        "summary": "geo's Service targets a closed port",
        "phase": "diagnosis",
        "hypotheses": ["targetPort"],
        "root_cause": {
            "component": "geo",
            "system_level": "Virtualization",
            "fault_type": "Misconfiguration",
        },
        "confidence": 70,
        "next_action": {"kind": "submit", "instruction": '["geo"]'},
    }
)
Reply = tuple[int, bytes]


def completion(content: str) -> bytes:
    """A chat completions answer whose message says ``content``."""
    return json.dumps(
        {"choices": [{"message": {"role": "assistant", "content": content}}]}
    ).encode()


@dataclass
class Judge:
    """A loopback server speaking /v1/chat/completions; ``answer`` decides each reply."""

    url: str
    answer: Callable[[dict[str, Any]], Reply] = lambda _body: (200, completion('{"score": 7}'))
    delay_s: float = 0.0
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Judge]:
    judge = Judge(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            judge.requests.append((self.path, dict(self.headers), body))
            time.sleep(judge.delay_s)
            status, data = judge.answer(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    judge.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield judge
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def grade(url: str, completions: list[object], **kwargs: Any) -> list[float | None]:
    reward = judge_reward(
        base_url=url, model="judge-1", timeout=kwargs.pop("timeout", 5.0), **kwargs
    )
    prompts = [[{"role": "user", "content": "Incident: geo returns 503"}]] * len(completions)
    columns = {
        "reference_kind": ["submit"] * len(completions),
        "reference_instruction": ['["geo"]'] * len(completions),
        "truth_component": ["geo"] * len(completions),
    }
    return reward(prompts, completions, **columns)


def test_a_grade_is_asked_for_and_scaled(server: Judge) -> None:
    assert grade(f"{server.url}/v1", [DECISION], api_key="k-123") == [0.7]
    [(path, headers, body)] = server.requests
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k-123"
    assert body["model"] == "judge-1"
    assert body["response_format"] == {"type": "json_object"}
    user = body["messages"][-1]["content"]
    assert "Incident: geo returns 503" in user
    assert '"reference_instruction": "[\\"geo\\"]"' in user
    assert '"truth_component": "geo"' in user
    assert "geo's Service targets a closed port" in user


def test_without_a_key_or_json_mode_neither_is_sent(server: Judge) -> None:
    assert grade(server.url, [[{"role": "assistant", "content": DECISION}]], json_mode=False) == [
        0.7
    ]
    [(_, headers, body)] = server.requests
    assert "Authorization" not in headers
    assert "response_format" not in body


def test_an_unreadable_completion_scores_zero_without_asking(server: Judge) -> None:
    assert grade(server.url, ["", "not json", None, DECISION[:50], DECISION]) == [
        0.0,
        0.0,
        0.0,
        0.0,
        0.7,
    ]
    assert len(server.requests) == 1


def test_each_row_gets_its_own_grade(server: Judge) -> None:
    def by_confidence(body: dict[str, Any]) -> Reply:
        text = body["messages"][-1]["content"]
        return 200, completion('{"score": 9}' if '"confidence":90' in text else "3/10")

    server.answer = by_confidence
    other = DECISION.replace('"confidence": 70', '"confidence": 90')
    assert grade(server.url, [DECISION, other, DECISION], max_workers=2) == [0.3, 0.9, 0.3]


@pytest.mark.parametrize(
    "reply",
    [
        (200, b"<html>gateway</html>"),
        (200, b'{"error": "no choices here"}'),
        (200, completion("I think it is pretty good")),
        (200, completion('{"score": 42}')),
        (200, completion('{"score": "seven"}')),
        (200, completion('{"score": true}')),
        (200, json.dumps({"choices": [{"message": {"content": None}}]}).encode()),
        (200, b"x" * 1_100_000),
        (500, b'{"error": "overloaded"}'),
        (401, b'{"error": "bad key"}'),
    ],
)
def test_a_garbage_answer_is_none_with_a_warning(
    server: Judge, reply: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    server.answer = lambda _body: reply
    with caplog.at_level(logging.WARNING, logger="trainer.judge"):
        assert grade(server.url, [DECISION, "garbage"]) == [None, 0.0]
    [record] = caplog.records
    assert "no grade for 1 of 1 completions" in record.getMessage()


def test_a_slow_judge_is_none(server: Judge, caplog: pytest.LogCaptureFixture) -> None:
    server.delay_s = 1.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="trainer.judge"):
        assert grade(server.url, [DECISION], timeout=0.2) == [None]
    assert time.monotonic() - started < 1.0
    assert "timed out" in caplog.text


def test_an_unreachable_judge_is_none(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there now: the connection is refused.
    with caplog.at_level(logging.WARNING, logger="trainer.judge"):
        assert grade(f"http://127.0.0.1:{port}/v1", [DECISION, DECISION]) == [None, None]
    assert "no grade for 2 of 2 completions" in caplog.text
    assert grade("not a url", [DECISION]) == [None]


def test_the_reward_carries_the_name_trl_logs() -> None:
    assert judge_reward(base_url="http://127.0.0.1:1", model="m").__name__ == "judge_reward"
    assert (
        judge_reward(base_url="http://127.0.0.1:1", model="m", name="qwen_judge").__name__
        == "qwen_judge"
    )
    with pytest.raises(ValueError, match="timeout"):
        judge_reward(base_url="http://127.0.0.1:1", model="m", timeout=0)
    with pytest.raises(ValueError, match="max_workers"):
        judge_reward(base_url="http://127.0.0.1:1", model="m", max_workers=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"score": 10, "reason": "same as the reference"}', 1.0),
        ('Here you go: {"score": 4.5}', 0.45),
        ("0", 0.0),
        (" 8/10 ", 0.8),
        ('{"grade": 3} {"score": 6}', 0.6),
    ],
)
def test_parse_score(text: str, expected: float) -> None:
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "great", '{"score": -1}', '{"score": 11}', "12", '{"score": NaN}']
)
def test_parse_score_refuses_what_is_no_grade(text: str) -> None:
    with pytest.raises(JudgeError):
        parse_score(text)


@given(text=st.text(max_size=200))
def test_parse_score_gives_a_grade_in_range_or_a_judge_error(text: str) -> None:
    try:
        value = parse_score(text)
    except JudgeError:
        return
    assert 0.0 <= value <= 1.0
