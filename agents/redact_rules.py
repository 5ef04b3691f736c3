"""What counts as a secret in ops text: the detectors behind `agents.redact`.

Each detector takes a `ScanText` and yields (start, end, kind) for every secret it
recognises; `agents.redact` runs them on the text and on decoded views of it, merges
what they find and writes the markers. Three kinds of evidence:

- structure: `key=value` pairs in each syntax ops text uses (env, logfmt, JSON, YAML,
  flags, headers, pod env name/value pairs) are judged by the *words* of the key
  (`DB_PASS`, `HMAC_KEY`, `keyStorePassword`; not `KEY_PREFIX`, `passwordSecretRef`)
  and by the value, so placeholders, references (`<set to the key 'password' in secret
  'db'>`, `${X}`) and file paths stay; command lines (`mysql -p…`, `redis-cli -a`,
  `requirepass`, SQL `IDENTIFIED BY`), URLs with credentials, PEM private key blocks;
- formats: detect-secrets' plugins (their patterns, its JWT validation, its basic-auth
  URIs) plus formats they lack (Vault, GCP, Azure, newer GitHub and OpenAI keys). Its
  KeywordDetector is not used: on the corpus it changes 20 of 528 ordinary lines
  (`secretName: mongodb-tls`, `PASSWORD_MIN_LENGTH=12`), finds nothing the key rules
  here miss, and costs about 100 µs a line;
- content: base64 under any key is decoded and scanned, and long random-looking tokens
  are judged by detect-secrets' Shannon entropy, with a limit that grows with length.

Patterns start with a literal wherever they can (lookbehinds come after it), so the
regex engine skips to candidates at the speed of a substring search; most run on the
lowercase twin of the text. That keeps ordinary logs at a few dozen C-speed passes.
Every repetition that can backtrack is bounded, so no input costs quadratic time.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

Hit = tuple[int, int, str]  # (start, end, kind) of one secret


class ScanText:
    """The text under scan and its lowercase twin, whose offsets are the same."""

    __slots__ = ("_lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            lower = self.text.lower()
            if len(lower) != len(self.text):  # `İ` lowers to two characters
                lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in self.text)
            self._lower = lower
        return self._lower


Detector = Callable[[ScanText], Iterable[Hit]]

# -- what a value must look like ----------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STRONG, MEDIUM, WEAK = 3, 2, 1
_PLACEHOLDERS = _words(
    "null none nil true false yes no on off enabled disabled enable disable undefined empty"
    " required optional redacted hidden masked n/a"
)
_REFERENCE = re.compile(
    r"(?:\$\{|\$\(|\{\{|%\(|\[redacted|\[hidden|<redacted|<hidden|<set to |<none>"
    r"|secretkeyref)|\$[A-Za-z_][A-Za-z0-9_]*$|%[A-Za-z_][A-Za-z0-9_]*%$|<[^<>]*>$",
    re.IGNORECASE,
)
_PATH = re.compile(r"(?:~|\.{1,2})?/(?:[\w.@+-]+/)*[\w.@+-]*")
# `kube-system/bootstrap-token-abcdef`: a Kubernetes object named by namespace and name.
_OBJECT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?/[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_MASKED = re.compile(r"[*x•#.?-]+", re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    """Values that stand for a secret without being one: null, `${VAR}`, `****`, a path."""
    value = value.strip()
    return (
        len(value) < 3
        or value.lower() in _PLACEHOLDERS
        or bool(_REFERENCE.match(value))
        or bool(_MASKED.fullmatch(value))
        or bool(_PATH.fullmatch(value))
        or bool(_OBJECT.fullmatch(value))
        or (value.isdigit() and len(value) < 6)
        or not any(c.isalnum() for c in value)
    )


def _looks_like_password(value: str) -> bool:
    """For keys such as `auth` that often hold a mode (`sasl_ssl`, `enabled`) instead."""
    if len(value) < 6 or not any(c.isalpha() for c in value):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_symbol = any(not c.isalnum() and c not in "_-." for c in value)
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return has_digit or has_symbol or (mixed and len(value) >= 12)


_RANDOM_CHARS = re.compile(r"[A-Za-z0-9+/=_-]{16,}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_ENTROPY = Base64HighEntropyString()


def _looks_random(value: str) -> bool:
    """For bare `key`, which names cache keys and label keys as often as crypto keys."""
    if not _RANDOM_CHARS.fullmatch(value) or _UUID.fullmatch(value):
        return False
    classes = (
        any(c.isupper() for c in value)
        + any(c.islower() for c in value)
        + any(c.isdigit() for c in value)
    )
    return classes >= 2 and _ENTROPY.calculate_shannon_entropy(value) >= 3.5


def plausible(value: str, strength: int) -> bool:
    """Whether `value`, found under a key of that strength, is a secret to redact."""
    if is_placeholder(value):
        return False
    if strength == MEDIUM:
        return _looks_like_password(value)
    if strength == WEAK:
        return _looks_random(value)
    return True


# -- what a key must say ------------------------------------------------------------------

_KEY_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PASS_WORDS = _words(
    "pass pw pwd requirepass masterauth pgpass dbpass sshpass rootpass adminpass userpass"
    " mypass smtppass ftppass keypass storepass redispass mongopass ldappass bindpass"
)
# `HMAC_KEY`, `X-Api-Key`: words that make a `key` a secret one. `tls.key` is judged by
# its value; `KEY_PREFIX` and `cache_key` are not keys of this sort at all.
_KEY_QUALIFIERS = _words(
    "api access secret private priv signing sign encryption encrypt enc hmac master license"
    " account auth client session shared storage app service crypto cipher aes jwt webhook"
    " subscription primary secondary admin root deploy ssh gpg pgp db database consumer"
    " write read ingest integration sas dd rsa ecdsa ed25519"
)
_KEY_COMPOUNDS = _words(
    "apikey privatekey secretkey accesskey authkey signingkey masterkey hmackey"
    " encryptionkey licensekey sessionkey clientkey accountkey"
)
# `SECRET_KEY_BASE`, `PASSWORD_B64`: the secret word comes before a word about encoding.
_ENCODING_WORDS = _words("base b64 base64 hex raw encoded plain value")
# `existingSecret`, `password_secret`, `password_secret_key`: the Secret object (or the
# key in it) that holds a value, not the value.
_REFERENCE_WORDS = _words("existing use from k8s kubernetes vault")
_HELD_WORDS = _words(
    "password passwd pass pwd token key keys credentials creds tls cert certificate ca"
)


@functools.lru_cache(maxsize=4096)
def classify_key(key: str) -> tuple[str, int] | None:
    """The kind of secret a key names and how sure that is (STRONG, MEDIUM, WEAK), or None.

    >>> classify_key("DB_PASS"), classify_key("KEY_PREFIX"), classify_key("tls.key")
    (('password', 3), None, ('key', 1))
    """
    words = [w.lower() for w in _KEY_WORD.findall(key)]
    while len(words) > 1 and words[-1] in _ENCODING_WORDS:
        words.pop()
    if not words:
        return None
    last, prev = words[-1], words[-2] if len(words) > 1 else ""
    if (
        last in _PASS_WORDS
        or last.endswith(("password", "passwd", "passphrase", "passcode"))
        or (last.endswith("pwd") and last != "oldpwd")
    ):
        return "password", STRONG
    if last.endswith("secret"):
        return None if prev in _REFERENCE_WORDS | _HELD_WORDS else ("secret", STRONG)
    if last.endswith("token"):
        return "token", STRONG
    if last.endswith(("credentials", "credential", "creds")):
        return "credentials", STRONG
    if last == "key" and prev == "secret" and len(words) > 2 and words[-3] in _HELD_WORDS:
        return None
    if last in _KEY_COMPOUNDS or (last == "key" and prev in _KEY_QUALIFIERS):
        return "key", STRONG
    if last == "key":
        return "key", WEAK
    if last in ("auth", "authorization"):
        return "credentials", MEDIUM
    return None


# -- reading a value ----------------------------------------------------------------------

_QUOTE = re.compile(r"\\{0,3}[\"'`]")
# Values are bounded, so that text made of keys (`password=password=…`) stays linear.
_LONGEST = 8192
_PLAIN_QUOTED = {
    '"': re.compile(r'(?:[^"\\\n]|\\.){0,8192}'),
    "'": re.compile(r"(?:[^'\\\n]|\\.){0,8192}"),
    "`": re.compile(r"[^`\n]{0,8192}"),
}
# Bare values end at whitespace, a quote or an escaped quote (`\"` in JSON in a string);
# inline ones also at `,`, `;` and at `&` that starts the next query parameter.
_INLINE = re.compile(r"(?:[^\s\"'`,;&\\]|\\(?![\\\"'])|&(?![A-Za-z0-9_.\-]+=)){1,1024}")
_TOKEN = re.compile(r"(?:[^\s\"'`\\]|\\(?![\\\"'])){1,1024}")
_COMMENT = re.compile(r"[ \t]+#")
# What may precede a key at the start of a line: a log prefix that `kubectl logs --prefix`
# or the container runtime adds, indentation, a list dash, `export`.
LOG_PREFIX = r"(?:\[[^\]\n]*\] ?|\S+ std(?:out|err) [FP] )?"
_LINE_LEAD = re.compile(
    LOG_PREFIX + r"[ \t]*(?:-[ \t]+|export[ \t]+|declare[ \t]+-x[ \t]+|set[ \t]+)?"
)
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _read_value(text: str, pos: int, mode: str) -> tuple[int, int] | None:
    """The span of the value that starts at `pos`: quoted, or bare in the given `mode`.

    Modes: "env" (`KEY=…` at a line start: up to whitespace), "yaml" (`key: …` at a line
    start: the rest of the line), "inline" (logfmt, query strings), "token" (a flag's
    argument). A quote may be escaped (`\\"`), as in JSON inside a JSON string.
    """
    quote = _QUOTE.match(text, pos)
    if quote:
        start, mark = quote.end(), quote.group()
        if len(mark) == 1:
            body = _PLAIN_QUOTED[mark].match(text, start)
            return (start, body.end()) if body else None
        limit = min(len(text), start + _LONGEST)
        end, line_end = text.find(mark, start, limit), text.find("\n", start, limit)
        if end < 0 or 0 <= line_end < end:
            end = line_end if line_end >= 0 else limit
        return start, end
    if mode == "yaml":
        limit = min(len(text), pos + 1024)
        end = text.find("\n", pos, limit)
        comment = _COMMENT.search(text, pos, limit if end < 0 else end)
        end = comment.start() if comment else limit if end < 0 else end
        return pos, len(text[pos:end].rstrip()) + pos
    bare = (_TOKEN if mode in ("env", "token") else _INLINE).match(text, pos)
    if not bare:
        return None
    end = bare.end()
    # `(using password: YES)`: a closing bracket or a full stop ends a sentence, not a value.
    while end > pos and text[end - 1] in ")]}.":
        opening = _CLOSING.get(text[end - 1])
        if opening and text.count(opening, pos, end - 1) > text.count(text[end - 1], pos, end - 1):
            break
        end -= 1
    return pos, end


def _valued(text: str, pos: int, mode: str, kind: str, strength: int) -> Iterator[Hit]:
    span = _read_value(text, pos, mode)
    if span and plausible(text[span[0] : span[1]], strength):
        yield span[0], span[1], kind


# -- structure: keys and values -----------------------------------------------------------

_SEPARATOR = (
    r"(?P<kq>\\{0,3}[\"'])?\]?"
    r"(?:[ \t]*(?P<sep>:=|=>|=(?!=)|:(?![:/]))[ \t]*|(?P<space>[ \t]+))"
)
_KEYED = tuple(
    re.compile(rf"(?P<word>{word}[a-z0-9_.\-]{{0,64}}){_SEPARATOR}")
    for word in ("pass", "pwd", "pw", "secret", "token", "auth", "key", "cred")
)
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_FLAG_LEAD = re.compile(r"(?:^|[\s'\"])--?\Z")
# `ENV DB_PASS s3cret` in a Dockerfile, or in build output (`Step 5/12 : ENV …`).
_DOCKERFILE_ENV = re.compile(r"(?m)(?:^|[\s\"':\]])ENV[ \t]+\Z")


def keyed(t: ScanText) -> Iterator[Hit]:
    """`key=value`, `key: value`, `"key": "value"`, `--key value` under a secret key."""
    text, seen = t.text, set()
    for pattern in _KEYED:
        redacted_until = 0
        for match in pattern.finditer(t.lower):
            end = match.end("word")
            if end in seen or match.start() < redacted_until:
                continue  # the same key again, or a key inside a value already redacted
            seen.add(end)
            start = _key_start(text, match.start())
            if match.group("sep") is None and not (
                text.startswith("-", start) or "ENV" in text[max(0, start - 8) : start]
            ):
                continue  # `token expired`: whitespace after a word, not after a flag
            found = classify_key(text[start:end].lstrip("-"))
            for hit in _key_value(text, start, match, *found) if found else ():
                redacted_until = max(redacted_until, hit[1])
                yield hit


def _key_start(text: str, pos: int) -> int:
    """Where the key that holds the secret word at `pos` begins (`DB_` in `DB_PASS`)."""
    limit = max(0, pos - 80)
    while pos > limit and text[pos - 1] in _KEY_CHARS:
        pos -= 1
    return pos


def _key_value(
    text: str, start: int, match: re.Match[str], kind: str, strength: int
) -> Iterator[Hit]:
    sep, quoted_key = match.group("sep"), match.group("kq")
    line_start = text.rfind("\n", 0, start) + 1
    if sep is None:
        # Whitespace separates only a flag from its argument (`--password s3cret`) and a
        # Dockerfile's `ENV DB_PASS s3cret`.
        dashes = text[start : start + 2].count("-")
        flag = dashes and _FLAG_LEAD.search(text, max(0, start - 1), start + dashes)
        if (flag and not text.startswith("-", match.end())) or _DOCKERFILE_ENV.search(
            text, max(line_start, start - 8), start
        ):
            yield from _valued(text, match.end(), "token", kind, strength)
        return
    mode = "inline"
    if not quoted_key and _LINE_LEAD.fullmatch(text, line_start, start):
        mode = "yaml" if sep == ":" else "env"
    elif (
        sep == ":"
        and not quoted_key
        and match.end() > match.end("sep")
        and not _QUOTE.match(text, match.end())
    ):
        # `invalid token: signature is invalid` is prose more often than a setting.
        strength = min(strength, MEDIUM)
    if match.group("word").endswith("authorization"):
        yield from _authorization(text, match.end(), mode)
    else:
        yield from _valued(text, match.end(), mode, kind, strength)


_UNQUOTED = re.compile(r"(?:[^\"'`\\]|\\(?![\\\"']))*")
_SCHEMES = {
    "bearer": "bearer",
    "basic": "basic_auth",
    "token": "token",
    "apikey": "key",
    "api-key": "key",
    "key": "key",
    "sso-key": "key",
    "dpop": "token",
}


def _authorization(text: str, pos: int, mode: str) -> Iterator[Hit]:
    """`Authorization: <scheme> <credentials>`: the credentials go, the scheme stays."""
    span = _read_value(text, pos, "yaml" if mode == "inline" else mode)
    if span is None:
        return
    unquoted = _UNQUOTED.match(text, span[0], span[1])
    value = unquoted.group() if unquoted else ""
    scheme, _, rest = value.partition(" ")
    kind = _SCHEMES.get(scheme.lower())
    if kind is None:
        if " " not in value and plausible(value, MEDIUM):
            yield span[0], span[1], "credentials"
        return
    token = _TOKEN.match(text, span[0] + len(value) - len(rest.lstrip()))
    if token and not is_placeholder(token.group().rstrip(",;")):
        yield token.start(), token.start() + len(token.group().rstrip(",;")), kind


_POD_ENV = (
    re.compile(
        r"name:[ \t]*[\"']?(?P<key>[\w.\-]+)[\"']?[ \t]*\r?\n" + LOG_PREFIX + r"[ \t]*value:[ \t]*"
    ),
    re.compile(r"\"name\"[ \t]*:[ \t]*\"(?P<key>[\w.\-]+)\"[ \t]*,[ \t]*\"value\"[ \t]*:[ \t]*"),
)


def pod_env(t: ScanText) -> Iterator[Hit]:
    """A pod spec names the variable in one field and gives its value in the next."""
    for pattern, mode in zip(_POD_ENV, ("yaml", "inline"), strict=True):
        for match in pattern.finditer(t.text):
            found = classify_key(match.group("key"))
            if found:
                yield from _valued(t.text, match.end(), mode, *found)


_XML_ELEMENT = re.compile(
    r"<(?P<key>[a-z0-9_.:\-]{0,64}(?:pass|pwd|secret|token|key|cred|auth)[a-z0-9_.:\-]{0,64})>"
    r"(?P<value>[^<\n]+)</(?P=key)>"
)


def xml_elements(t: ScanText) -> Iterator[Hit]:
    """`<password>s3cret</password>`, as in Maven's settings.xml or a SOAP body."""
    for match in _XML_ELEMENT.finditer(t.lower):
        start, end = match.span("key")
        found = classify_key(t.text[start:end].rpartition(":")[2])
        value = t.text[match.start("value") : match.end("value")]
        if found and plausible(value, found[1]):
            yield (*match.span("value"), found[0])


