"""The device access gateway: the TCP sessions cameras keep with the platform (spec §7.3–§7.5)."""

from globaleye.device.gateway.service import CloudAccounts, DeviceOffline, Gateway, GatewaySettings

__all__ = ["CloudAccounts", "DeviceOffline", "Gateway", "GatewaySettings"]
