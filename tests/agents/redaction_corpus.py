"""Secrets as they appear in real logs, env dumps, YAML, JSON and kubeconfigs, and
look-alikes that must survive redaction. Every secret value here is made up."""

from __future__ import annotations

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9"
    ".eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDphb2kifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"

# (line as it appears, the secret that must disappear, the kind it is reported as)
SECRETS: list[tuple[str, str, str]] = [
    ("Authorization: Bearer abcDEF1234567890ghiJKLmno", "abcDEF1234567890ghiJKLmno", "bearer"),
    (f"I1125 10:20:30.1 client.go:42] using token={JWT} for apiserver", JWT, "jwt"),
    (f'"headers": {{"authorization": "Bearer {JWT}"}}', JWT, "jwt"),
    (
        "SLACK_BOT_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "slack_token",
    ),
    (
        "posting as xoxp-1234567890-123456789012-1234567890123-0123456789abcdef0123456789abcdef ok",
        "xoxp-1234567890-123456789012-1234567890123-0123456789abcdef0123456789abcdef",
        "slack_token",
    ),
    (
        "  app_token: xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef",
        "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef",
        "slack_token",
    ),
    (
        "refresh with xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MDEyMy1hYmNkZWY now",
        "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MDEyMy1hYmNkZWY",
        "slack_token",
    ),
    (
        "config token xoxe-1-My0xLTEyMzQ1Njc4OTAtMTIzNDU2 rotated",
        "xoxe-1-My0xLTEyMzQ1Njc4OTAtMTIzNDU2",
        "slack_token",
    ),
    (
        "webhook=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "slack_webhook",
    ),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "key",
    ),
    (
        '{"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", '
        '"SecretAccessKey": "9drTJvcXLB89EXAMPLEkey+zVy0rG1"}',
        "9drTJvcXLB89EXAMPLEkey+zVy0rG1",
        "key",
    ),
    (
        "GET /maps/api/geocode/json?address=x&key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY HTTP/1.1",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "gcp_api_key",
    ),
    (
        "gcloud auth: access token ya29.a0AfH6SMBx7exampleTokenValue1234567890 expires in 3599",
        "ya29.a0AfH6SMBx7exampleTokenValue1234567890",
        "gcp_token",
    ),
    (
        f'{{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n{PEM_BODY}'
        '\\n-----END PRIVATE KEY-----\\n", "client_email": "x@p.iam.gserviceaccount.com"}',
        PEM_BODY,
        "private_key",
    ),
    (
        "oauth client 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 configured",
        "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",
        "gcp_client_secret",
    ),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDX"
        "J1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;EndpointSuffix=core.windows.net",
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        "key",
    ),
    (
        "GET https://acct.blob.core.windows.net/c/b?sv=2020-08-04&sr=b"
        "&sig=Zx3kq9KwYhDFk0l2Jp1o%3D 200",
        "Zx3kq9KwYhDFk0l2Jp1o%3D",
        "azure_sas",
    ),
    (
        "using credential abc8Q~defghijklmnopqrstuvwxyz0123456789AB for tenant",
        "abc8Q~defghijklmnopqrstuvwxyz0123456789AB",
        "azure_client_secret",
    ),
    (
        "git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_token",
    ),
    (
        "GITHUB_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF",
        "github_token",
    ),
    (
        '{"level":"info","msg":"oauth ok","token":"gho_16C7e42F292c6912E7710c838347Ae178B4a"}',
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_token",
    ),
    ("POSTGRES_PASSWORD=sup3r-s3cret!", "sup3r-s3cret!", "password"),
    ("    password: hunter2-prod", "hunter2-prod", "password"),
    ('{"user": "admin", "password": "Tr0ub4dor&3 x"}', "Tr0ub4dor&3 x", "password"),
    (
        "10.244.1.7 - - GET /login?user=bob&token=9f8e7d6c5b4a&next=/home 302",
        "9f8e7d6c5b4a",
        "token",
    ),
    ("exec: mysql --user=root --password s3cr3tP@ss -h db", "s3cr3tP@ss", "password"),
    ("oidc: --client-secret=abcdef123456 --issuer https://id", "abcdef123456", "secret"),
    ("X-Api-Key: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", "key"),
    (
        "charge failed: using sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "api_key",
    ),
    (
        "OPENAI_API_KEY=sk-proj-AbCdEf0123456789GhIjKlMnOpQrStUv",
        "sk-proj-AbCdEf0123456789GhIjKlMnOpQrStUv",
        "api_key",
    ),
    (
        "connecting to mongodb://admin:Passw0rd@mongodb-geo:27017/geo-db?authSource=admin",
        "Passw0rd",
        "url_password",
    ),
    (
        "DATABASE_URL=postgresql://aoi:pg-secret-42@postgres.default.svc:5432/aoi",
        "pg-secret-42",
        "url_password",
    ),
    ("cache: redis://:r3d1sPass@redis-master:6379/0", "r3d1sPass", "url_password"),
    ("broker amqp://guest:guestpass@rabbitmq:5672/ unreachable", "guestpass", "url_password"),
    (
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nabc+/def==\n-----END RSA PRIVATE KEY-----",
        PEM_BODY,
        "private_key",
    ),
    (
        f"key.pem: -----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n(truncated)",
        PEM_BODY,
        "private_key",
    ),
    ("    token: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", "token"),
    (
        "    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
        "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
        "kubeconfig_key",
    ),
    (
        "    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",
        "kubeconfig_key",
    ),
    (
        "  tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Fo",
        "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Fo",
        "secret_data",
    ),
    (
        '{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNzd29yZDEyMw=="}}}',
        "dXNlcjpwYXNzd29yZDEyMw==",
        "secret_data",
    ),
    ('        - name: DB_PASSWORD\n          value: "hunter2-prod"', "hunter2-prod", "password"),
    ('{"name":"API_TOKEN","value":"tok-0123456789"}', "tok-0123456789", "token"),
    ("Authorization: Basic YWRtaW46cGFzc3dvcmQxMjM=", "YWRtaW46cGFzc3dvcmQxMjM=", "basic_auth"),
    ("probe: curl -u admin:adminpass http://frontend:8080/health", "adminpass", "password"),
    ("DJANGO_SECRET_KEY=django-insecure-abc123xyz", "django-insecure-abc123xyz", "key"),
    (
        "Authorization: token 0123456789abcdef0123456789abcdef01234567",
        "0123456789abcdef0123456789abcdef01234567",
        "token",
    ),
]