# -- structure: commands, URLs, headers ---------------------------------------------------

_AFTER_LOGIN = r"(?:(?<=docker login)|(?<=podman login)|(?<=skopeo login)|(?<=buildah login))"
# Command lines and statements that carry a password, matched on the lowercase text;
# each pattern has a `secret` group.
_COMMANDS = tuple(
    re.compile(pattern)
    for pattern in (
        # `mysql -pSECRET`; with a space, mysql prompts and the next word is a database.
        r"mysql(?<![\w-]mysql)(?:admin|dump|sh|import|check|slap|binlog)?\b[^\n|;&]{0,200}?[ \t]-p"
        r"[\"']?(?P<secret>[^\s\"']+)",
        r"sshpass\b[^\n|;&]{0,200}?[ \t]-p[ \t]+[\"']?(?P<secret>[^\s\"'-][^\s\"']*)",
        r"mongo(?<![\w-]mongo)(?:sh)?\b[^\n|;&]{0,200}?[ \t]-p[ \t]+[\"']?"
        r"(?P<secret>[^\s\"'-][^\s\"']*)",
        rf"login{_AFTER_LOGIN}[^\n|;&]{{0,200}}?[ \t]-p[ \t]+[\"']?(?P<secret>[^\s\"'-][^\s\"']*)",
        r"redis-cli\b[^\n|;&]{0,200}?[ \t]-a[ \t]+[\"']?(?P<secret>[^\s\"']+)",
        r"-u(?<=\s-u)[ \t]*[\"']?[^\s:\"'/]{1,128}:(?P<secret>(?!\d+\b|/)[^\s\"']+)",
        r"--(?:proxy-)?user[ \t=][ \t]*[\"']?[^\s:\"'/]{1,128}:(?P<secret>(?!\d+\b|/)[^\s\"']+)",
        r"htpasswd(?=[^\n]{0,200}?[ \t]-[a-z]*b)(?:[ \t]+-[a-z]+)+[ \t]+\S+[ \t]+\S+[ \t]+[\"']?"
        r"(?P<secret>[^\s\"']+)",
        r"rabbitmqctl[ \t]+(?:add_user|change_password)[ \t]+\S+[ \t]+[\"']?"
        r"(?P<secret>[^\s\"']+)",
        r"requirepass(?<![\w-]requirepass)[ \t]+[\"']?(?P<secret>[^\s\"']+)",
        r"masterauth(?<![\w-]masterauth)[ \t]+[\"']?(?P<secret>[^\s\"']+)",
        # Redis MONITOR output; an ACL rule `user bob on >s3cret ~* +@all`.
        r"\"auth\"(?:[ \t]+\"[^\"\n]*\")?[ \t]+\"(?P<secret>[^\"\n]+)\"",
        r"user(?<![\w-]user)[ \t]+\S+(?:[ \t]+\S+){0,8}?[ \t]+(?:on|off|reset)\b"
        r"[^\n]{0,200}?[ \t]>(?P<secret>[^\s\"']+)",
        r"setuser[ \t]+\S+[^\n]{0,200}?[ \t]>(?P<secret>[^\s\"']+)",
        r"identified(?<!\widentified)[ \t]+(?:with[ \t]+\S+[ \t]+)?by[ \t]+(?P<q>['\"])"
        r"(?P<secret>[^'\"\n]+)(?P=q)",
        r"password(?<!\wpassword)[ \t]+(?P<q>['\"])(?P<secret>[^'\"\n]+)(?P=q)",
        r"set password for[ \t]+\S+[ \t]*=[ \t]*(?:password[ \t]*\([ \t]*)?(?P<q>['\"])"
        r"(?P<secret>[^'\"\n]+)(?P=q)",
        r"changeuserpassword\([ \t]*(['\"])[^'\"\n]*\1[ \t]*,[ \t]*(?P<q>['\"])"
        r"(?P<secret>[^'\"\n]+)(?P=q)",
    )
)
# A redis-cli session (`redis> AUTH s3cret`): upper case, so on the text itself.
_REDIS_AUTH = re.compile(
    r"(?m)AUTH(?:(?<=^AUTH)|(?<=[>#$]AUTH)|(?<=[>#$] AUTH))[ \t]+(?:[^\s\"']+[ \t]+)?"
    r"(?P<secret>[^\s\"']+)(?=$|[\"'])"
)
_COMMAND_WORDS = re.compile(
    r"mysql|sshpass|mongo|login|redis-cli|-u|--|htpasswd|rabbitmqctl|requirepass|masterauth"
    r"|\"auth\"|user|identified|password"
)


