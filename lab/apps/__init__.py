"""The lab's applications, by name: what ``aoi lab up`` deploys and faults target.

Each application mirrors one that AIOpsLab deploys, under the same namespace and
service names, so AIOpsLab's task ids and ground truth carry over unchanged.
"""

from __future__ import annotations

from lab.apps.astronomy_shop import APP as ASTRONOMY_SHOP
from lab.apps.hotel_reservation import APP as HOTEL_RESERVATION
from lab.apps.social_network import APP as SOCIAL_NETWORK
from lab.apps.spec import AppSpec, ServiceSpec

APPS: dict[str, AppSpec] = {
    app.name: app for app in (HOTEL_RESERVATION, SOCIAL_NETWORK, ASTRONOMY_SHOP)
}


def app_for_namespace(namespace: str) -> AppSpec | None:
    """The application deployed in ``namespace``, or None for namespaces the lab does not own."""
    for app in APPS.values():
        if app.namespace == namespace:
            return app
    return None


__all__ = ["APPS", "AppSpec", "ServiceSpec", "app_for_namespace"]