# Ordinary cluster text that looks a bit like secrets and must come through unchanged.
NOT_SECRETS: list[str] = [
    "cart: dial tcp valkey-cart:6379/InteractiveSessionCache: connection refused",
    "geo-6b4b5d8b9c-x2x9z   0/1   CrashLoopBackOff   5 (30s ago)   4m",
    "image: gcr.io/aoi/geo@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    '{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","status":500}',
    "upstream connect error: 10.244.1.17:8080 connection refused (fd00:10:244::17)",
    '  resourceVersion: "123456789"',
    "  uid: 0b8f9e5c-3c4e-4f8b-9a6d-2f1e0c7b5a3d",
    "      secretName: mongodb-tls",
    "kind: Secret",
    "automountServiceAccountToken: false",
    "llm call max_tokens=256 tokens_in=344 tokens_out=52",
    'FATAL:  password authentication failed for user "admin"',
    "type: kubernetes.io/service-account-token",
    "kubeadm token create --ttl 24h --token-ttl=2h --print-join-command",
    '  Normal   Pulled   2m   kubelet   Container image "mongo:4.4.6" already present',
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)",
    "containerID: containerd://3f5c1e6f4a9b8d7c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d",
    "GET http://user-service:9090/metrics 200 3ms",
    "mongodb://mongodb-geo:27017/geo-db connected",
    "      - key: app.kubernetes.io/name",
    "error: Bearer token required for this endpoint",
    "PWD=/home/app",
    '{"level":"error","msg":"token expired","session_id":"0af7651916cd43dd8448eb211c80319c"}',
    "    checksum/config: 6f1ed002ab5595859014ebf0951522d9",
    "    password: null",
    '    password: "${DB_PASSWORD}"',
    "  passwordSecretRef: mongodb-admin",
    "I1125 10:20:30.123456  1 leaderelection.go:258] successfully acquired lease kube-system/sched",
    "NAME   TYPE                                  DATA   AGE",
]