def commands(t: ScanText) -> Iterator[Hit]:
    if len(t.text) <= SHORT and not _COMMAND_WORDS.search(t.lower) and "AUTH" not in t.text:
        return
    matches = [m for pattern in _COMMANDS for m in pattern.finditer(t.lower)]
    for match in [*matches, *_REDIS_AUTH.finditer(t.text)]:
        start, end = match.span("secret")
        if not is_placeholder(t.text[start:end]):
            yield start, end, "password"


_URL_CREDENTIALS = re.compile(
    r"://[^\s:/@'\"\[\]]{0,128}:(?P<secret>[^\s'\"]{1,256})"
    r"@(?=[A-Za-z0-9\[][A-Za-z0-9.\-\[\]]*(?:[:/?#'\",;)\s]|$))"
)
_GO_DSN = re.compile(r"@(?:tcp|unix|udp)\(")
_DSN_USER = re.compile(r"[\w.-]{1,64}:(?P<secret>[^\s@:/'\"]{1,128})\Z")
_PORT_PATH = re.compile(r"\d{1,5}(?:/|$)")


def urls(t: ScanText) -> Iterator[Hit]:
    """`scheme://user:password@host` (the password may hold `@`, `/` or `:`), Go DSNs."""
    text = t.text
    for match in _URL_CREDENTIALS.finditer(text):
        secret = match.group("secret")
        if not _PORT_PATH.match(secret) and not is_placeholder(secret):
            yield (*match.span("secret"), "url_password")
    # detect-secrets' rule for the plain case, as a second opinion.
    for match in BasicAuthDetector.denylist[0].finditer(text):
        if not is_placeholder(match.group(1)):
            yield (*match.span(1), "url_password")
    for match in _GO_DSN.finditer(text):
        # `root:s3cret@tcp(mysql:3306)/orders`: the user and password end at the `@`.
        head = text.rfind(" ", max(0, match.start() - 194), match.start()) + 1
        user = _DSN_USER.search(text, max(head, match.start() - 194), match.start())
        if user:
            yield (*user.span("secret"), "url_password")


