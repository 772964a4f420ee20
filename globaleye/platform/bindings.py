"""Which configuration keys fill which settings class (issue 10 item 4).

A key is declared once, in :data:`globaleye.platform.config.SCHEMA` (name, parser, default, documentation).
The attrs ``*Settings`` classes that the services take keep their own defaults, so that a test or a
library user can build one without a configuration; ``tests/integration/test_config.py`` checks that each of
those defaults equals the parsed SCHEMA default of the key bound to the field, so the two cannot
drift apart.  :func:`settings` builds a class from a parsed :class:`~globaleye.platform.config.Config` through
its :class:`Binding`, which replaces the field-by-field hand mapping the composition root
(``globaleye.platform.tap``) used to write.

This module sits with the composition root: it knows every settings class, and no service imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from globaleye.app.cloud import CloudSettings
from globaleye.app.delivery import DeliverySettings
from globaleye.app.group import GroupSettings
from globaleye.app.settings import ClientApiSettings
from globaleye.device.gateway import GatewaySettings
from globaleye.device.registration import RegistrationSettings
from globaleye.ftp import FtpSettings
from globaleye.group.province import ProvinceSettings
from globaleye.guard.keyguard import KeyGuardSettings
from globaleye.guard.netlimits import LimitSettings
from globaleye.platform.config import SCHEMA, Config
from globaleye.proxy.service import RtspProxySettings
from globaleye.s3.endpoint import StorageSettings
from globaleye.store.retention import RetentionSettings
from globaleye.users.accounts import AccountSettings
from globaleye.users.crm import HttpCRMSettings
from globaleye.users.sms.client import SMGPSettings
from txturn.service import TurnServerConfig
from txturn.stunserver import StunServerConfig

T = TypeVar("T")


@attrs.frozen
class Binding:
    """How one attrs settings class is filled from the configuration.

    Each field takes the key of the same name in *section*, if there is one; *keys* names the key
    where the names differ (``"section.key"`` for a key of another section).  *computed* lists the
    fields the composition root derives itself (from several keys, or from what runs: "empty means
    public_host"), given to :func:`settings` as keyword arguments; no key is bound to them.  A field
    in none of these keeps the class default: it is not configurable.  *check_defaults* is False for
    a library's class (txturn), whose defaults are the library's own, not the platform's.
    """

    section: str
    keys: Mapping[str, str] = attrs.field(factory=dict)
    computed: frozenset[str] = frozenset()
    check_defaults: bool = True

    def bound(self, cls: type) -> dict[str, tuple[str, str]]:
        """Field name -> (section, key) of every field a configuration key fills."""
        fields: dict[str, tuple[str, str]] = {}
        for field in attrs.fields(cast(Any, cls)):
            if field.name in self.computed or not field.init:
                continue
            if field.name in self.keys:
                section, _, key = self.keys[field.name].rpartition(".")
                fields[field.name] = (section or self.section, key)
            elif field.name in SCHEMA[self.section]:
                fields[field.name] = (self.section, field.name)
        return fields


#: Every settings class the platform builds from its configuration.  The client API's settings
#: (stun_host, stun_port, firmware) and the RTSP proxy's keyword arguments are still built by hand
#: in globaleye.platform.tap while the application layer (issue 10 item 1) changes them.
BINDINGS: Mapping[type, Binding] = {
    LimitSettings: Binding("limits"),
    KeyGuardSettings: Binding("keyguard"),
    GatewaySettings: Binding("gateway"),
    RegistrationSettings: Binding(
        "gateway",
        keys={"gateway_port": "port", "backup_gateway_host": "backup_host", "enrollment": "enrollment.mode",
              "vendors": "enrollment.vendors", "peer_limit": "enrollment.peer_limit",
              "total_limit": "enrollment.total_limit", "limit_window": "enrollment.limit_window"},
        # Empty keys mean "this host", "the same port", "the [turn] port", "none" (0 in REGISTER_RES).
        computed=frozenset({"gateway_host", "backup_gateway_port", "turn_host", "turn_port", "backup_turn_port"})),
    AccountSettings: Binding("soap", keys={"max_devices": "max_devices_per_account"},
                             computed=frozenset({"digest_realm"})),  # from [rtsp] auth and realm
    ProvinceSettings: Binding("province", keys={"timeout": "group_timeout",
                                                "default_ipcam_num": "soap.max_devices_per_account"}),
    GroupSettings: Binding("group", keys={"numbers": "province_numbers"}),
    RetentionSettings: Binding("retention", computed=frozenset({"days"})),  # one key per kind of record
    SMGPSettings: Binding("sms"),
    HttpCRMSettings: Binding("crm"),
    # §8.9's StunIP/StunPort: empty keys mean public_host and [stun] port, worked out by tap.
    ClientApiSettings: Binding("soap", computed=frozenset({"stun_host", "stun_port"})),
    RtspProxySettings: Binding("rtsp"),
    # data_dir: Config.storage_dir() (relative to, or under, [globaleye] data_dir).
    StorageSettings: Binding("storage", keys={"header_timeout": "limits.http_header_timeout",
                                              "body_timeout": "limits.http_body_timeout",
                                              "idle_timeout": "limits.http_idle_timeout"},
                             computed=frozenset({"data_dir"})),
    FtpSettings: Binding("ftp"),
    TurnServerConfig: Binding(
        "turn",
        keys={"stream_first_message_timeout": "limits.turn_first_message_timeout",
              "stream_auth_timeout": "limits.turn_auth_timeout"},
        # txturn's "none" is None where the INI's is an empty value; class_quotas from new_device_quota.
        computed=frozenset({"tls_cert", "tls_key", "relay_interface", "external_ip", "shared_secret", "max_bps",
                            "software", "class_quotas"}),
        check_defaults=False),
    # EURL: the storage role's public URL (or the external store's), worked out by tap.
    CloudSettings: Binding("cloud", computed=frozenset({"url"})),
    DeliverySettings: Binding("cloud", keys={"sms_per_day": "picture_sms_per_day", "link": "picture_link",
                                             "link_lifetime": "picture_link_lifetime"}),
    StunServerConfig: Binding("stun", computed=frozenset({"alternate_interface", "software"}), check_defaults=False),
}


def settings(config: Config, cls: type[T], **computed: Any) -> T:
    """An instance of *cls* from *config* through its binding; *computed* gives exactly the binding's
    computed fields (a missing or an extra one is a wiring mistake, refused)."""
    binding = BINDINGS[cls]
    if set(computed) != binding.computed:
        raise TypeError(f"{cls.__name__}: computed fields are {sorted(binding.computed)}, "
                        f"given {sorted(computed)}")
    values = {field: config[section][key] for field, (section, key) in binding.bound(cls).items()}
    return cls(**values, **computed)
