"""Secrets vanish from logs, env dumps, YAML, JSON, URLs and command lines; the rest of
each line stays, and ordinary operations text (pod names, digests, trace ids, paths,
harmless base64) comes through unchanged."""

from __future__ import annotations

import base64
import itertools
import time
from enum import StrEnum

import pytest
from redaction_corpus import LEAKS, ORDINARY, Leak, leaked

from agents.redact import Redactor, find_secrets, redact, redact_json
from agents.redact_rules import classify_key

# Each form the safety-boundary issue names, as the corpus labels it.
ISSUE_FORMS = {
    "aws_bare",
    "escaped_json",
    "env",
    "logfmt",
    "redis",
    "cli",
    "base64_data",
    "url_encoded",
    "jwt_split",
    "pem_split",
    "vault",
    "url_special",
}
OVER_REDACTED = [
    "HTTP basic authentication failed",
    "-Djavax.net.ssl.keyStore=/etc/ssl/keystore.jks -Djavax.net.ssl.keyStoreType=JKS",
    "KEY_PREFIX=AppCheckoutServiceV2",
]


def test_the_corpus_is_large_and_covers_the_forms_the_issue_names() -> None:
    assert len(LEAKS) >= 300
    assert len(ORDINARY) >= 300
    assert {leak.form for leak in LEAKS} >= ISSUE_FORMS
    assert set(OVER_REDACTED) <= set(ORDINARY)
    for leak in LEAKS:
        assert leak.secrets, leak
        assert all(secret in leak.line for secret in leak.secrets), leak


@pytest.mark.parametrize("leak", LEAKS, ids=[f"{leak.form}-{i}" for i, leak in enumerate(LEAKS)])
def test_no_part_of_any_secret_survives(leak: Leak) -> None:
    out = redact(leak.line)
    assert [s for s in leak.secrets if leaked(leak.line, s, out)] == [], out
    assert "[REDACTED:" in out


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_lines_are_untouched(line: str) -> None:
    assert redact(line) == line