_BEARER = re.compile(r"bearer(?<![\w-]bearer)(?:[ \t]+|%20|\+)(?P<secret>[a-z0-9._~+/=-]{16,})")
_BASIC = re.compile(r"basic(?<![\w-]basic)[ \t]+(?P<secret>[a-z0-9+/]{8,}={0,2})(?![\w+/=])")


def auth_schemes(t: ScanText) -> Iterator[Hit]:
    """`Bearer <token>` and `Basic <base64 of user:password>` wherever they appear."""
    for match in _BEARER.finditer(t.lower):
        token = t.text[match.start("secret") : match.end("secret")]
        if not token.islower() or any(c.isdigit() for c in token):
            yield (*match.span("secret"), "bearer")
    for match in _BASIC.finditer(t.lower):
        token = t.text[match.start("secret") : match.end("secret")]
        decoded = b64decode(token)
        if (decoded is not None and ":" in decoded) or _looks_random(token):
            yield (*match.span("secret"), "basic_auth")


_COOKIE = re.compile(r"cookie(?<!\wcookie)[\"']?[ \t]*:[ \t]*")
_COOKIE_PAIR = re.compile(r"[ \t]*(?P<name>[^=;\s\"]+)=(?P<value>[^;\s\"]*);?")
_SESSION_NAME = re.compile(r"sess|sid|token|auth|jwt|csrf|xsrf|remember|login|secret|key|pass")


