"""The device access gateway: the TCP sessions cameras keep with the platform (spec §7.3–§7.5)."""

from globaleye.device.gateway.service import DeviceOffline, Gateway, GatewaySettings

__all__ = ["DeviceOffline", "Gateway", "GatewaySettings"]
