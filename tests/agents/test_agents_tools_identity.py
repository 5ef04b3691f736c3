"""Matching RBAC rules against the capabilities an observer must not have."""

from __future__ import annotations

from typing import Any

import pytest

from agents.tools.identity import FORBIDDEN, Capability, _grants

SECRETS = Capability("get", "secrets")
EXEC = Capability("create", "pods", subresource="exec")
PATCH_DEPLOY = Capability("patch", "deployments", "apps")


def rule(verbs: list[str], resources: list[str], groups: list[str], **extra: Any) -> dict[str, Any]:
    return {"verbs": verbs, "resources": resources, "apiGroups": groups, **extra}


@pytest.mark.parametrize(
    ("granted", "capability", "expected"),
    [
        (rule(["get", "list", "watch"], ["pods", "pods/log"], [""]), EXEC, False),
        (rule(["get", "list", "watch"], ["pods", "pods/log"], [""]), SECRETS, False),
        (rule(["*"], ["*"], ["*"]), SECRETS, True),
        (rule(["*"], ["*"], ["*"]), EXEC, True),
        (rule(["get"], ["secrets"], [""]), SECRETS, True),
        (rule(["create"], ["pods/exec"], [""]), EXEC, True),
        (rule(["create"], ["pods/*"], [""]), EXEC, True),
        (rule(["create"], ["pods"], [""]), EXEC, False),
        (rule(["patch"], ["deployments"], ["apps"]), PATCH_DEPLOY, True),
        (rule(["patch"], ["deployments"], ["extensions"]), PATCH_DEPLOY, False),
        (rule(["patch"], ["deployments"], ["*"]), PATCH_DEPLOY, True),
        (rule(["get"], ["secrets"], [""], resourceNames=["tls-cert"]), SECRETS, False),
        (rule(["get"], ["secrets"], [""], nonResourceURLs=[]), SECRETS, True),
    ],
)
def test_rules_grant_exactly_what_they_say(
    granted: dict[str, Any], capability: Capability, expected: bool
) -> None:
    assert _grants(granted, capability) is expected


def test_a_wildcard_read_rule_counts_as_reading_secrets_and_proxies() -> None:
    reads = rule(["get", "list", "watch"], ["*"], ["", "apps", "batch"])
    granted = {(c.verb, c.resource, c.subresource) for c in FORBIDDEN if _grants(reads, c)}
    assert granted == {
        ("get", "secrets", ""),
        ("list", "secrets", ""),
        ("watch", "secrets", ""),
        ("get", "nodes", "proxy"),
        ("get", "services", "proxy"),
    }