def cookies(t: ScanText) -> Iterator[Hit]:
    """Session cookies in `Cookie:` and `Set-Cookie:` headers (not `theme=dark`)."""
    for match in _COOKIE.finditer(t.lower):
        set_cookie = t.lower.endswith("set-", 0, match.start())
        pos = match.end()
        while pair := _COOKIE_PAIR.match(t.text, pos):
            pos = pair.end()
            name, value = pair.group("name"), pair.group("value")
            secretish = _SESSION_NAME.search(name.lower()) or (
                len(value) >= 16 and any(c.isdigit() for c in value)
            )
            if secretish and not is_placeholder(value):
                yield (*pair.span("value"), "cookie")
            if set_cookie:
                break


# -- formats ------------------------------------------------------------------------------

_PEM_HEADER = re.compile(r"-----BEGIN (?P<label>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
# A block cut off before its END line: the base64 lines that follow, each maybe behind a
# log prefix such as `[pod/geo-1/app] `.
_PEM_TAIL = re.compile(
    r"(?:(?:\r?\n|\\r?\\n)(?:[^\n\\]*?[ \t\]:>|])?[A-Za-z0-9+/=]{16,}[ \t]*"
    r"(?=\r?\n|\\r?\\n|\Z|[\"']))*"
)


def private_keys(t: ScanText) -> Iterator[Hit]:
    """Everything between a private key's BEGIN and END lines (or its base64 lines)."""
    if "PRIVATE KEY" not in t.text:
        return
    for match in _PEM_HEADER.finditer(t.text):
        footer = t.text.find(f"-----END {match.group('label')}-----", match.end())
        next_header = t.text.find("-----BEGIN ", match.end())
        if footer >= 0 and (next_header < 0 or footer < next_header):
            yield match.end(), footer, "private_key"
        elif tail := _PEM_TAIL.match(t.text, match.end()):
            yield match.end(), tail.end(), "private_key"


_KUBECONFIG_KEY = re.compile(r"client-key-data[\"']?[ \t]*:[ \t]*[\"']?(?P<secret>[\w+/=]{8,})")
_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


_RSA_SIGNATURE = (171, 342, 512, 683)  # base64url length for 1024- to 4096-bit keys
_SIGNATURE_LENGTHS = {
    "HS256": (43,),
    "HS384": (64,),
    "HS512": (86,),
    "ES256": (86,),
    "ES384": (128,),
    "ES512": (176,),
    "EdDSA": (86,),
    **{f"{family}{bits}": _RSA_SIGNATURE for family in ("RS", "PS") for bits in (256, 384, 512)},
}


def jwts(t: ScanText) -> Iterator[Hit]:
    for match in _JWT.finditer(t.text):
        token = match.group().rstrip(".")
        if JwtTokenDetector.is_formally_valid(token) or len(token.rsplit(".", 1)[-1]) >= 16:
            yield match.start(), match.start() + _jwt_length(token), "jwt"


def _jwt_length(token: str) -> int:
    """The token's length, cut to the signature its algorithm makes: where a JWT was
    joined across lines, what follows the signature is the next line's text."""
    header, claims, signature = token.split(".", 2)
    try:
        alg = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]
    except (ValueError, KeyError, TypeError):
        return len(token)
    fits = [n for n in _SIGNATURE_LENGTHS.get(str(alg), ()) if n <= len(signature)]
    return len(header) + len(claims) + 2 + max(fits) if fits else len(token)


