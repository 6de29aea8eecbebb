"""How the gateway takes migration in: routed services for the handlers, the retry loop, metrics."""
from __future__ import annotations

from dataclasses import dataclass

from .credentials import keys_path
from .journal import JournalRunner
from .metrics import MigrateMetrics
from .routes import KeyLocks, Routes
from .multipart_routing import RoutedMultipart
from .routing import Bookkeeping, RoutedObjects


@dataclass
class Migration:
    routes: Routes
    journal: JournalRunner
    metrics: MigrateMetrics
    objects: object       # the object service without routing: copies sent by `migrate copy` (gateway_copy.py)

    def refresh_metrics(self) -> None:
        self.metrics.refresh(self.routes.index, self.routes.all())


def route_services(gateway) -> Migration:
    """Give the gateway's handlers the routed object and multipart services.

    Services made before this (bucket service, lifecycle, repair) keep the plain ones:
    their work is Pocket's own, whatever a bucket's migration state."""
    routes = Routes(gateway.index, keys_path(gateway.cfg.index_path))
    locks = KeyLocks()
    metrics = MigrateMetrics(gateway.metrics.registry)
    objects, multipart = gateway.objects, gateway.multipart
    routed = RoutedObjects(objects, multipart, routes, locks, Bookkeeping(objects, metrics))
    gateway.objects, gateway.multipart = routed, RoutedMultipart(multipart, routed)
    return Migration(routes, JournalRunner(objects, multipart, gateway.writer, routes, locks, metrics), metrics,
                     objects)
