"""Secret redaction for everything that leaves the cluster: Slack, the store, a model.

Logs, env dumps, YAML and kubeconfigs leak credentials all the time, and a
leaked token in a Slack thread or a training set is hard to take back. Each rule
replaces only the secret itself with `[REDACTED:<kind>]` and keeps the rest of
the line (key, scheme, user, host), so a redacted log line still says what went
wrong. Rules are precompiled and skipped when their trigger text is absent; the
generic `key=value` rules only fire on keys that end in a secret word and skip
placeholders (`null`, `${VAR}`, `***`), so pod names, digests, trace ids, IPs and
resource versions pass untouched. Redaction is idempotent.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Keys whose value is a secret when the key ends with one of these words.
_SECRET_WORD = (
    r"(?:password|passwd|secret|token|credentials?"
    r"|(?:api|access|secret|private|account|auth|encryption|signing|master|shared[_-]?access)"
    r"[_-]?key(?:[_-]?base)?|apikey)"
)
# A value: quoted (up to the closing quote) or bare (up to a delimiter).
_VALUE = r"""(?P<q>["'])?(?P<secret>(?(q)[^"'\n]+|[^\s,;&"'}\]\)]+))"""
_PLACEHOLDERS = frozenset(
    {"null", "none", "nil", "true", "false", "undefined", "<none>", "<redacted>", "redacted"}
)


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    # Rules over `key: value` pairs name the kind after the key and skip placeholders.
    keyed: bool = False


def _rule(kind: str, pattern: str, *triggers: str, keyed: bool = False, flags: int = 0) -> _Rule:
    return _Rule(kind, re.compile(pattern, flags), tuple(t.lower() for t in triggers), keyed)


_I = re.IGNORECASE
_RULES: tuple[_Rule, ...] = (
    _rule(
        "private_key",
        r"(?P<secret>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        # A block cut off before its END line: take the base64 lines that follow.
        r"|(?:(?:\s|\\n)*[A-Za-z0-9+/=]{16,})*))",
        "PRIVATE KEY",
    ),
    _rule(
        "kubeconfig_key",
        r"(?:client-key-data|client-certificate-data)[\"']?[ \t]*:[ \t]*[\"']?"
        r"(?P<secret>[A-Za-z0-9+/=]{8,})",
        "-data",
    ),
    # Pod specs name the variable in one field and give its value in the next.
    _rule(
        "env_value",
        r"(?=[Nn])name:[ \t]*[\"']?[\w.-]*?(?P<word>" + _SECRET_WORD + r")[\"']?[ \t]*\r?\n"
        r"[ \t]*value:[ \t]*" + _VALUE,
        "value:",
        keyed=True,
        flags=_I,
    ),
    _rule(
        "env_value",
        r"\"name\"[ \t]*:[ \t]*\"[\w.-]*?(?P<word>" + _SECRET_WORD + r")\"[ \t]*,[ \t]*"
        r"\"value\"[ \t]*:[ \t]*\"(?P<secret>[^\"]+)",
        '"value"',
        keyed=True,
        flags=_I,
    ),
    _rule(
        "url_password",
        r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"\[]*:(?P<secret>[^\s@/'\"\[]+)(?=@)",
        "://",
    ),
    _rule(
        "jwt",
        r"(?P<secret>eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,})",
        "eyJ",
    ),
    _rule(
        "slack_token",
        r"(?P<secret>(?:xox[abposre](?:\.xox[bp])?|xapp)-[A-Za-z0-9-]{10,})",
        "xox",
        "xapp-",
    ),
    _rule(
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9/_-]+)",
        "hooks.slack.com",
    ),
    _rule(
        "github_token",
        r"(?P<secret>(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
        r"|glpat-[A-Za-z0-9_-]{20,}))",
        "gh",
        "glpat-",
    ),
    _rule(
        "aws_access_key",
        r"(?P<secret>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)"
        r"[A-Z0-9]{16}\b)",
        "A3T",
        "AKIA",
        "ASIA",
        "ABIA",
        "ACCA",
        "AGPA",
        "AIDA",
        "AROA",
        "AIPA",
        "ANPA",
        "ANVA",
        "APKA",
    ),
    _rule("gcp_api_key", r"(?P<secret>AIza[0-9A-Za-z_-]{35})", "AIza"),
    _rule("gcp_token", r"(?P<secret>ya29\.[0-9A-Za-z_-]{20,})", "ya29."),
    _rule("gcp_client_secret", r"(?P<secret>GOCSPX-[A-Za-z0-9_-]{20,})", "GOCSPX-"),
    _rule("azure_client_secret", r"(?P<secret>[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,})", "Q~"),
    _rule("azure_sas", r"[?&]sig=(?P<secret>[^&\s\"']{16,})", "sig="),
    _rule(
        "api_key",
        r"(?P<secret>(?:[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|sk-(?<![\w-]sk-)(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{20,}))",
        "k_live_",
        "k_test_",
        "sk-",
    ),
    _rule(
        "bearer",
        r"(?=[Bb])(?<![\w-])(?i:bearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/=-]{16,})",
        "bearer",
    ),
    _rule(
        "basic_auth",
        r"(?=[Bb])(?<![\w-])(?i:basic)[ \t]+(?P<secret>[A-Za-z0-9+/]{12,}={0,2})",
        "basic",
    ),
    _rule(
        "token",
        r"(?=[Aa])authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:token|apikey|key)[ \t]+)?"
        r"(?P<secret>(?!bearer\b|basic\b)[A-Za-z0-9._~+/=-]{16,})",
        "authorization",
        flags=_I,
    ),
    _rule("password", r"(?:\s-u|--user)[ \t]+[^\s:]+:(?P<secret>[^\s\"']+)", "-u", "--user"),
    _rule(
        "password",
        r"--[\w-]*?(?P<word>" + _SECRET_WORD + r")(?![\w-])(?:=|[ \t]+)" + _VALUE,
        "--",
        keyed=True,
        flags=_I,
    ),
    _rule(
        "password",
        r"(?=[PpSsTtCcAaEeMm])(?P<word>"
        + _SECRET_WORD
        + r")(?![A-Za-z0-9])[\"']?[ \t]*(?:=|:)[ \t]*"
        + _VALUE,
        "pass",
        "secret",
        "token",
        "credential",
        "key",
        keyed=True,
        flags=_I,
    ),
    # Kubernetes Secret data, docker auths: base64 under a key that sounds secret.
    _rule(
        "secret_data",
        r"(?=[KkSsTtPpCcAaDd])(?:key|secret|token|pass|cred|auth|private|dockerconfig|dockercfg)[\w.-]*[\"']?"
        # (?!port/): `valkey-cart:6379/Interactive` is a host, a port and a path.
        r"[ \t]*[:=][ \t]*[\"']?(?P<secret>(?!\d{2,5}/[A-Za-z])"
        r"(?=[A-Za-z0-9+/]*(?:[A-Z][A-Za-z0-9+/]*[a-z]"
        r"|[a-z][A-Za-z0-9+/]*[A-Z]|[A-Za-z0-9+/]=))[A-Za-z0-9+/]{16,}={0,2})(?![A-Za-z0-9+/=])",
        "key",
        "secret",
        "token",
        "pass",
        "cred",
        "auth",
        "private",
        "dockerc",
        flags=_I,
    ),
)


def _key_kind(word: str) -> str:
    word = word.lower()
    if word.startswith("pass"):
        return "password"
    if word.startswith("secret") and "key" not in word:
        return "secret"
    if word == "token":
        return "token"
    if word.startswith("credential"):
        return "credentials"
    return "key"


def _is_placeholder(value: str) -> bool:
    value = value.strip().lower()
    return (
        value in _PLACEHOLDERS
        or value.startswith(("${", "$(", "{{", "[redacted", "<redacted"))
        or set(value) <= {"*", "x"}
    )


class Redactor:
    """Redacts text and counts what it removed, by kind.

    >>> redactor = Redactor()
    >>> redactor.redact("DB_PASSWORD=hunter2 host=db")
    'DB_PASSWORD=[REDACTED:password] host=db'
    >>> redactor.counts
    Counter({'password': 1})
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def redact(self, text: str) -> str:
        lowered = text.lower()
        for rule in _RULES:
            if any(trigger in lowered for trigger in rule.triggers):
                text = rule.pattern.sub(self._replacer(rule), text)
        return text

    def _replacer(self, rule: _Rule) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            secret = match.group("secret")
            if rule.keyed and _is_placeholder(secret):
                return match.group(0)
            kind = _key_kind(match.group("word")) if rule.keyed else rule.kind
            self.counts[kind] += 1
            start, end = match.span("secret")
            offset = match.start()
            whole = match.group(0)
            return f"{whole[: start - offset]}[REDACTED:{kind}]{whole[end - offset :]}"

        return replace


def redact(text: str) -> str:
    """`text` with every secret the rules recognise replaced by `[REDACTED:<kind>]`.

    >>> redact("mongodb://admin:s3cret@mongodb-geo:27017/geo")
    'mongodb://admin:[REDACTED:url_password]@mongodb-geo:27017/geo'
    """
    return Redactor().redact(text)