def kubeconfig(t: ScanText) -> Iterator[Hit]:
    for match in _KUBECONFIG_KEY.finditer(t.text):
        yield (*match.span("secret"), "kubeconfig_key")


Format = tuple[str, tuple[str, ...], re.Pattern[str]]  # kind, triggers, pattern
_GITLAB = GitLabTokenDetector.denylist
# detect-secrets' plugins (their patterns; their line scanning is for source files), then
# formats they lack. Triggers gate the patterns that do not start with a literal.
LIBRARY_FORMATS: tuple[Format, ...] = (
    ("aws_access_key", ("A3T", "ABIA", "ACCA", "AKIA", "ASIA"), AWSKeyDetector.denylist[0]),
    ("slack_token", ("xox", "XOX"), SlackDetector.denylist[0]),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), GitHubTokenDetector.denylist[0]),
    ("gitlab_token", ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-"), _GITLAB[0]),
    *(("gitlab_token", (), pattern) for pattern in _GITLAB[1:]),
    ("api_key", ("k_live_",), StripeDetector.denylist[0]),
    ("api_key", (), SendGridDetector.denylist[0]),
    *(("api_key", (), pattern) for pattern in TwilioKeyDetector.denylist),
    *(("api_key", (), pattern) for pattern in PypiTokenDetector.denylist),
    ("api_key", ("T3BlbkFJ",), OpenAIDetector.denylist[0]),
    ("api_key", (), SquareOAuthDetector.denylist[0]),
)
_OWN_FORMATS: tuple[Format, ...] = tuple(
    (kind, (), re.compile(pattern))
    for kind, pattern in (
        *(
            ("aws_access_key", rf"{prefix}(?<![A-Za-z0-9]{prefix})[A-Z0-9]{{16}}\b")
            for prefix in ("AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA")
        ),
        ("slack_token", r"xox(?<![\w-]xox)[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]{10,}"),
        ("slack_token", r"xapp-(?<![\w-]xapp-)[A-Za-z0-9-]{10,}"),
        (
            "slack_webhook",
            r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9/_-]+)",
        ),
        ("github_token", r"gh(?<!\wgh)[pousr]_[A-Za-z0-9]{30,}"),
        ("github_token", r"github_pat_(?<!\wgithub_pat_)[A-Za-z0-9_]{30,}"),
        ("vault_token", r"hv(?<![\w.]hv)[sbr]\.[A-Za-z0-9_-]{20,}"),
        ("gcp_api_key", r"AIza[0-9A-Za-z_-]{35}"),
        ("gcp_token", r"ya29\.[0-9A-Za-z_-]{20,}"),
        ("gcp_client_secret", r"GOCSPX-[A-Za-z0-9_-]{20,}"),
        ("azure_client_secret", r"Q~(?<=[A-Za-z0-9_~.-]{3}\dQ~)[A-Za-z0-9_~.-]{31,34}"),
        ("azure_sas", r"sig=(?<=[?&]sig=)(?P<secret>[^&\s\"']{16,})"),
        ("api_key", r"sk_(?<!\wsk_)(?:live|test)_[A-Za-z0-9]{16,}"),
        ("api_key", r"rk_(?<!\wrk_)(?:live|test)_[A-Za-z0-9]{16,}"),
        ("api_key", r"sk-(?<![\w-]sk-)(?=[\w-]*[A-Z])(?=[\w-]*\d)[A-Za-z0-9_-]{20,}"),
        ("api_key", r"npm_(?<!\wnpm_)[A-Za-z0-9]{36}\b"),
        ("api_key", r"dckr_pat_(?<!\wdckr_pat_)[A-Za-z0-9_-]{20,}"),
        ("api_key", r"shp(?<!\wshp)(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b"),
        ("api_key", r"key-(?<![\w-]key-)[0-9a-f]{32}\b"),
        ("age_secret_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    )
)
_FORMATS = tuple(
    (kind, triggers, pattern, "secret" if "secret" in pattern.groupindex else 0)
    for kind, triggers, pattern in LIBRARY_FORMATS + _OWN_FORMATS
)


