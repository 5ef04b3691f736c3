# ruff: noqa: E501  (the lines are data: long log lines stay as they are printed)
"""Secret-bearing lines as they appear in real cluster output, and ordinary operations
lines that must pass redaction unchanged. Every secret here is made up.

`LEAKS` holds (form, line, secrets): the exact substrings that must disappear. A
line is redacted when none of its secrets survives, not even in part (see
`leaked`). `ORDINARY` holds kubectl output, JSON and logfmt logs, access logs,
stack traces, database logs, env dumps and ConfigMaps, full of container ids,
digests, trace ids, UUIDs, hashed pod names and harmless base64; redaction must
not change a single character of them. Values come from a seeded generator, so
the corpus is the same on every run and large enough to measure a rate.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterator
from typing import NamedTuple
from urllib.parse import quote


class Leak(NamedTuple):
    form: str
    line: str
    secrets: tuple[str, ...]


_B62 = string.ascii_letters + string.digits
_B64 = _B62 + "+/"
_HEX = "0123456789abcdef"
_PODS = (
    "geo",
    "rate",
    "profile",
    "search",
    "frontend",
    "checkout",
    "cart",
    "payment",
    "user-service",
    "orders",
)


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _password(rng: random.Random) -> str:
    """A password a person or a chart would choose: words, digits, a symbol; or random."""
    words = ("Winter", "geo", "Tr0ub4dor", "orders", "Sup3r", "blue", "kafka", "Mongo", "red")
    shape = rng.randrange(4)
    if shape == 0:
        return f"{rng.choice(words)}{rng.randrange(10, 9999)}{rng.choice('!#%&*+-_')}"
    if shape == 1:
        return f"{rng.choice(words).lower()}-s3cr3t-{rng.randrange(10, 99)}"
    if shape == 2:
        return _pick(rng, _B62, rng.randrange(14, 24))
    return _pick(rng, _B62, 6) + rng.choice("!$%^*") + _pick(rng, _B62, 7)


def _b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(bytes(rng.randrange(256) for _ in range(nbytes))).decode()


def _b64text(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _pod(rng: random.Random) -> str:
    return f"{rng.choice(_PODS)}-{_pick(rng, 'bcdf56789', 10)}-{_pick(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)}"


def _ts(rng: random.Random) -> str:
    return (
        f"2024-11-25T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z"
    )


def _ip(rng: random.Random) -> str:
    return f"10.244.{rng.randrange(4)}.{rng.randrange(2, 250)}"


def _uuid(rng: random.Random) -> str:
    h = _pick(rng, _HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["RS256", "HS256", "ES256"]), "typ": "JWT"}
    claims = {
        "iss": "https://auth.example.com",
        "sub": f"user-{rng.randrange(10**6)}",
        "exp": 1732530000 + rng.randrange(10**5),
    }

    def part(obj: dict[str, object]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    size = {"RS256": 256, "HS256": 32, "ES256": 64}[str(header["alg"])]
    signature = base64.urlsafe_b64encode(bytes(rng.randrange(256) for _ in range(size)))
    return f"{part(header)}.{part(claims)}.{signature.decode().rstrip('=')}"


def _pem_body(rng: random.Random, lines: int = 3) -> list[str]:
    return ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + _b64(rng, 24)] + [
        _b64(rng, 48) for _ in range(lines - 1)
    ]


def _aws_secret(rng: random.Random) -> str:
    while True:
        value = _pick(rng, _B64, 40)
        has = (set(value) & set(string.ascii_uppercase), set(value) & set(string.digits))
        if all(has) and not value.startswith("/"):
            return value


def _aws_id(rng: random.Random, prefix: str = "AKIA") -> str:
    return prefix + _pick(rng, string.ascii_uppercase + "234567", 16)


# -- secret-bearing lines, one generator per form ----------------------------------------

_ENV_KEYS = (
    "DB_PASS",
    "MYSQL_PWD",
    "PGPASS",
    "PGPASSWORD",
    "REDIS_AUTH",
    "HMAC_KEY",
    "POSTGRES_PASSWORD",
    "MONGO_INITDB_ROOT_PASSWORD",
    "RABBITMQ_DEFAULT_PASS",
    "JWT_SECRET",
    "SESSION_SECRET",
    "API_KEY",
    "STRIPE_SECRET_KEY",
    "ENCRYPTION_KEY",
    "SIGNING_KEY",
    "OAUTH_CLIENT_SECRET",
    "SMTP_PASSWORD",
    "LDAP_BIND_PASSWORD",
    "LDAP_BIND_PW",
    "KEYSTORE_PASSWORD",
    "ELASTIC_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "MINIO_SECRET_KEY",
    "DD_API_KEY",
    "NEW_RELIC_LICENSE_KEY",
    "VAULT_TOKEN",
    "CONSUL_HTTP_TOKEN",
    "NPM_TOKEN",
    "DOCKER_PASSWORD",
    "REGISTRY_PASSWORD",
    "AUTH_TOKEN",
    "REFRESH_TOKEN",
    "WEBHOOK_SECRET",
    "COOKIE_SECRET",
    "SECRET_KEY_BASE",
    "NEXTAUTH_SECRET",
    "KAFKA_SASL_PASSWORD",
    "MASTER_KEY",
    "REDIS_PASSWORD",
    "MYSQL_ROOT_PASSWORD",
    "ADMIN_PASS",
    "SFTP_PASSWD",
    "APP_SECRET",
    "AZURE_CLIENT_SECRET",
    "SECRET_KEY",
    "ARGOCD_AUTH_TOKEN",
    "SENDGRID_API_KEY",
    "MEMCACHED_PASSWORD",
    "ENCRYPTION_PASSPHRASE",
)


def _env(rng: random.Random) -> Iterator[Leak]:
    shapes = (
        "{k}={v}",
        'export {k}="{v}"',
        "      {k}:  {v}",
        '    "{k}={v}",',
        "declare -x {k}='{v}'",
        "{k}={v}",
    )
    for i, key in enumerate(_ENV_KEYS):
        value = _password(rng)
        yield Leak("env", shapes[i % len(shapes)].format(k=key, v=value), (value,))


def _pod_spec_env(rng: random.Random) -> Iterator[Leak]:
    for key in ("DB_PASS", "MYSQL_PWD", "REDIS_AUTH", "HMAC_KEY", "PGPASS", "API_TOKEN"):
        value = _password(rng)
        yield Leak("env", f'        - name: {key}\n          value: "{value}"', (value,))
        value = _password(rng)
        yield Leak("env", f'{{"name":"{key}","value":"{value}"}}', (value,))


def _logfmt(rng: random.Random) -> Iterator[Leak]:
    keys = (
        "pass",
        "password",
        "pwd",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_token",
        "client_secret",
        "db_pass",
        "auth_token",
    )
    for key in keys:
        value = _password(rng)
        line = (
            f"ts={_ts(rng)} level=error caller=store/db.go:{rng.randrange(40, 400)} "
            f'msg="connect failed" host=postgres.orders.svc user=app {key}={value} '
            f'err="dial tcp {_ip(rng)}:5432: i/o timeout"'
        )
        yield Leak("logfmt", line, (value,))
    for key in ("pass", "password", "token"):
        value = _password(rng)
        yield Leak(
            "logfmt",
            f'time="{_ts(rng)}" level=debug msg="login" user=bob {key}="{value}" remote={_ip(rng)}',
            (value,),
        )


def _json_logs(rng: random.Random) -> Iterator[Leak]:
    keys = (
        "password",
        "pass",
        "passwd",
        "secret",
        "token",
        "accessToken",
        "refresh_token",
        "apiKey",
        "client_secret",
        "dbPassword",
        "adminPass",
        "x-api-key",
    )
    for key in keys:
        value = _password(rng)
        line = json.dumps(
            {
                "ts": _ts(rng),
                "level": "warn",
                "logger": "auth",
                "msg": "login attempt",
                "user": "bob",
                key: value,
                "trace_id": _pick(rng, _HEX, 32),
            },
            separators=(",", ":"),
        )
        yield Leak("json", line, (value,))
    value = _password(rng)
    yield Leak(
        "json",
        '{"level":"info","msg":"datasource","config":{"host":"mysql","user":"app","password":"'
        + value
        + '","pool":10}}',
        (value,),
    )
    value = _password(rng)
    yield Leak("json", f'{{"user": "admin", "password": "{value} x"}}', (f"{value} x",))


def _escaped_json(rng: random.Random) -> Iterator[Leak]:
    for key in ("password", "pass", "client_secret", "token", "apiKey", "secret", "pwd"):
        value = _password(rng)
        inner = json.dumps({"username": "svc-orders", key: value}, separators=(",", ":"))
        line = json.dumps(
            {"level": "debug", "ts": _ts(rng), "msg": "outgoing request", "body": inner},
            separators=(",", ":"),
        )
        yield Leak("escaped_json", line, (value,))
    for _ in range(3):
        value = _password(rng)
        inner = json.dumps({"password": value})
        yield Leak(
            "escaped_json",
            f'DEBUG o.a.h.wire - http-outgoing-3 >> "{json.dumps(inner)[1:-1]}"',
            (value,),
        )
    value = _password(rng)
    inner = json.dumps(json.dumps({"auth": {"password": value}}))
    yield Leak("escaped_json", f'{{"log":{json.dumps(inner)},"stream":"stdout"}}', (value,))


def _yaml(rng: random.Random) -> Iterator[Leak]:
    keys = (
        "password",
        "db.password",
        "spring.datasource.password",
        "adminPassword",
        "rootPassword",
        "secretKey",
        "apiToken",
        "clientSecret",
        "redis-password",
        "smtp_pass",
        "auth.password",
        "replicationPassword",
    )
    for key in keys:
        value = _password(rng)
        quote_char = rng.choice(("", '"', "'"))
        yield Leak("yaml", f"  {key}: {quote_char}{value}{quote_char}", (value,))
    value = _password(rng)
    yield Leak(
        "yaml",
        f"data:\n  redis.conf: |\n    bind 0.0.0.0\n    requirepass {value}\n    maxmemory 256mb",
        (value,),
    )
    value = _password(rng)
    yield Leak("yaml", f"  application.properties: spring.datasource.password={value}", (value,))


def _cli(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "mysql -uroot -p{v} -h mysql.orders.svc orders",
        "mysqladmin -u root -p{v} ping",
        "mysql --user=root --password={v} -h db",
        "exec: mysql --user=root --password {v} -h db",
        "redis-cli -h redis-master -a {v} ping",
        "redis-cli --pass {v} -n 0 INFO replication",
        "PGPASSWORD={v} psql -h postgres -U app -c 'select 1'",
        "sshpass -p {v} ssh deploy@10.0.3.7",
        "mongosh --username admin --password {v} --authenticationDatabase admin",
        "mongo -u admin -p {v} admin --eval 'db.stats()'",
        "docker login -u ci -p {v} registry.example.com",
        "helm upgrade --install db bitnami/postgresql --set auth.postgresPassword={v}",
        "kubectl create secret generic db --from-literal=password={v}",
        "probe: curl -u admin:{v} http://frontend:8080/health",
        "curl -sS --user ops:{v} https://grafana.example.com/api/health",
        "oidc: --client-secret={v} --issuer https://id.example.com",
        "rabbitmqctl add_user svc {v}",
        "htpasswd -b -c /etc/nginx/.htpasswd admin {v}",
    )
    for form in forms:
        value = _password(rng)
        yield Leak("cli", form.format(v=value), (value,))


def _redis(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "requirepass {v}",
        'requirepass "{v}"',
        "masterauth {v}",
        'CONFIG SET requirepass "{v}"',
        '1732530030.123456 [0 10.244.1.7:51234] "AUTH" "{v}"',
        '1732530030.123456 [0 10.244.1.7:51234] "AUTH" "default" "{v}"',
        "redis> AUTH {v}",
        "--requirepass {v} --appendonly yes",
        "user default on >{v} ~* &* +@all",
    )
    for form in forms:
        value = _password(rng)
        yield Leak("redis", form.format(v=value), (value,))


def _sql(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "CREATE USER 'app'@'%' IDENTIFIED BY '{v}';",
        "2024-11-25T10:20:31.123456Z 12 Query\tALTER USER 'root'@'localhost' IDENTIFIED BY '{v}'",
        "ALTER USER postgres WITH PASSWORD '{v}';",
        "2024-11-25 10:20:31.123 UTC [88] LOG:  statement: ALTER ROLE app PASSWORD '{v}'",
        "CREATE ROLE replicator WITH REPLICATION LOGIN ENCRYPTED PASSWORD '{v}';",
        'db.createUser({{user: "admin", pwd: "{v}", roles: [{{role: "root", db: "admin"}}]}})',
        'db.changeUserPassword("reporting", "{v}")',
        "SET PASSWORD FOR 'app'@'%' = '{v}';",
    )
    for form in forms:
        value = _password(rng)
        yield Leak("sql", form.format(v=value), (value,))


def _urls(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "connecting to mongodb://admin:{v}@mongodb-geo:27017/geo-db?authSource=admin",
        "DATABASE_URL=postgresql://aoi:{v}@postgres.default.svc:5432/aoi",
        "cache: redis://:{v}@redis-master:6379/0",
        "broker amqp://guest:{v}@rabbitmq:5672/ unreachable",
        "E1125 10:20:31 geo: dial mongodb://admin:{v}@mongodb-geo:27017/geo-db failed",
        "git clone https://deploy:{v}@git.example.com/org/repo.git",
        "spring.datasource.url=jdbc:mysql://app:{v}@mysql:3306/orders",
        "mongodb+srv://svc:{v}@cluster0.abcde.mongodb.net/test?retryWrites=true",
        "[mysql] dsn=root:{v}@tcp(mysql.orders.svc:3306)/orders?parseTime=true",
        "ELASTICSEARCH_URL=https://elastic:{v}@es-master:9200",
    )
    for form in forms:
        value = _password(rng)
        yield Leak("url", form.format(v=value), (value,))
    # Passwords that hold `@`, `/` or `:`.
    for form in (
        "mongodb://admin:{v}@mongodb-rate:27017/rate",
        "postgres://app:{v}@pg-0.pg:5432/app?sslmode=disable",
        "redis://default:{v}@redis:6379",
        'uri: "amqps://svc:{v}@mq.example.com:5671/prod"',
    ):
        value = (
            f"{_pick(rng, _B62, 4)}@{_pick(rng, _B62, 3)}/{_pick(rng, _B62, 5)}:{rng.randrange(99)}"
        )
        yield Leak("url_special", form.format(v=value), (value,))
    for _ in range(4):
        value = f"p@ss/{_pick(rng, _B62, 8)}"
        yield Leak(
            "url_special", f"dial mongodb://root:{value}@mongo-0.mongo:27017 failed", (value,)
        )


def _url_encoded(rng: random.Random) -> Iterator[Leak]:
    """Credentials as a browser or a client library percent-encodes them."""
    for _ in range(4):
        enc = quote(_password(rng) + "@/#", safe="")
        yield Leak("url_encoded", f"postgres://app:{enc}@pg:5432/app", (enc,))
    for _ in range(3):
        value = _password(rng)
        enc = quote(f"https://admin:{value}@internal.example.com/", safe="")
        yield Leak("url_encoded", f"GET /login?next={enc} HTTP/1.1 302", (quote(value, safe=""),))
    for _ in range(3):
        value = _password(rng)
        body = quote(f"username=bob&password={value}", safe="")
        yield Leak("url_encoded", f'POST /callback body="{body}"', (quote(value, safe=""),))
    for _ in range(3):
        value = _password(rng)
        body = quote(json.dumps({"password": value}), safe="")
        yield Leak("url_encoded", f"GET /api/session?payload={body} 400", (quote(value, safe=""),))
    for _ in range(3):
        enc = quote(_password(rng) + "!", safe="")
        yield Leak(
            "url_encoded",
            f'{_ip(rng)} - - "POST /oauth/token?grant_type=password&username=bob&password={enc} HTTP/1.1" 401',
            (enc,),
        )


def _aws(rng: random.Random) -> Iterator[Leak]:
    for prefix in ("AKIA", "ASIA", "AKIA", "ASIA", "AKIA"):
        key_id, secret = _aws_id(rng, prefix), _aws_secret(rng)
        yield Leak("aws", f"AWS_ACCESS_KEY_ID={key_id}", (key_id,))
        yield Leak("aws", f"aws_secret_access_key = {secret}", (secret,))
    # No key word beside the secret: a credentials CSV, a tuple in a log, a JSON field.
    for _ in range(4):
        key_id, secret = _aws_id(rng), _aws_secret(rng)
        yield Leak("aws_bare", f"{key_id},{secret}", (key_id, secret))
    for _ in range(4):
        key_id, secret = _aws_id(rng), _aws_secret(rng)
        yield Leak(
            "aws_bare",
            f"boto: loaded static credentials ({key_id}, {secret}) from env",
            (key_id, secret),
        )
    for _ in range(4):
        secret = _aws_secret(rng)
        yield Leak(
            "aws_bare", f"  credentials: {{ id: {_aws_id(rng)} value: {secret} }}", (secret,)
        )
    for _ in range(3):
        key_id, secret, session = _aws_id(rng, "ASIA"), _aws_secret(rng), _b64(rng, 120)
        yield Leak(
            "aws",
            f'{{"Credentials": {{"AccessKeyId": "{key_id}", "SecretAccessKey": "{secret}", '
            f'"SessionToken": "{session}", "Expiration": "2024-11-25T11:20:30Z"}}}}',
            (key_id, secret, session),
        )


def _slack(rng: random.Random) -> Iterator[Leak]:
    for _ in range(3):
        token = f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-{_pick(rng, _B62, 24)}"
        yield Leak("slack", f"SLACK_BOT_TOKEN={token}", (token,))
    for _ in range(3):
        token = f"xoxp-{rng.randrange(10**9, 10**10)}-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-{_pick(rng, _HEX, 32)}"
        yield Leak("slack", f"posting as {token} ok", (token,))
    for _ in range(3):
        token = f"xapp-1-A{rng.randrange(10**9, 10**10)}-{rng.randrange(10**12, 10**13)}-{_pick(rng, _HEX, 64)}"
        yield Leak("slack", f"  app_token: {token}", (token,))
    for _ in range(3):
        path = f"T{_pick(rng, string.ascii_uppercase + string.digits, 8)}/B{_pick(rng, string.ascii_uppercase + string.digits, 8)}/{_pick(rng, _B62, 24)}"
        yield Leak(
            "slack",
            f"alertmanager: notify slack webhook=https://hooks.slack.com/services/{path} status=200",
            (path,),
        )


def _github(rng: random.Random) -> Iterator[Leak]:
    for prefix in ("ghp_", "gho_", "ghs_", "ghu_", "ghr_"):
        token = prefix + _pick(rng, _B62, 36)
        yield Leak("github", f"git clone https://{token}@github.com/org/repo", (token,))
        token = prefix + _pick(rng, _B62, 36)
        yield Leak(
            "github",
            f'{{"level":"info","msg":"oauth ok","token":"{token}"}}',
            (token,),
        )
    for _ in range(2):
        token = f"github_pat_11{_pick(rng, string.ascii_uppercase + string.digits, 20)}_{_pick(rng, _B62, 59)}"
        yield Leak("github", f"GITHUB_TOKEN={token}", (token,))
    for _ in range(2):
        token = "glpat-" + _pick(rng, _B62 + "-_", 20)
        yield Leak("github", f"remote: using {token} for https://gitlab.example.com", (token,))


def _jwts(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "Authorization: Bearer {t}",
        "I1125 10:20:30.1 client.go:42] using token={t} for apiserver",
        '"headers": {{"authorization": "Bearer {t}"}}',
        "Cookie: session={t}; theme=dark",
        '{{"access_token":"{t}","token_type":"Bearer","expires_in":3600}}',
        "GET /callback#id_token={t}&state=af0ifjsldkj HTTP/1.1",
        'level=warn msg="jwt rejected" jwt={t} reason=expired',
        "oidc: verifying {t}",
    )
    for form in forms:
        token = _jwt(rng)
        yield Leak("jwt", form.format(t=token), (token,))


def _jwt_split(rng: random.Random) -> Iterator[Leak]:
    for _ in range(3):
        token = _jwt(rng)
        head, claims, sig = token.split(".")
        yield Leak("jwt_split", f"token:\n  {head}.\n  {claims}.\n  {sig}", (claims, sig))
    for _ in range(3):
        token = _jwt(rng)
        wrapped = "\n".join(token[i : i + 64] for i in range(0, len(token), 64))
        parts = tuple(token[i : i + 64] for i in range(0, len(token), 64))
        yield Leak("jwt_split", f"Authorization: Bearer\n{wrapped}", parts)


def _pems(rng: random.Random) -> Iterator[Leak]:
    for label in ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"):
        body = _pem_body(rng)
        block = "\n".join([f"-----BEGIN {label}-----", *body, f"-----END {label}-----"])
        yield Leak("private_key", block, tuple(body))
    for _ in range(3):
        body = _pem_body(rng, 2)
        pem = "\\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----"])
        yield Leak(
            "private_key",
            f'{{"type": "service_account", "private_key": "{pem}\\n", "client_email": "x@p.iam.gserviceaccount.com"}}',
            tuple(body),
        )
    for _ in range(2):
        body = _pem_body(rng)
        yield Leak(
            "private_key",
            "key.pem: -----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(body) + "\n(truncated)",
            tuple(body),
        )
    # One PEM line per log record, as a container prints it.
    for _ in range(3):
        body = _pem_body(rng)
        prefix = f"[pod/{_pod(rng)}/app] "
        lines = ["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]
        yield Leak("pem_split", "\n".join(prefix + x for x in lines), tuple(body))
    for _ in range(3):
        line = _b64(rng, 48)
        yield Leak("pem_split", line, (line,))


def _vault(rng: random.Random) -> Iterator[Leak]:
    for prefix, length in (("hvs.", 91), ("hvb.", 138), ("hvr.", 24), ("hvs.", 24)):
        for _ in range(2):
            token = prefix + _pick(rng, _B62 + "_-", length)
            yield Leak("vault", f"vault: renewed lease with {token} ttl=768h", (token,))
    token = "s." + _pick(rng, _B62, 24)
    yield Leak("vault", f"X-Vault-Token: {token}", (token,))
    token = "hvs." + _pick(rng, _B62, 91)
    yield Leak("vault", f'{{"auth":{{"client_token":"{token}","policies":["default"]}}}}', (token,))


def _secret_data(rng: random.Random) -> Iterator[Leak]:
    """Secret manifests printed by helm or `last-applied-configuration`: base64 under any key."""
    url = f"postgres://app:{_password(rng)}@pg:5432/app"
    yield Leak("base64_data", f"  DATABASE_URL: {_b64text(url)}", (_b64text(url),))
    url = f"mongodb://root:{_password(rng)}@mongo:27017"
    yield Leak("base64_data", f"  connection-string: {_b64text(url)}", (_b64text(url),))
    auth = _b64text(f"ci:{_password(rng)}")
    cfg = _b64text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
    yield Leak("base64_data", f"  .dockerconfigjson: {cfg}", (cfg,))
    props = _b64text(f"spring.datasource.password={_password(rng)}\n")
    yield Leak("base64_data", f"  application.properties: {props}", (props,))
    pem = _b64text("-----BEGIN PRIVATE KEY-----\n" + _pem_body(rng, 1)[0])
    yield Leak("base64_data", f"  tls.key: {pem}", (pem,))
    for name in ("session", "master", "hmac", "cookie", "data.bin"):
        raw = _b64(rng, 32)
        yield Leak("base64_data", f"  {name}: {raw}", (raw,))
    for key in ("username", "DB_URL"):
        value = _b64text(f"redis://:{_password(rng)}@redis:6379/0")
        annotation = json.dumps(
            {
                "apiVersion": "v1",
                "data": {key: value},
                "kind": "Secret",
                "metadata": {"name": "db"},
            },
            separators=(",", ":"),
        )
        yield Leak("base64_data", f"      {annotation}", (value,))
    for _ in range(3):
        value = _b64text(_password(rng))
        yield Leak("base64_data", f"  password: {value}", (value,))
    value = _b64(rng, 24)
    yield Leak("base64_data", f"  tls.key: {value}", (value,))
    value = _b64text(f"-----BEGIN RSA PRIVATE KEY-----\n{_pem_body(rng, 1)[0]}")
    yield Leak("base64_data", f"    client-key-data: {value}", (value,))


def _headers(rng: random.Random) -> Iterator[Leak]:
    for _ in range(3):
        value = _pick(rng, _B62, 28)
        yield Leak("bearer", f"Authorization: Bearer {value}", (value,))
    for _ in range(3):
        value = _b64text(f"admin:{_password(rng)}")
        yield Leak("basic_auth", f"Authorization: Basic {value}", (value,))
    value = _b64text(f"ops:{_password(rng)}")
    yield Leak(
        "basic_auth",
        f'[{_ts(rng)}] "GET /api/metrics HTTP/1.1" 200 - authorization="Basic {value}"',
        (value,),
    )
    for header in ("X-Api-Key", "X-Auth-Token", "Api-Key", "PRIVATE-TOKEN", "X-Vault-Token"):
        value = _pick(rng, _HEX, 32)
        yield Leak("header", f"{header}: {value}", (value,))
    value = _pick(rng, _HEX, 40)
    yield Leak("header", f"Authorization: token {value}", (value,))
    for _ in range(3):
        session, csrf = _pick(rng, _B62, 32), _pick(rng, _B62, 32)
        yield Leak(
            "cookie",
            f"Cookie: sessionid={session}; csrftoken={csrf}; lang=en",
            (session, csrf),
        )
    value = _pick(rng, "ABCDEF" + string.digits, 32)
    yield Leak("cookie", f"Set-Cookie: JSESSIONID={value}; Path=/; HttpOnly", (value,))


def _vendor_tokens(rng: random.Random) -> Iterator[Leak]:
    samples = (
        (
            "GET /maps/api/geocode/json?address=x&key={t} HTTP/1.1",
            "AIza" + _pick(rng, _B62 + "-_", 35),
        ),
        ("gcloud auth: access token {t} expires in 3599", "ya29." + _pick(rng, _B62 + "-_", 60)),
        ("oauth client {t} configured", "GOCSPX-" + _pick(rng, _B62 + "-_", 28)),
        ("charge failed: using {t}", "sk_live_" + _pick(rng, _B62, 24)),
        ("stripe: rk_test key {t} loaded", "rk_test_" + _pick(rng, _B62, 24)),
        ("OPENAI_API_KEY={t}", "sk-proj-" + _pick(rng, _B62, 40)),
        ("sendgrid: using {t}", f"SG.{_pick(rng, _B62, 22)}.{_pick(rng, _B62 + '-_', 43)}"),
        ("//registry.npmjs.org/:_authToken={t}", "npm_" + _pick(rng, _B62, 36)),
        ("pypi upload with {t}", "pypi-AgEIcHlwaS5vcmc" + _pick(rng, _B62 + "-_", 140)),
        ("docker login -u ci --password-stdin <<< {t}", "dckr_pat_" + _pick(rng, _B62 + "-_", 27)),
        ("shopify: {t}", "shpat_" + _pick(rng, _HEX, 32)),
        ("using credential {t} for tenant", f"abc8Q~{_pick(rng, _B62, 34)}"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={t};EndpointSuffix=core.windows.net",
            _b64(rng, 64),
        ),
        (
            "GET https://acct.blob.core.windows.net/c/b?sv=2020-08-04&sr=b&sig={t} 200",
            quote(_b64(rng, 32), safe=""),
        ),
        ("DJANGO_SECRET_KEY={t}", "django-insecure-" + _pick(rng, _B62 + "!@#%^&*(-_=+)", 50)),
        ("APP_KEY={t}", "base64:" + _b64(rng, 32)),
    )
    for form, token in samples:
        yield Leak("vendor", form.format(t=token), (token,))


def _high_entropy(rng: random.Random) -> Iterator[Leak]:
    forms = (
        "generated {t}",
        "{ts} INFO  rotated credential for svc-orders: {t}",
        '{{"level":"info","msg":"issued","value":"{t}"}}',
        "  {t}",
        "curl -H 'X-Signature: {t}' https://api.example.com/v1/hooks",
    )
    for i in range(10):
        token = _b64(rng, 33 + i % 3 * 12)
        yield Leak("high_entropy", forms[i % len(forms)].format(t=token, ts=_ts(rng)), (token,))


def _kubeconfig(rng: random.Random) -> Iterator[Leak]:
    for _ in range(3):
        token = _pick(rng, _HEX, 32)
        yield Leak("kubeconfig", f"    token: {token}", (token,))
        data = _b64text("-----BEGIN RSA PRIVATE KEY-----\n") + _b64(rng, 30)
        yield Leak("kubeconfig", f"    client-key-data: {data}", (data,))


# One of each of the rarer forms, written out by hand: (line, secrets).
_MISC: list[tuple[str, tuple[str, ...]]] = [
    (
        "export AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample0123456789abcdefAbCdEf",
        ("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample0123456789abcdefAbCdEf",),
    ),
    (
        "//registry.npmjs.org/:_authToken=npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        ("npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",),
    ),
    ("ENV POSTGRES_PASSWORD Sup3rS3cret!", ("Sup3rS3cret!",)),
    (
        "helm repo add internal https://charts.example.com --username ci --password Chart5ecret99",
        ("Chart5ecret99",),
    ),
    ('"password" => "RubyHash42!"', ("RubyHash42!",)),
    ('password = "toml-Pa55"', ("toml-Pa55",)),
    ("    <password>MavenRepoPw1</password>", ("MavenRepoPw1",)),
    (
        "      <server><id>nexus</id><username>deploy</username><password>N3xusDeploy!</password></server>",
        ("N3xusDeploy!",),
    ),
    ("jdbc:postgresql://db:5432/app?user=app&password=JdbcPw_2024", ("JdbcPw_2024",)),
    (
        "Server=sql01;Database=orders;User Id=sa;Password=SqlServerPw1!;TrustServerCertificate=true",
        ("SqlServerPw1!",),
    ),
    ("docker run -e MYSQL_ROOT_PASSWORD=DockerRunPw1 mysql:8", ("DockerRunPw1",)),
    ("--set-string secrets.jwtKey=JwtKeyValue123", ("JwtKeyValue123",)),
    (
        "X-Amz-Security-Token=FwoGZXIvYXdzEBYaDHr0ExampleTokenValue0123456789",
        ("FwoGZXIvYXdzEBYaDHr0ExampleTokenValue0123456789",),
    ),
    ("{Username:app Password:GoStructPw}", ("GoStructPw",)),
    ("User{name='bob', password='ToStringPw1'}", ("ToStringPw1",)),
    ("/usr/bin/java -Dspring.datasource.password=JavaPropPw1 -jar app.jar", ("JavaPropPw1",)),
    (
        'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="KafkaJaasPw1";',
        ("KafkaJaasPw1",),
    ),
    ('{"uri":"mongodb:\\/\\/svc:EscSlashPw1@mongo:27017\\/db"}', ("EscSlashPw1",)),
    ("default_pass = RabbitDefault1", ("RabbitDefault1",)),
    ("nats://natsuser:NatsPw123@nats:4222", ("NatsPw123",)),
    (
        "Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef",
        ("0123456789abcdef0123456789abcdef",),
    ),
    ("mailgun: key-0123456789abcdef0123456789abcdef", ("0123456789abcdef0123456789abcdef",)),
    (
        "AGE-SECRET-KEY-1QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQPZRY9X8GF2TVDW0S3JN54KHCE",
        ("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQPZRY9X8GF2TVDW0S3JN54KHCE",),
    ),
    ('curl -H "Authorization: Basic dXNlcjpzM2NyZXRQYXNz" http://api', ("dXNlcjpzM2NyZXRQYXNz",)),
    ("redis-cli -u redis://default:RedisUrlPw1@redis:6379 ping", ("RedisUrlPw1",)),
    (
        "kubectl create secret docker-registry regcred --docker-server=r.example.com --docker-username=ci --docker-password=RegCredPw1",
        ("RegCredPw1",),
    ),
    ("{'password': 'PyReprPw1'}", ("PyReprPw1",)),
    ("stringData:\n  password: StringDataPw1", ("StringDataPw1",)),
    ("Authorization: Bearer abcDEF1234567890ghiJKLmno", ("abcDEF1234567890ghiJKLmno",)),
    ("GET /api/search?token=9f8e7d6c5b4a&lat=37.7 HTTP/1.1 500", ("9f8e7d6c5b4a",)),
]

LEAK_FORMS: tuple[Callable[[random.Random], Iterator[Leak]], ...] = (
    _env,
    _pod_spec_env,
    _logfmt,
    _json_logs,
    _escaped_json,
    _yaml,
    _cli,
    _redis,
    _sql,
    _urls,
    _url_encoded,
    _aws,
    _slack,
    _github,
    _jwts,
    _jwt_split,
    _pems,
    _vault,
    _secret_data,
    _headers,
    _vendor_tokens,
    _high_entropy,
    _kubeconfig,
)


def _leaks() -> list[Leak]:
    rng = random.Random(20241125)
    generated = [leak for form in LEAK_FORMS for leak in form(rng)]
    return generated + [Leak("misc", line, secrets) for line, secrets in _MISC]


LEAKS: list[Leak] = _leaks()


def leaked(line: str, secret: str, out: str) -> bool:
    """Whether any part of `secret` (8 characters, or all of a shorter one) survives in `out`.

    Windows that also occur in the rest of the line (a key name, a host) do not count.
    """
    if secret in out:
        return True
    width = min(8, len(secret))
    rest = line.replace(secret, "\0")
    return any(
        secret[i : i + width] in out and secret[i : i + width] not in rest
        for i in range(len(secret) - width + 1)
    )


# -- ordinary operations text ------------------------------------------------------------

# Lines that old rules redacted although they hold no secret, and look-alikes.
_LOOK_ALIKES = [
    "HTTP basic authentication failed",
    'nginx: [error] 31#31: *7 user "admin": HTTP basic authentication failed, client: 10.244.0.1',
    "-Djavax.net.ssl.keyStore=/etc/ssl/keystore.jks -Djavax.net.ssl.keyStoreType=JKS",
    "JAVA_OPTS=-Djavax.net.ssl.trustStore=/etc/ssl/truststore.jks -Djavax.net.ssl.keyStore=/etc/ssl/keystore.jks",
    "KEY_PREFIX=AppCheckoutServiceV2",
    "CACHE_KEY_PREFIX=CheckoutServiceCacheV3",
    "ssl.keystore.location=/etc/kafka/secrets/kafka.keystore.jks",
    "ssl.keystore.password = [hidden]",
    "ssl.truststore.password = [hidden]",
    "sasl.jaas.config = [hidden]",
    "sasl.mechanism = SCRAM-SHA-512",
    "      --tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    "      --service-account-key-file=/etc/kubernetes/pki/sa.pub",
    "      --service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
    "      --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
    "      --token-auth-file=/etc/kubernetes/auth/tokens.csv",
    "      --password-file=/run/secrets/db-password",
    "      - --client-secret-file=/etc/oauth2/client-secret",
    "cart: dial tcp valkey-cart:6379/InteractiveSessionCache: connection refused",
    "      secretName: mongodb-tls",
    "kind: Secret",
    "type: kubernetes.io/service-account-token",
    "type: kubernetes.io/dockerconfigjson",
    "automountServiceAccountToken: false",
    "llm call max_tokens=256 tokens_in=344 tokens_out=52",
    'FATAL:  password authentication failed for user "admin"',
    '2024-11-25 10:20:31.123 UTC [88] FATAL:  password authentication failed for user "app"',
    '2024-11-25 10:20:31.123 UTC [88] DETAIL:  Connection matched pg_hba.conf line 99: "host all all all scram-sha-256"',
    "kubeadm token create --ttl 24h --token-ttl=2h --print-join-command",
    "error: Bearer token required for this endpoint",
    'WWW-Authenticate: Bearer realm="kubernetes", error="invalid_token"',
    "PWD=/home/app",
    "OLDPWD=/",
    '{"level":"error","msg":"token expired","session_id":"0af7651916cd43dd8448eb211c80319c"}',
    "    password: null",
    '    password: "${DB_PASSWORD}"',
    "    password: ********",
    "    password: <redacted>",
    '    password: ""',
    "  passwordSecretRef: mongodb-admin",
    "  existingSecret: mongodb-admin",
    "  existingSecretPasswordKey: mongodb-root-password",
    "  tokenExpirationSeconds: 3600",
    "PASSWORD_MIN_LENGTH=12",
    "TOKEN_TTL=3600",
    "SECRET_NAME=db-creds",
    "AUTH_ENABLED=true",
    "REDIS_AUTH_ENABLED=false",
    "AUTH_MODE=oauth",
    "JWT_ALGORITHM=RS256",
    "JWT_ISSUER=https://auth.example.com",
    "API_KEY_HEADER=X-Api-Key",
    "SECRET_KEY_FILE=/run/secrets/django-key",
    "security.authorization: enabled",
    "  authorization: enabled",
    "mongodb://mongodb-geo:27017/?authSource=admin&replicaSet=rs0",
    "mongodb://mongodb-geo:27017/geo-db connected",
    "GET /api/v1/tokens/refresh HTTP/1.1 200 12ms",
    "POST /oauth/token HTTP/1.1 401 3ms",
    "ERROR 1045 (28000): Access denied for user 'root'@'10.244.0.5' (using password: YES)",
    "Caused by: java.sql.SQLException: Access denied for user 'app'@'10.244.2.9' (using password: YES)",
    "mysqld: [Warning] Using a password on the command line interface can be insecure.",
    "org.springframework.security.authentication.BadCredentialsException: Bad credentials",
    "-NOAUTH Authentication required.",
    "-WRONGPASS invalid username-password pair or user is disabled.",
    "1:M 25 Nov 2024 10:20:30.123 # Warning: no config file specified, using the default config.",
    "1:M 25 Nov 2024 10:20:30.456 * Ready to accept connections tcp",
    'Error: secret "mongo-admin" not found',
    "Error: couldn't find key password in Secret orders/db-creds",
    '  Warning  Failed  12s  kubelet  Error: secret "db-creds" not found',
    '  Warning  FailedMount  2m  kubelet  MountVolume.SetUp failed for volume "tls" : secret "frontend-tls" not found',
    "      MONGO_PASSWORD:  <set to the key 'password' in secret 'mongodb-admin'>  Optional: false",
    "      DB_PASS:         <set to the key 'db-pass' in secret 'orders-db'>     Optional: false",
    "      REDIS_AUTH:      <set to the key 'auth' of config map 'redis'>  Optional: false",
    "      API_KEY:         <set to the key 'api-key' in secret 'payments'>  Optional: false",
    "            secretKeyRef:",
    "              key: password",
    "              key: db-pass",
    "              name: orders-db",
    "      - key: app.kubernetes.io/name",
    "token_count=3 prompt_tokens=1024 completion_tokens=87",
    "invalid token: signature is invalid",
    "jwt: token is expired by 1h2m3s",
    "x509: certificate signed by unknown authority",
    "tls: failed to verify certificate: x509: certificate has expired or is not yet valid",
    "hello: aGVsbG8=",
    "  greeting.txt: aGVsbG8gd29ybGQ=",
    "  username: YWRtaW4=",
    "  enabled: dHJ1ZQ==",
    "  ca.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM1ekNDQWMrZ0F3SUJBZ0lCQURBTkJna3Foa2lHOXcwQkFRc0ZBREFWTVJNd0VRWURWUVFERXdwcmRXSmwK",
    "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM1ekNDQWMrZ0F3SUJBZ0lCQURBTkJna3Foa2lHOXcwQkFRc0ZBREFWTVJNd0VRWURWUVFERXdwcmRXSmwK",
    "  caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lRRmg1Nkd6N3VKN3U0Q1lUb3Nwam9YakFLQmdncWhrak9QUVFEQWpBak1TRXcK",
    "-----BEGIN CERTIFICATE-----",
    "-----END CERTIFICATE-----",
    "  ca.crt: |\n    -----BEGIN CERTIFICATE-----\n"
    "    MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl\n"
    "    cm5ldGVzMB4XDTI0MTEyNTEwMjAzMFoXDTM0MTEyMzEwMjAzMFowFTETMBEGA1UE\n"
    "    AxMKa3ViZXJuZXRlczCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMq3\n"
    "    -----END CERTIFICATE-----",
    '{"kind":"ConfigMap","data":{"ca.crt":"-----BEGIN CERTIFICATE-----\\n'
    "MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl\\n"
    "cm5ldGVzMB4XDTI0MTEyNTEwMjAzMFoXDTM0MTEyMzEwMjAzMFowFTETMBEGA1UE\\n"
    '-----END CERTIFICATE-----\\n"},"metadata":{"name":"kube-root-ca.crt"}}',
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n"
    "q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n"
    "-----END PUBLIC KEY-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1ZmZlcnMgYXJlIG5vdCBrZXlzIGJ1dCBwdWJsaWM ops@bastion",
    "NAME   TYPE                                  DATA   AGE",
    "db-creds              Opaque                                3      41d",
    "default-token-x7k2p   kubernetes.io/service-account-token   3      41d",
    "secret/db-creds created",
    "serviceaccount/aoi-observer created",
    "Bearer",
    'Basic realm="Restricted"',
    'WWW-Authenticate: Basic realm="grafana"',
    "Authorization header missing or malformed",
    "auth: enabled",
    "auth=sasl_ssl",
    "pass=3 fail=0 skipped=1",
    "tests: pass=128 fail=2",
    "passed: 128, failed: 2",
    "bypass=false",
    "compass-ui-7d9f8c6b5-x2x9z   1/1   Running   0   3h",
    "password reset email sent to user id=88123",
    'msg="password changed" user=bob',
    'level=info msg="rotating signing key" kid=2024-11 alg=RS256',
    'level=info msg="loaded secret" name=orders-db namespace=orders keys=3',
    "vault: token renewed ttl=768h policies=[default orders-read]",
    "Successfully assigned orders/orders-7d9f8c6b5-x2x9z to worker-3",
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    '    "integrity": "sha512-3oPhtl5/i9BQvMrmmzL5kBF8TyLa0WzDtqDxV4BMbDvlTXpG0SLBRY6JAutO3Kw4a5JqMiuzWcXqlxMQq9vSNw==",',
    "Digest: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    '{"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"APBnqgupArc=","name":"GET /cart"}',
    'ETag: "33a64df551425fcc55e4d42a148795d9f25f89d4"',
    "Authorization: Bearer [REDACTED:bearer]",
    "password=[REDACTED:password]",
]


# Control-plane, operator, proxy and database output around credentials: what an
# investigation reads most, and what must pass untouched.
_AROUND_CREDENTIALS = [
    'I1125 10:20:30.123456       1 authentication.go:63] "Unable to authenticate the request" err="[invalid bearer token, service account token has been invalidated]"',
    'E1125 10:20:31.000001       1 token_cleaner.go:200] "Failed to delete token" secret="kube-system/bootstrap-token-abcdef"',
    'W1125 10:20:32.5  1 reflector.go:535] k8s.io/client-go/informers/factory.go:150: failed to list *v1.Secret: secrets is forbidden: User "system:serviceaccount:aoi:observer" cannot list resource "secrets"',
    "    Mounts:",
    "      /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-7xk2p (ro)",
    "  kube-api-access-7xk2p:",
    "    Type:                    Projected (a volume that contains injected data from multiple sources)",
    "    TokenExpirationSeconds:  3607",
    "    ConfigMapName:           kube-root-ca.crt",
    'Warning  FailedCreatePodSandBox  3m  kubelet  Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e": plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized',
    '{"level":"warn","ts":"2024-11-25T10:20:30.123Z","caller":"etcdserver/util.go:170","msg":"apply request took too long","took":"112.5ms","expected-duration":"100ms","prefix":"read-only range ","request":"key:\\"/registry/secrets/default/db-creds\\" ","response":"range_response_count:1 size:1234"}',
    'time="2024-11-25T10:20:30Z" level=info msg="Successfully synced \'argocd/guestbook\'" application=guestbook',
    'level=info ts=2024-11-25T10:20:30.123Z caller=main.go:585 msg="Starting Prometheus Server" mode=server version="(version=2.48.0, branch=HEAD, revision=63894216648f0d6be310c9d16fb48293c45c9310)"',
    '2024-11-25T10:20:30.123Z\tINFO\tcontroller-runtime.metrics\tMetrics server is starting to listen\t{"addr": ":8080"}',
    '2024-11-25T10:20:30.123Z\tERROR\tReconciler error\t{"controller": "certificate", "namespace": "shop", "name": "frontend-tls", "reconcileID": "0b8f9e5c-3c4e-4f8b-9a6d-2f1e0c7b5a3d", "error": "secret \\"frontend-tls\\" not found"}',
    "[2024-11-25 10:20:30,123] INFO [Consumer clientId=consumer-checkout-1, groupId=checkout] Successfully joined group with generation Generation{generationId=7, memberId='consumer-checkout-1-8f3b2a1c-4d5e-6f70-8192-a3b4c5d6e7f8', protocol='range'} (org.apache.kafka.clients.consumer.internals.ConsumerCoordinator)",
    "[2024-11-25 10:20:30,456] ERROR [Controller id=1] Error while authenticating with SASL: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (org.apache.kafka.common.network.Selector)",
    "2024-11-25 10:20:30.123  WARN 1 --- [nio-8080-exec-1] o.s.s.c.bcrypt.BCryptPasswordEncoder     : Encoded password does not look like BCrypt",
    "2024-11-25 10:20:30.123 ERROR 1 --- [           main] o.s.b.SpringApplication                  : Application run failed",
    "GET /api/v1/namespaces/shop/secrets/db-creds 403 Forbidden",
    'E1125 10:20:30.123 1 webhook.go:154] Failed calling webhook, failing open validate.kyverno.svc-fail: failed calling webhook "validate.kyverno.svc-fail": Post "https://kyverno-svc.kyverno.svc:443/validate/fail?timeout=10s": x509: certificate signed by unknown authority',
    "  Normal  Created  2m  kubelet  Created container oauth2-proxy",
    "  --cookie-secure=true",
    "  --cookie-expire=168h",
    "  --pass-access-token=true",
    "  --set-authorization-header=true",
    "  --skip-auth-regex=^/healthz$",
    "  --upstream=http://frontend:8080",
    "  --email-domain=*",
    '[2024/11/25 10:20:30] [oauthproxy.go:868] Error loading cookied session: cookie "_oauth2_proxy" not present, removing session',
    '10.244.0.1:51234 - - [2024/11/25 10:20:30] 10.244.1.9:4180 GET - "/oauth2/auth" HTTP/1.1 "kube-probe/1.29" 401 13 0.000',
    'vault: 2024-11-25T10:20:30.123Z [INFO]  core: successfully mounted: type=kv version="v2" path=secret/ namespace="ID: root. Path: "',
    "2024-11-25T10:20:30.123Z [INFO]  auth.kubernetes.auth_kubernetes_12345678: login succeeded: role=orders",
    '2024-11-25T10:20:30.123Z [ERROR] auth.handler: error authenticating: error="Error making API request. URL: PUT http://vault:8200/v1/auth/kubernetes/login Code: 403. Errors: * permission denied" backoff=1.9s',
    'cert-manager/certificates-issuing "msg"="issued temporary certificate" "key"="shop/frontend-tls" "secret_name"="frontend-tls-x7k2p"',
    'argocd-server  time="2024-11-25T10:20:30Z" level=info msg="received unary call /session.SessionService/Create" grpc.method=Create grpc.request.claims=null grpc.service=session.SessionService span.kind=server system=grpc',
    'ingress-nginx: 10.244.0.1 - - [25/Nov/2024:10:20:30 +0000] "GET /favicon.ico HTTP/2.0" 404 548 "https://shop.example.com/" "Mozilla/5.0" 34 0.001 [shop-frontend-80] [] 10.244.1.9:8080 548 0.000 404 7f3c2b1a9e8d7c6b5a4f3e2d1c0b9a8f',
    "Nov 25 10:20:30 worker-3 kubelet[1234]: E1125 10:20:30.123456    1234 kuberuntime_manager.go:1256] container &Container{Name:geo,Image:registry.example.com/hotel/geo:1.4.2,Command:[],Args:[],WorkingDir:,Ports:[]ContainerPort{ContainerPort{Name:grpc,HostPort:0,ContainerPort:8083,Protocol:TCP,HostIP:,},},Env:[]EnvVar{EnvVar{Name:JAEGER_SAMPLE_RATIO,Value:1,ValueFrom:nil,},EnvVar{Name:MONGO_PASSWORD,Value:,ValueFrom:&EnvVarSource{FieldRef:nil,ResourceFieldRef:nil,ConfigMapKeyRef:nil,SecretKeyRef:&SecretKeySelector{LocalObjectReference:LocalObjectReference{Name:mongodb-geo,},Key:password,Optional:nil,},},},}",
    'MountVolume.SetUp failed for volume "kube-api-access-7xk2p" : object "shop"/"kube-root-ca.crt" not registered',
    "Events:  <none>",
    'Annotations:  kubectl.kubernetes.io/last-applied-configuration: {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"geo","namespace":"hotel"},"spec":{"replicas":1}}',
    "  Type     Reason                  Age   From     Message",
    "Tolerations:                 node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
    "Node-Selectors:              kubernetes.io/hostname=worker-9",
    "QoS Class:                   Burstable",
    "    Liveness:       http-get http://:8080/healthz delay=10s timeout=1s period=10s #success=1 #failure=3",
    "    Environment Variables from:",
    "      geo-config  ConfigMap  Optional: false",
    "      geo-secrets  Secret  Optional: false",
    "    Environment:",
    "      JAEGER_SAMPLE_RATIO:  1",
    "      MONGO_PASSWORD:       <set to the key 'password' in secret 'mongodb-geo'>  Optional: false",
    "      SESSION_TTL:          3600",
    "      TOKEN_ISSUER:         https://auth.example.com",
    "      KEY_ROTATION_DAYS:    30",
    "      AUTH_SERVICE_ADDR:    auth:8081",
    "  redis_password_secret: orders-redis",
    "  password_secret_key: redis-password",
    "  tokenSecretRef:",
    "    name: cloudflare-api-token",
    "    key: api-token",
    "  passwordFile: /etc/secrets/password",
    "  keyFile: /etc/tls/tls.key",
    "  credentialsFile: /var/secrets/google/key.json",
    "  authSecretName: basic-auth",
    "  auth-type: basic",
    '  auth-realm: "Authentication Required"',
    "  nginx.ingress.kubernetes.io/auth-type: basic",
    "  nginx.ingress.kubernetes.io/auth-secret: basic-auth",
    '  nginx.ingress.kubernetes.io/auth-url: "http://oauth2-proxy.auth.svc:4180/oauth2/auth"',
    "jwt: signature is invalid",
    "token: <nil>",
    "github.com/golang-jwt/jwt/v5.(*Parser).ParseWithClaims(0xc000123456, {0xc0004a2000, 0x1a3}, {0x1f2e3d0, 0xc0001b4000}, 0xc0003e2100)",
    "redis: 2024/11/25 10:20:30 pool.go:492: auth: WRONGPASS invalid username-password pair or user is disabled.",
    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    "(error) NOAUTH Authentication required.",
    'psql: error: connection to server at "postgres" (10.96.12.34), port 5432 failed: FATAL:  password authentication failed for user "app"',
    'pq: password authentication failed for user "orders"',
    "MongoServerError: Authentication failed.",
    "Caused by: com.mongodb.MongoSecurityException: Exception authenticating MongoCredential{mechanism=SCRAM-SHA-256, userName='admin', source='admin', password=<hidden>, mechanismProperties=<hidden>}",
    "spring.datasource.password=${DB_PASSWORD}",
    "spring.datasource.username=app",
    "management.endpoint.health.show-details=always",
    '  "private_key_id": "REDACTED",',
    "image: bitnami/redis:7.2.3-debian-11-r0",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
]


def _kubectl(rng: random.Random) -> Iterator[str]:
    yield "NAME                                     READY   STATUS             RESTARTS        AGE"
    for _ in range(25):
        status = rng.choice(
            ("Running", "Running", "CrashLoopBackOff", "Pending", "ImagePullBackOff", "Completed")
        )
        yield f"{_pod(rng):<40} {rng.randrange(2)}/1     {status:<18} {rng.randrange(9)}               {rng.randrange(1, 60)}m"
    for _ in range(8):
        pod = _pod(rng)
        yield f'  Normal   Pulled     {rng.randrange(2, 59)}s   kubelet  Container image "registry.example.com/shop/{pod.split("-")[0]}@sha256:{_pick(rng, _HEX, 64)}" already present on machine'
    for _ in range(6):
        yield f"  Warning  BackOff    {rng.randrange(2, 59)}s (x{rng.randrange(2, 40)} over 5m)  kubelet  Back-off restarting failed container app in pod {_pod(rng)}_orders({_uuid(rng)})"
    for _ in range(6):
        yield f"    Container ID:   containerd://{_pick(rng, _HEX, 64)}"
    for _ in range(5):
        yield f"    Image ID:       docker.io/library/mongo@sha256:{_pick(rng, _HEX, 64)}"
    for _ in range(5):
        yield f"  uid: {_uuid(rng)}"
        yield f'  resourceVersion: "{rng.randrange(10**5, 10**9)}"'
    for _ in range(4):
        yield f"{rng.choice(_PODS)}   ClusterIP   10.96.{rng.randrange(255)}.{rng.randrange(255)}   <none>   {rng.choice((80, 8080, 9090, 27017, 6379, 5432))}/TCP   {rng.randrange(2, 90)}d"
    for _ in range(4):
        yield f"deployment.apps/{rng.choice(_PODS)} rolled back   pod-template-hash={_pick(rng, 'bcdf56789', 10)}"
    for _ in range(4):
        yield f"    checksum/config: {_pick(rng, _HEX, 64)}"
    yield "Events:"
    yield "  Type     Reason     Age                From               Message"
    yield "  ----     ------     ----               ----               -------"
    yield "  Warning  Unhealthy  3m (x12 over 9m)   kubelet            Readiness probe failed: HTTP probe failed with statuscode: 503"
    yield "  Warning  FailedScheduling  2m  default-scheduler  0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
    yield "  Normal   Killing    10m                kubelet            Container geo failed liveness probe, will be restarted"


def _json_lines(rng: random.Random) -> Iterator[str]:
    for _ in range(30):
        yield json.dumps(
            {
                "ts": _ts(rng),
                "level": rng.choice(("info", "warn", "error")),
                "logger": rng.choice(("http", "grpc", "db", "cache")),
                "msg": rng.choice(
                    (
                        "request served",
                        "upstream timeout",
                        "token expired",
                        "cache miss",
                        "retrying request",
                        "auth ok",
                    )
                ),
                "trace_id": _pick(rng, _HEX, 32),
                "span_id": _pick(rng, _HEX, 16),
                "request_id": _uuid(rng),
                "pod": _pod(rng),
                "latency_ms": rng.randrange(1, 900),
            },
            separators=(",", ":"),
        )
    for _ in range(8):
        yield (
            f'{{"t":{{"$date":"{_ts(rng)}"}},"s":"I","c":"ACCESS","id":20250,"ctx":"conn{rng.randrange(99)}",'
            f'"msg":"Authentication succeeded","attr":{{"mechanism":"SCRAM-SHA-256","speculative":true,'
            f'"principalName":"admin","authenticationDatabase":"admin","remote":"{_ip(rng)}:{rng.randrange(30000, 60000)}",'
            f'"extraInfo":{{}}}}}}'
        )
    for _ in range(4):
        yield (
            f'{{"t":{{"$date":"{_ts(rng)}"}},"s":"I","c":"ACCESS","id":5286307,"ctx":"conn{rng.randrange(99)}",'
            f'"msg":"Failed to authenticate","attr":{{"client":"{_ip(rng)}:51234","mechanism":"SCRAM-SHA-1",'
            f'"user":"admin","db":"admin","error":"AuthenticationFailed: SCRAM authentication failed, storedKey mismatch"}}}}'
        )
    for _ in range(4):
        yield json.dumps(
            {
                "resourceSpans": [
                    {"traceId": _b64(rng, 16), "spanId": _b64(rng, 8), "name": "HTTP GET"}
                ],
            }
        )


def _logfmt_lines(rng: random.Random) -> Iterator[str]:
    for _ in range(20):
        yield (
            f"ts={_ts(rng)} level={rng.choice(('info', 'warn', 'error'))} caller={rng.choice(('http.go', 'grpc.go', 'db.go'))}:{rng.randrange(20, 500)} "
            f'msg="{rng.choice(("handled request", "slow query", "dial failed", "token refreshed"))}" method=GET '
            f"path=/api/{rng.choice(('cart', 'orders', 'geo'))}/{rng.randrange(10**4)} status={rng.choice((200, 200, 404, 500, 503))} "
            f"duration={rng.randrange(1, 999)}ms trace_id={_pick(rng, _HEX, 32)} pod={_pod(rng)}"
        )
    for _ in range(6):
        yield f'time="{_ts(rng)}" level=info msg="token cache" hits={rng.randrange(9999)} misses={rng.randrange(99)} size={rng.randrange(1, 512)}'


def _access_logs(rng: random.Random) -> Iterator[str]:
    agents = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
        "kube-probe/1.29",
        "Go-http-client/1.1",
        "curl/8.4.0",
        "Prometheus/2.48.0",
    )
    for _ in range(20):
        yield (
            f"{_ip(rng)} - - [25/Nov/2024:10:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000] "
            f'"{rng.choice(("GET", "POST"))} /{rng.choice(("static/js/main.8a7c3f1e.js", "api/cart", "healthz", "api/orders?page=2&sort=desc", "login"))} HTTP/1.1" '
            f'{rng.choice((200, 200, 301, 401, 404, 502))} {rng.randrange(50, 90000)} "-" "{rng.choice(agents)}" {rng.randrange(1, 900) / 1000:.3f}'
        )
    for _ in range(15):
        yield (
            f'[{_ts(rng)}] "{rng.choice(("GET", "POST"))} /api/{rng.choice(("cart", "checkout", "geo"))} HTTP/1.1" '
            f"{rng.choice((200, 503, 504))} {rng.choice(('-', 'UF', 'UH', 'URX'))} 0 {rng.randrange(20, 900)} {rng.randrange(1, 3000)} - "
            f'"{_ip(rng)}" "{rng.choice(agents)}" "{_uuid(rng)}" "{rng.choice(_PODS)}:8080" "{_ip(rng)}:8080"'
        )
    for _ in range(4):
        yield f"traceparent: 00-{_pick(rng, _HEX, 32)}-{_pick(rng, _HEX, 16)}-01"
        yield f"X-Amzn-Trace-Id: Root=1-{_pick(rng, _HEX, 8)}-{_pick(rng, _HEX, 24)}"


def _stack_traces(rng: random.Random) -> Iterator[str]:
    yield 'Exception in thread "main" java.lang.IllegalStateException: Failed to load ApplicationContext'
    yield "Caused by: org.springframework.beans.factory.BeanCreationException: Error creating bean with name 'dataSource'"
    yield "\tat org.springframework.beans.factory.support.AbstractAutowireCapableBeanFactory.initializeBean(AbstractAutowireCapableBeanFactory.java:1804)"
    yield "\tat com.zaxxer.hikari.pool.HikariPool.checkFailFast(HikariPool.java:576)"
    yield "HikariPool-1 - Exception during pool initialization."
    yield "\tat io.grpc.stub.ClientCalls.toStatusRuntimeException(ClientCalls.java:268)"
    yield "io.grpc.StatusRuntimeException: UNAVAILABLE: io exception"
    yield "\tat com.example.checkout.PaymentClient.charge(PaymentClient.java:88)"
    yield "\t... 42 common frames omitted"
    yield "panic: runtime error: invalid memory address or nil pointer dereference"
    yield "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b4f1a]"
    yield "goroutine 1 [running]:"
    yield "main.(*Server).handleNearby(0xc0001b4000, {0x9a1b20, 0xc0002a6000}, 0xc0003e2100)"
    yield "\t/go/src/github.com/harlow/go-micro-services/services/geo/server.go:98 +0x1d4"
    yield "Traceback (most recent call last):"
    yield '  File "/app/recommendation_server.py", line 114, in ListRecommendations'
    yield "redis.exceptions.AuthenticationError: invalid username-password pair or user is disabled."
    yield "pymongo.errors.OperationFailure: Authentication failed., full error: {'ok': 0.0, 'errmsg': 'Authentication failed.', 'code': 18, 'codeName': 'AuthenticationFailed'}"
    yield "System.InvalidOperationException: Unable to resolve service for type 'Microsoft.Extensions.Caching.Distributed.IDistributedCache'"
    yield "   at Microsoft.Extensions.DependencyInjection.ActivatorUtilities.GetService(IServiceProvider sp, Type type, Type requiredBy, Boolean isDefaultParameterRequired)"


def _db_logs(rng: random.Random) -> Iterator[str]:
    yield "2024-11-25T10:20:30.123456Z 0 [Warning] [MY-010068] [Server] CA certificate ca.pem is self signed."
    yield "2024-11-25T10:20:30.223456Z 0 [System] [MY-011323] [Server] X Plugin ready for connections. Bind-address: '::' port: 33060, socket: /var/run/mysqld/mysqlx.sock"
    yield "2024-11-25T10:20:31.000000Z 8 [Note] [MY-010926] [Server] Access denied for user 'root'@'10.244.1.7' (using password: NO)"
    yield "2024-11-25 10:20:31.123 UTC [1] LOG:  database system is ready to accept connections"
    yield "2024-11-25 10:20:31.456 UTC [77] LOG:  connection authorized: user=app database=orders application_name=psql SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
    yield '2024-11-25 10:20:32.001 UTC [78] FATAL:  role "reporting" does not exist'
    yield '2024-11-25 10:20:33.010 UTC [79] ERROR:  duplicate key value violates unique constraint "orders_pkey"'
    yield "1:C 25 Nov 2024 10:20:30.001 # Redis version=7.2.3, bits=64, commit=00000000, modified=0, pid=1, just started"
    yield "1:M 25 Nov 2024 10:20:30.101 * Server initialized"
    yield "1:S 25 Nov 2024 10:20:31.202 * MASTER <-> REPLICA sync started"
    yield "1:S 25 Nov 2024 10:20:31.303 # Error condition on socket for SYNC: Connection refused"
    yield '{"t":{"$date":"2024-11-25T10:20:30.000+00:00"},"s":"I","c":"NETWORK","id":23016,"ctx":"listener","msg":"Waiting for connections","attr":{"port":27017,"ssl":"off"}}'
    yield '{"t":{"$date":"2024-11-25T10:20:31.000+00:00"},"s":"W","c":"CONTROL","id":22120,"ctx":"initandlisten","msg":"Access control is not enabled for the database","tags":["startupWarnings"]}'
    for _ in range(6):
        yield f"2024-11-25 10:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d} UTC [{rng.randrange(30, 999)}] LOG:  duration: {rng.randrange(1, 9999)}.{rng.randrange(999)} ms  statement: SELECT id, total FROM orders WHERE user_id = {rng.randrange(10**5)}"


def _env_dump(rng: random.Random) -> Iterator[str]:
    yield "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    yield f"HOSTNAME={_pod(rng)}"
    yield "HOME=/root"
    yield "KUBERNETES_SERVICE_HOST=10.96.0.1"
    yield "KUBERNETES_PORT=tcp://10.96.0.1:443"
    yield "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1"
    yield "MONGO_HOST=mongodb-geo.hotel.svc.cluster.local"
    yield "DB_USER=app"
    yield "DB_NAME=orders"
    yield "REDIS_ADDR=redis-master:6379"
    yield "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317"
    yield "OTEL_RESOURCE_ATTRIBUTES=service.name=checkout,service.version=1.8.2"
    yield "JAVA_TOOL_OPTIONS=-XX:MaxRAMPercentage=75 -XX:+UseG1GC"
    yield "GOMAXPROCS=2"
    yield "LANG=C.UTF-8"
    yield "TZ=UTC"
    yield "FLAGD_HOST=flagd"
    yield "NODE_ENV=production"
    yield "LOG_LEVEL=debug"
    yield "AWS_REGION=eu-west-1"
    yield "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/orders-irsa"
    yield "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    yield f"POD_UID={_uuid(rng)}"
    yield f"IMAGE_DIGEST=sha256:{_pick(rng, _HEX, 64)}"
    yield f"GIT_COMMIT={_pick(rng, _HEX, 40)}"
    yield f"BUILD_ID={_pick(rng, _HEX, 12)}"


def _configmaps(rng: random.Random) -> Iterator[str]:
    yield "apiVersion: v1"
    yield "kind: ConfigMap"
    yield "metadata:"
    yield "  name: checkout-config"
    yield "  namespace: shop"
    yield "data:"
    yield "  LOG_FORMAT: json"
    yield "  FEATURE_FLAGS: cartV2,fastCheckout"
    yield "  PAYMENT_URL: http://payment.shop.svc:8080"
    yield "  nginx.conf: |"
    yield "    upstream backend { server cart:8080 max_fails=3 fail_timeout=30s; }"
    yield '    auth_basic "Restricted";'
    yield "    auth_basic_user_file /etc/nginx/.htpasswd;"
    yield "    proxy_set_header Authorization $http_authorization;"
    yield "  mongod.conf: |"
    yield "    net:"
    yield "      tls:"
    yield "        mode: requireTLS"
    yield "        certificateKeyFile: /etc/tls/mongodb.pem"
    yield "  redis.conf: |"
    yield "    maxmemory-policy allkeys-lru"
    yield "    appendonly yes"
    yield "        env:"
    yield "        - name: MONGO_PASSWORD"
    yield "          valueFrom:"
    yield "        - name: JWT_PUBLIC_KEY_PATH"
    yield "          value: /etc/jwt/public.pem"
    yield "      volumes:"
    yield "      - name: tls"
    yield "        secret:"
    yield "          secretName: frontend-tls"
    yield "          defaultMode: 420"
    yield "      serviceAccountName: checkout"
    yield "  annotations:"
    yield f'    deployment.kubernetes.io/revision: "{rng.randrange(2, 40)}"'
    yield f'    kubectl.kubernetes.io/restartedAt: "{_ts(rng)}"'
    yield '    prometheus.io/scrape: "true"'
    yield "  selector:"
    yield "    matchLabels:"
    yield f"      pod-template-hash: {_pick(rng, 'bcdf56789', 10)}"
    for _ in range(4):
        yield f"        image: registry.example.com/shop/{rng.choice(_PODS)}:1.{rng.randrange(30)}.{rng.randrange(9)}@sha256:{_pick(rng, _HEX, 64)}"


def _metrics(rng: random.Random) -> Iterator[str]:
    for _ in range(8):
        yield f'http_requests_total{{code="{rng.choice((200, 500, 503))}",method="GET",pod="{_pod(rng)}"}} {rng.randrange(10**6)}'
    yield 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[5m])) / sum(rate(http_requests_total{job="checkout"}[5m]))'
    yield 'histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{grpc_service="geo.Geo"}[5m])))'
    yield "# HELP apiserver_authentication_attempts Counter of authenticated attempts."
    yield 'authentication_attempts{result="failure"} 17'


_ORDINARY_FORMS: tuple[Callable[[random.Random], Iterator[str]], ...] = (
    _kubectl,
    _json_lines,
    _logfmt_lines,
    _access_logs,
    _stack_traces,
    _db_logs,
    _env_dump,
    _configmaps,
    _metrics,
)


def _ordinary() -> list[str]:
    rng = random.Random(20241126)
    generated = [line for form in _ORDINARY_FORMS for line in form(rng)]
    return _LOOK_ALIKES + _AROUND_CREDENTIALS + generated


ORDINARY: list[str] = _ordinary()