def test_redaction_is_idempotent_on_the_whole_corpus() -> None:
    for line in [leak.line for leak in LEAKS] + ORDINARY:
        once = redact(line)
        assert redact(once) == once, line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # An AWS secret access key with no key word beside it.
        (
            "AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "[REDACTED:aws_access_key],[REDACTED:high_entropy]",
        ),
        # Escaped JSON inside a JSON log line.
        (
            '{"msg":"body: {\\"user\\":\\"bob\\",\\"password\\":\\"hunter2-prod\\"}"}',
            '{"msg":"body: {\\"user\\":\\"bob\\",\\"password\\":\\"[REDACTED:password]\\"}"}',
        ),
        ("DB_PASS=Winter2024!", "DB_PASS=[REDACTED:password]"),
        ("MYSQL_PWD=orders-s3cr3t", "MYSQL_PWD=[REDACTED:password]"),
        ("PGPASS=kafka5848_", "PGPASS=[REDACTED:password]"),
        ("REDIS_AUTH=r3d1s-Auth", "REDIS_AUTH=[REDACTED:credentials]"),
        ("HMAC_KEY=8f2b1c9d0e7a", "HMAC_KEY=[REDACTED:key]"),
        (
            'ts=2024-11-25T10:20:30Z level=error msg="failed" pass=hunter2 retry=2',
            'ts=2024-11-25T10:20:30Z level=error msg="failed" pass=[REDACTED:password] retry=2',
        ),
        ("    requirepass S3cretRedis", "    requirepass [REDACTED:password]"),
        (
            "mysql -uroot -pS3cret42 -h mysql.orders.svc orders",
            "mysql -uroot -p[REDACTED:password] -h mysql.orders.svc orders",
        ),
        (
            "  DATABASE_URL: " + base64.b64encode(b"postgres://app:pw-1234@pg:5432/app").decode(),
            "  DATABASE_URL: [REDACTED:secret_data]",
        ),
        (
            "postgres://app:p%40ss%2Fw0rd@pg:5432/app",
            "postgres://app:[REDACTED:url_password]@pg:5432/app",
        ),
        (
            "GET /login?next=https%3A%2F%2Fadmin%3As3cret42%40internal.example.com%2F 302",
            "GET /login?next=https%3A%2F%2Fadmin%3A[REDACTED:url_password]%40internal.example.com"
            "%2F 302",
        ),
        (
            "vault: renewed hvs.CAESIJ7xF0yQ2c5kq9W8d3hZtL1mN4pR6sV8bX0cE2gK3jT5 ttl=768h",
            "vault: renewed [REDACTED:vault_token] ttl=768h",
        ),
        (
            "dial mongodb://admin:p@ss/w0rd@mongo-0.mongo:27017/admin failed",
            "dial mongodb://admin:[REDACTED:url_password]@mongo-0.mongo:27017/admin failed",
        ),
        (
            '{"level":"error","msg":"401","authorization":"Bearer abcDEF1234567890ghiJKL"}',
            '{"level":"error","msg":"401","authorization":"Bearer [REDACTED:bearer]"}',
        ),
        (
            "GET /api/search?token=9f8e7d6c5b4a&lat=37.7 HTTP/1.1 500",
            "GET /api/search?token=[REDACTED:token]&lat=37.7 HTTP/1.1 500",
        ),
        (
            'db.createUser({user: "admin", pwd: "Mongo-Root-9", roles: ["root"]})',
            'db.createUser({user: "admin", pwd: "[REDACTED:password]", roles: ["root"]})',
        ),
        (
            "CREATE USER 'app'@'%' IDENTIFIED BY 'Sql-Pw-77';",
            "CREATE USER 'app'@'%' IDENTIFIED BY '[REDACTED:password]';",
        ),
    ],
)
def test_the_secret_goes_and_the_rest_of_the_line_stays(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_a_jwt_split_across_lines_is_redacted_whole() -> None:
    head = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    claims = "eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjoxNzMyNTMwMDAwfQ"
    signature = "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    out = redact(f"token:\n  {head}.\n  {claims}.\n  {signature}\nnext: line")
    assert claims not in out
    assert signature not in out
    assert out.startswith("token:\n  ")
    assert out.endswith("\nnext: line")


def test_a_private_key_printed_one_line_per_log_record_is_redacted() -> None:
    body = ["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun", "VTLw7onLRnrq0"]
    prefix = "[pod/geo-6b4b5d8b9c-x2x9z/geo] "
    lines = ["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]
    out = redact("\n".join(prefix + line for line in lines))
    assert all(part not in out for part in body)
    assert "-----BEGIN RSA PRIVATE KEY-----[REDACTED:private_key]" in out


@pytest.mark.parametrize(
    "text",
    [
        "      MONGO_PASSWORD:  <set to the key 'password' in secret 'mongodb-geo'>  Optional: no",
        "        - name: MONGO_PASSWORD\n          valueFrom:\n            secretKeyRef:\n"
        "              name: mongodb-geo\n              key: password",
        "    password: null",
        '    password: "${DB_PASSWORD}"',
        "ssl.keystore.password = [hidden]",
        "      --password-file=/run/secrets/db-password",
    ],
)
def test_references_and_placeholders_stay_as_they_are(text: str) -> None:
    assert redact(text) == text


def test_keys_are_judged_by_their_words_not_their_letters() -> None:
    assert classify_key("DB_PASS") == ("password", 3)
    assert classify_key("keyStorePassword") == ("password", 3)
    assert classify_key("X-Api-Key") == ("key", 3)
    assert classify_key("SECRET_KEY_BASE") == ("key", 3)
    for neutral in ("KEY_PREFIX", "passwordSecretRef", "existingSecret", "bypass", "token_count"):
        assert classify_key(neutral) is None, neutral


def test_a_whole_env_dump_and_a_kubeconfig_are_counted_by_kind() -> None:
    dump = "\n".join(
        [
            "HOSTNAME=geo-6b4b5d8b9c-x2x9z",
            "MONGO_PASSWORD=geo-s3cret",
            "SLACK_APP_TOKEN=xapp-1-A0123456789-1234567890123-abcdef0123456789",
            "KUBERNETES_SERVICE_HOST=10.96.0.1",
            "users:",
            "- name: aoi-observer",
            "  user:",
            "    token: 0123456789abcdef0123456789abcdef",
            "    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
        ]
    )
    redactor = Redactor()
    out = redactor.redact(dump)
    for secret in ("geo-s3cret", "xapp-1-A0123456789", "0123456789abcdef0123", "LS0tLS1CRUdJ"):
        assert secret not in out
    for kept in ("HOSTNAME=geo-6b4b5d8b9c-x2x9z", "KUBERNETES_SERVICE_HOST=10.96.0.1"):
        assert kept in out
    assert redactor.counts == {"password": 1, "slack_token": 1, "token": 1, "kubeconfig_key": 1}
    assert redactor.total == 4


def test_find_secrets_gives_merged_spans_in_order() -> None:
    line = "curl -u ops:Pw-123456 'https://ops:Pw-123456@grafana/api?token=abc123456789'"
    spans = find_secrets(line)
    assert spans == sorted(spans)
    assert all(end <= start for (_, end, _), (start, _, _) in itertools.pairwise(spans))
    assert {line[start:end] for start, end, _ in spans} == {"Pw-123456", "abc123456789"}


class _Phase(StrEnum):
    OBSERVE = "observe"


def test_redact_json_walks_every_string_and_drops_secret_keys() -> None:
    decision = {
        "summary": "geo fails: mongodb://admin:geo-Passw0rd@mongodb-geo:27017 refused",
        "hypotheses": ["wrong password", "DB_PASS=hunter2-prod is stale"],
        "next_action": {"kind": "probe", "instruction": "kubectl logs geo --token=abc123def456"},
        "confidence": 80,
        "password": "plainword",
        "credentials": {"user": "bob", "password": "hunter"},
        "phase": _Phase.OBSERVE,
        "pair": ("token=abc123def456", None),
    }
    out = redact_json(decision)
    text = repr(out)
    for secret in ("geo-Passw0rd", "hunter2-prod", "abc123def456", "plainword", "hunter"):
        assert secret not in text
    assert out["summary"].startswith("geo fails: mongodb://admin:[REDACTED:url_password]@")
    assert out["hypotheses"][0] == "wrong password"
    assert out["confidence"] == 80
    assert out["credentials"] == {"user": "bob", "password": "[REDACTED:password]"}
    assert out["phase"] is _Phase.OBSERVE
    assert out["pair"] == ("token=[REDACTED:token]", None)
    assert redact_json(out) == out


def _megabyte_of_logs() -> str:
    leaks = [leak.line for leak in LEAKS]
    lines: list[str] = []
    for i in range(8000):
        lines.append(
            f"2024-11-25T10:20:{i % 60:02d}.123Z INFO id={i:08x} GET /api/user/{i} status=200 "
            f"latency={i % 97}ms pod=frontend-7d9f8c6b5-x2x9z token_count={i % 7}"
        )
        if i % 40 == 0:
            lines.append(leaks[i // 40 % len(leaks)])
    return "\n".join(lines)


def test_one_megabyte_of_logs_in_well_under_a_second() -> None:
    text = _megabyte_of_logs()
    assert len(text) > 1_000_000
    # CPU time, not wall time: other work on a shared machine must not fail this test.
    started = time.process_time()
    out = redact(text)
    elapsed = time.process_time() - started
    assert all(secret not in out for leak in LEAKS for secret in leak.secrets)
    assert elapsed < 1.0, f"{len(text) / 1e6 / elapsed:.1f} MB/s is too slow"


@pytest.mark.parametrize(
    "unit",
    [
        "a://b:",
        "password=",
        "--password ",
        "mysql ",
        "user x on ",
        "a:b@tcp(",
        '\\"',
        "%41",
        "-----BEGIN PRIVATE KEY-----\n",
        "eyJ" + "a" * 60 + "\n",
        "Cookie: a=b; ",
    ],
)
def test_text_made_of_rule_triggers_costs_linear_time(unit: str) -> None:
    text = unit * (100_000 // len(unit))
    started = time.process_time()
    redact(text)
    assert time.process_time() - started < 2.0, "a rule backtracks over the whole text"


@pytest.mark.parametrize(
    "text",
    [
        "password=" + "hunter2" * 300,
        "password=hunter2" * 200,
        "export API_TOKEN=" + "a9B" * 700 + " next",
    ],
)
def test_a_value_longer_than_the_detectors_read_is_redacted_whole(text: str) -> None:
    out = redact(text)
    assert "hunter2" not in out
    assert "a9B" not in out