def _any_of(patterns: Iterable[re.Pattern[str]]) -> re.Pattern[str]:
    """One pattern that matches where any of `patterns` does: a cheap first test for the
    short texts (an event's summary, a decision's field) that are most calls."""
    branches = []
    for pattern in patterns:
        source = re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern)
        branches.append(f"(?i:{source})" if pattern.flags & re.IGNORECASE else f"(?:{source})")
    return re.compile("|".join(branches))


SHORT = 4096  # characters; longer texts skip the first test, which would scan them twice
_ANY_FORMAT = _any_of(pattern for _, _, pattern, _ in _FORMATS)


def formats(t: ScanText) -> Iterator[Hit]:
    if len(t.text) <= SHORT and not _ANY_FORMAT.search(t.text):
        return
    for kind, triggers, pattern, group in _FORMATS:
        if triggers and not any(trigger in t.text for trigger in triggers):
            continue
        for match in pattern.finditer(t.text):
            yield (*match.span(group), kind)


# -- content ------------------------------------------------------------------------------

_B64_TOKEN = re.compile(r"(?<![\w+/\-.\\%])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/=\-])")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
# A certificate or public key block (a chain is several), whose base64 is not secret.
_PUBLIC = re.compile(
    r"-----BEGIN [A-Z0-9 ]*(?:CERTIFICATE|PUBLIC KEY)[A-Z0-9 ]*-----"
    r"(?:[\s\S]{0,8192}?-----END [A-Z0-9 ]*-----|(?:(?:\r?\n|\\n)[A-Za-z0-9+/=]{16,})*)"
)
_PUBLIC_PREFIX = re.compile(r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+@openssh\.com) +\Z")


