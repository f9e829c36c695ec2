"""Isolation drivers, loaded lazily by name.

:data:`DRIVERS` is the one list of drivers: the settings accept exactly its
names (plus ``auto``), and ``TVM_DRIVER=auto`` picks the strongest driver whose
probe succeeds. Adding a driver is one module here plus one line in
:data:`DRIVERS`. Every driver is built with the :class:`~tvm.config.settings.Settings`
it must obey (``choose(settings)``) and keeps them.

This module imports no driver (nor their base) at import time: the settings
read :data:`DRIVERS` to validate ``TVM_DRIVER``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tvm.errors import ConfigError, DriverUnavailable

if TYPE_CHECKING:
    from tvm.config.settings import Settings
    from tvm.pyrovm.drivers.base import Availability, Driver

# name -> "module:Class", strongest first.
DRIVERS: dict[str, str] = {
    "firecracker": "tvm.pyrovm.drivers.firecracker:FirecrackerDriver",
    "qemu": "tvm.pyrovm.drivers.qemu:QemuDriver",
    "gvisor": "tvm.pyrovm.drivers.gvisor:GVisorDriver",
    "namespace": "tvm.pyrovm.drivers.namespace:NamespaceDriver",
}
AUTO = "auto"


def driver_class(name: str) -> type[Driver]:
    try:
        target = DRIVERS[name]
    except KeyError as exc:
        raise ConfigError(
            f"unknown driver '{name}'; choose one of: {AUTO}, {', '.join(DRIVERS)}"
        ) from exc
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverUnavailable(f"driver '{name}' is not installed: {exc}") from exc
    cls: type[Driver] = getattr(module, cls_name)
    return cls


def probe_all(settings: Settings) -> dict[str, Availability]:
    """Every driver with whether it is usable here and why (not)."""
    from tvm.pyrovm.drivers.base import Availability

    result = {}
    for name in DRIVERS:
        try:
            result[name] = driver_class(name).probe(settings)
        except (DriverUnavailable, ConfigError) as exc:
            result[name] = Availability(False, str(exc))
    return result


def choose_class(settings: Settings) -> type[Driver]:
    """The driver class ``settings.driver`` names (``auto``: the strongest usable one)."""
    name = settings.driver
    if name != AUTO:
        cls = driver_class(name)
        availability = cls.probe(settings)
        if not availability.usable:
            raise DriverUnavailable(f"driver '{name}' cannot run here: {availability.reason}")
        return cls
    probes = probe_all(settings)
    usable = [n for n, a in probes.items() if a.usable and a.auto]
    usable = usable or [n for n, a in probes.items() if a.usable]
    if not usable:
        reasons = "; ".join(f"{n}: {a.reason}" for n, a in probes.items())
        raise DriverUnavailable(f"no isolation driver can run here ({reasons})")
    return max((driver_class(n) for n in usable), key=lambda cls: cls.strength)


def choose(settings: Settings) -> Driver:
    """The driver ``settings.driver`` names, built with (and keeping) ``settings``."""
    return choose_class(settings)(settings)
