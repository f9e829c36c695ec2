"""Isolation drivers, loaded lazily by name.

``TVM_DRIVER=auto`` picks the strongest driver whose probe succeeds. Adding a
driver is one module here plus one line in :data:`DRIVERS`.
"""

from __future__ import annotations

import importlib

from tvm.errors import ConfigError, DriverUnavailable
from tvm.pyrovm.drivers.base import Availability, Driver

# name -> "module:Class", strongest first.
DRIVERS: dict[str, str] = {
    "firecracker": "tvm.pyrovm.firecracker:FirecrackerDriver",
    "qemu": "tvm.pyrovm.drivers.qemu:QemuDriver",
    "gvisor": "tvm.pyrovm.drivers.gvisor:GVisorDriver",
    "namespace": "tvm.pyrovm.drivers.namespace:NamespaceDriver",
}


def driver_class(name: str) -> type[Driver]:
    try:
        target = DRIVERS[name]
    except KeyError as exc:
        raise ConfigError(
            f"unknown driver '{name}'; choose one of: auto, {', '.join(DRIVERS)}"
        ) from exc
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverUnavailable(f"driver '{name}' is not installed: {exc}") from exc
    cls: type[Driver] = getattr(module, cls_name)
    return cls


def probe_all() -> dict[str, Availability]:
    """Every driver with whether it is usable here and why (not)."""
    result = {}
    for name in DRIVERS:
        try:
            result[name] = driver_class(name).probe()
        except (DriverUnavailable, ConfigError) as exc:
            result[name] = Availability(False, str(exc))
    return result


def choose(name: str) -> type[Driver]:
    """The driver class for ``name`` (``auto``: the strongest usable one)."""
    if name != "auto":
        cls = driver_class(name)
        availability = cls.probe()
        if not availability.usable:
            raise DriverUnavailable(f"driver '{name}' cannot run here: {availability.reason}")
        return cls
    probes = probe_all()
    usable = [n for n, a in probes.items() if a.usable and a.auto]
    usable = usable or [n for n, a in probes.items() if a.usable]
    if not usable:
        reasons = "; ".join(f"{n}: {a.reason}" for n, a in probes.items())
        raise DriverUnavailable(f"no isolation driver can run here ({reasons})")
    return max((driver_class(n) for n in usable), key=lambda cls: cls.strength)