def b64decode(token: str) -> str | None:
    """The text a base64 token encodes (a cut-off tail dropped), or None if it is binary."""
    token = token.rstrip("=")
    token = token[: len(token) - len(token) % 4]
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None
    printable = sum((c.isprintable() and c != "\ufffd") or c in "\n\r\t" for c in decoded)
    return decoded if decoded and printable >= 0.95 * len(decoded) else None


def content(t: ScanText) -> Iterator[Hit]:
    """Base64 that decodes to a secret, and long random-looking tokens with no key beside them."""
    text = t.text
    public = [m.span() for m in _PUBLIC.finditer(text)] if "-----BEGIN" in text else []
    public_starts = [start for start, _ in public]
    for match in _B64_TOKEN.finditer(text):
        token, start = match.group().rstrip("="), match.start()
        if _HEX.fullmatch(token) or token.islower() or token.isupper():
            continue
        block = bisect.bisect_right(public_starts, start) - 1
        if (block >= 0 and start < public[block][1]) or (
            "-" in text[max(0, start - 40) : start]
            and _PUBLIC_PREFIX.search(text, max(0, start - 40), start)
        ):
            continue
        decoded = b64decode(token)
        if decoded is not None:
            inner = ScanText(decoded)
            if any(hit for detector in STRUCTURE for hit in detector(inner)):
                yield start, match.end(), "secret_data"
        elif _random_binary(token):
            yield start, match.end(), "high_entropy"


def _random_binary(token: str) -> bool:
    # Random base64 of n characters has entropy near log2(n) - 0.5. detect-secrets' fixed
    # limit of 4.5 misses 29 % of random 32-character tokens and 2 % of 40-character AWS
    # secret keys; log2(n) - 1 misses fewer than 0.1 % of either.
    n = len(token)
    return (
        n >= 32
        and any(c.isdigit() for c in token)
        and token.count("/") <= n // 10
        and _ENTROPY.calculate_shannon_entropy(token) >= min(math.log2(n) - 1.0, 4.5)
    )


# The most specific first: when findings overlap, the first detector names the kind.
STRUCTURE: tuple[Detector, ...] = (
    private_keys,
    kubeconfig,
    jwts,
    formats,
    urls,
    auth_schemes,
    cookies,
    commands,
    pod_env,
    xml_elements,
    keyed,
)
ALL: tuple[Detector, ...] = (*STRUCTURE, content)
