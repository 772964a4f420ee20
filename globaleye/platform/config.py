"""The INI configuration of ``twistd globaleye`` and of the operator CLI.

Operators edit this file by hand, so every mistake must be reported with the file
and the key: an unknown key is refused (a typo must not silently fall back to a
default), values are checked for type and range before anything listens.  The
schema below is the single place a key is declared; ``etc/globaleye.ini`` documents
each one and a test checks that the two agree (documentation and default), and
``globaleye.platform.bindings`` fills the services' settings classes from it.
"""

from __future__ import annotations

import configparser
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from globaleye.guard.ops import operator_token

#: ``storage`` (issue 12): the embedded S3-compatible object store (globaleye.s3).
#: ``ftp`` (issue 12): the cameras' picture uploads and firmware downloads (globaleye.ftp); not a default role.
ROLES = ("gateway", "http", "group", "stun", "turn", "rtsp", "web", "storage", "ftp")


class ConfigError(Exception):
    """A configuration mistake; the message names the file, the section and the key."""


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535)")
    return port


def _optional_port(value: str) -> int | None:
    return None if value.strip() == "" else _port(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (yes/no)")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.replace("\n", ",").split(",") if item.strip())


def _roles(value: str) -> tuple[str, ...]:
    roles = _list(value)
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return roles


def _choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        value = value.strip()
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{value} must be greater than 0")
    return number


def _cidrs(value: str) -> tuple[str, ...]:
    items = _list(value)
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


def _port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    if not sep:
        raise ValueError(f"{value!r} is not a range like 49152-65535")
    first, last = _port(low), _port(high)
    if not 0 < first <= last:
        raise ValueError(f"{value!r} is not an increasing range of non-zero ports")
    return first, last


def _users(value: str) -> dict[str, str]:
    users = {}
    for item in _list(value):
        name, sep, password = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not user:password")
        users[name.strip()] = password.strip()
    return users


def _auth_schemes(value: str) -> tuple[str, ...]:
    """``digest``, ``basic``, ``digest, basic`` or ``none`` (RTSP proxy authentication)."""
    schemes = tuple(item.lower() for item in _list(value))
    if not schemes or any(item not in ("digest", "basic", "none") for item in schemes) or (
            "none" in schemes and len(schemes) > 1):
        raise ValueError(f"{value!r} is not digest, basic, 'digest, basic' or none")
    return schemes


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"{value} must be greater than 0")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"{value} must not be negative")
    return number


def _version(value: str) -> tuple[int, ...]:
    """An MCU version like ``1.0`` or ``2.3.1`` as a tuple that compares numerically."""
    parts = value.strip().split(".")
    if not value.strip() or not all(part.isdigit() for part in parts):
        raise ValueError(f"{value!r} is not a version like 1.0")
    return tuple(int(part) for part in parts)


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{value} must not be negative")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise ValueError(f"{value} is not a fraction greater than 0 and at most 1")
    return number


def _prefix_urls(value: str) -> dict[str, str]:
    """``133=http://a/soap/mcu, 189=http://b/soap/mcu``: mobile number prefix -> province MCU URL."""
    table = {}
    for item in _list(value):
        prefix, sep, url = item.partition("=")
        if not sep or not prefix.strip().isdigit() or not url.strip():
            raise ValueError(f"{item!r} is not PREFIX=URL")
        table[prefix.strip()] = url.strip()
    return table


def _firmware(value: str) -> dict[str, tuple[str, str]]:
    """``MODEL VERSION ftp://user:pw@host:port/file`` entries: model (or *) -> (version, URL)."""
    table = {}
    for item in _list(value):
        words = item.split()
        if len(words) != 3 or not words[2].startswith("ftp://"):
            raise ValueError(f"{item!r} is not MODEL VERSION ftp://[user[:password]@]host[:port]/file")
        table[words[0]] = (words[1], words[2])
    return table


def _province_passwords(value: str) -> dict[str, str]:
    """``3100-01=secret, 1100-01=other``: "ProvinceNo-CmsNo" -> CmsPassword (§6)."""
    table = {}
    for item in _list(value):
        key, sep, password = item.partition("=")
        province, dash, cms = key.strip().partition("-")
        if not sep or not dash or len(province) != 4 or len(cms) != 2 or not (province + cms).isdigit() \
                or not password.strip():
            raise ValueError(f"{item!r} is not PROVINCENO-CMSNO=PASSWORD (e.g. 3100-01=secret)")
        table[key.strip()] = password.strip()
    return table


def _province_numbers(value: str) -> dict[str, str]:
    """``3100-01=133 153, 1100-01=189``: mobile-number prefix ("" for ``*``) -> "ProvinceNo-CmsNo"."""
    table: dict[str, str] = {}
    for item in _list(value):
        key, sep, prefixes = item.partition("=")
        province, dash, cms = key.strip().partition("-")
        if not sep or not dash or len(province) != 4 or len(cms) != 2 or not (province + cms).isdigit() \
                or not prefixes.split() or not all(p == "*" or p.isdigit() for p in prefixes.split()):
            raise ValueError(f"{item!r} is not PROVINCENO-CMSNO=PREFIX [PREFIX ...] (e.g. 3100-01=133 153, or * "
                             "for every number no other prefix covers)")
        for prefix in prefixes.split():
            prefix = "" if prefix == "*" else prefix
            if table.get(prefix, key.strip()) != key.strip():
                raise ValueError(f"prefix {prefix or '*'} is given to both {table[prefix]} and {key.strip()}")
            table[prefix] = key.strip()
    return table


def _digits(count: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        value = value.strip()
        if len(value) != count or not value.isdigit():
            raise ValueError(f"{value!r} is not {count} digits")
        return value
    return check


def _url(value: str) -> str:
    value = value.strip()
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


@attrs.frozen
class Key:
    """One configuration key, declared once: its parser, its default (as the INI writes it) and its
    documentation.  etc/globaleye.ini shows each key under its documentation with its default (both
    checked by tests/integration/test_config.py); globaleye.platform.bindings takes the parsed value to the settings class
    that uses it."""

    parse: Callable[[str], Any]
    default: str
    doc: str


SCHEMA: dict[str, dict[str, Key]] = {
    "globaleye": {
        "roles": Key(_roles, "gateway, http, group, stun, turn, rtsp, web, storage",
                     "Roles this process runs: gateway, http, group, stun, turn, rtsp, web, storage, ftp (ftp is "
                     "not a default: plain FTP sends the cameras' keys in clear)."),
        "public_host": Key(str, "127.0.0.1", "Address devices and clients use to reach this host."),
        "data_dir": Key(str, "var", "Directory for the database and other state (relative to the working directory)."),
        "min_free_mb": Key(_count, "64",
                           "Free space (MiB) data_dir must have at start-up (and at `globaleye config check`); "
                           "0: not checked."),
    },
    "database": {
        "url": Key(str, "sqlite:///globaleye.sqlite3", "sqlite:///PATH (relative to data_dir) or sqlite:///:memory:."),
    },
    "http": {
        "interface": Key(str, "127.0.0.1", "Address of the HTTP site (/register, /redirect)."),
        "port": Key(_port, "8080", "HTTP port; 0 picks a free one."),
        "max_body": Key(int, "65536", "Largest request body accepted, in bytes."),
        "tls_port": Key(_optional_port, "",
                        "HTTPS port: the same site (/register, /redirect, /soap) over TLS, so SOAP passwords and "
                        "DevKeys are not sent in clear (needs tls_cert and tls_key; empty: none)."),
        "tls_cert": Key(str, "", "PEM certificate file (with its chain) for HTTPS."),
        "tls_key": Key(str, "", "PEM private key file for HTTPS."),
    },
    "web": {
        "interface": Key(str, "127.0.0.1", "Address of the shop owner's web portal (/) and its JSON API (/api/v1/)."),
        "port": Key(_port, "8000", "Web portal port; 0 picks a free one."),
        "tls_port": Key(_optional_port, "",
                        "HTTPS port of the web portal (needs tls_cert and tls_key; empty: none). Its session "
                        "cookie is marked Secure there."),
        "tls_cert": Key(str, "", "PEM certificate file (with its chain) for the portal over HTTPS."),
        "tls_key": Key(str, "", "PEM private key file for the portal over HTTPS."),
    },
    "gateway": {
        "interface": Key(str, "127.0.0.1", "Address the device TCP gateway listens on."),
        "port": Key(_port, "8588", "Device gateway port (spec §7.3: 8588); 0 picks a free one."),
        "backup_host": Key(str, "", "Backup gateway address given to devices in REGISTER_RES (empty: this host)."),
        "backup_port": Key(_optional_port, "", "Backup gateway port (empty: the same port)."),
        "heartbeat_timeout": Key(_positive, "360", "Seconds without a heartbeat before a session is closed (§7.3.4)."),
        "login_timeout": Key(_positive, "30", "Seconds a new connection may take to log in."),
        "login_retry": Key(_positive, "180", "Seconds a device must wait after a failed login (§7.3.3)."),
        "command_timeout": Key(_positive, "10", "Default seconds to wait for a device's answer to a command."),
        "register_interval": Key(_positive, "300", "Minimum seconds between two registrations of a device (§7.2)."),
        "cloud_url": Key(str, "", "EURL given in LOGIN_RES (cloud storage authentication URL)."),
        "cloud_account": Key(str, "", "EAccount given in LOGIN_RES."),
        "cloud_password": Key(str, "", "EPassword given in LOGIN_RES."),
        "turn_host": Key(str, "", "TURN server address given in REGISTER_RES (empty: public_host)."),
        "turn_port": Key(_optional_port, "", "TURN server port given in REGISTER_RES (empty: [turn] port)."),
        "backup_turn_host": Key(str, "", "Backup TURN server address given in REGISTER_RES."),
        "backup_turn_port": Key(_optional_port, "", "Backup TURN server port given in REGISTER_RES."),
        "ftp_host": Key(str, "", "Picture FTP server given in REGISTER_RES."),
        "ftp_port": Key(_port, "21", "Picture FTP port given in REGISTER_RES."),
        "ftp_account": Key(str, "", "Picture FTP account given in REGISTER_RES."),
        "ftp_password": Key(str, "", "Picture FTP password given in REGISTER_RES."),
        "reports_per_minute": Key(_count, "30",
                                  "Exception reports and picture notices stored per device per minute; more are "
                                  "answered (exception reports with Result 255), counted and summarised in the log, "
                                  "not stored. 0: no limit."),
        "report_max_chars": Key(_count, "512",
                                "Longest ExceptionDesc or picture FileName stored; longer ones are truncated. 0: no "
                                "limit."),
    },
    "enrollment": {
        "mode": Key(_choice("open", "closed"), "closed",
                    "closed: only devices an operator imported (globaleye device import) or the group vouched for "
                    "(§6.5, when a user adds the camera with the DevKey on its label); open: devices with a valid "
                    "DevID of a known vendor enrol on first registration (the demo; see the limits below). Open "
                    "enrollment lets anyone who can reach /register enrol DevIDs and pin their keys: not on the "
                    "internet."),
        "vendors": Key(lambda value: vendor_codes(_list(value)), "811-824", "Vendor codes accepted in open mode (ranges like 811-824 or single codes)."),
        "peer_limit": Key(_count, "20",
                          "Open mode: new devices one source address (an IPv6 /64) may enrol per limit_window "
                          "(0: no limit)."),
        "total_limit": Key(_count, "200", "Open mode: new devices that may enrol per limit_window in all (0: no limit)."),
        "limit_window": Key(_positive, "60", "Seconds over which peer_limit and total_limit count."),
    },
    "group": {
        "default_province_url": Key(str, "",
                                    "Registration URL returned by /redirect for devices not yet assigned to "
                                    "a province (empty: Result 1 until a province claims the device)."),
        "mcu_urls": Key(_prefix_urls, "",
                        "§9.1: mobile number prefix -> province client API URL, as PREFIX=URL items; the longest "
                        "matching prefix wins. Example: 133=http://sh.example.cn:8080/soap/mcu, "
                        "189=http://bj.example.cn/soap/mcu"),
        "default_mcu_url": Key(str, "",
                               "§9.1 McuUrl for numbers no prefix matches (empty: this process's own "
                               "/soap/mcu when it also runs a gateway, otherwise Result 1)."),
        "cms_name": Key(str, "GlobalEye", "§9.1 CmsName: the platform name shown to clients."),
        "provinces": Key(_province_passwords, "",
                         "§6: the provinces this group serves and their CmsPassword (assigned by the group, "
                         "configured on both sides), as PROVINCENO-CMSNO=PASSWORD items, e.g. 3100-01=s3cret, "
                         "1100-01=0ther. A province not listed gets Result 1, a wrong password Result 2. When this "
                         "process also runs a province and [province] group_url is empty (the demo), that province "
                         "is added automatically."),
        "mcu_android_url": Key(str, "", "§6.1 answer: where users download the Android client."),
        "mcu_android_ver": Key(str, "", "§6.1 answer: the Android client's current version."),
        "mcu_ios_url": Key(str, "", "§6.1 answer: where users download the iOS client."),
        "mcu_ios_ver": Key(str, "", "§6.1 answer: the iOS client's current version."),
        "province_numbers": Key(_province_numbers, "",
                                "§6.2-§6.4: the mobile-number prefixes each province serves, as "
                                "PROVINCENO-CMSNO=PREFIX [PREFIX ...] items, e.g. 3100-01=133 153, 1100-01=189 "
                                "1890021 (the longest matching prefix decides; * stands for every number no other "
                                "prefix covers). A province opening, changing or cancelling a number outside its "
                                "prefixes, or reporting another province's McuUrl/DevUrl, gets Result 255. Empty: no "
                                "province may act for any number, except the province this process also runs (no "
                                "[province] group_url, the demo), which then serves every number."),
        "auth_source_failures": Key(_count, "5",
                                    "Failed CmsPassword checks one source address (IPv6: its /64) may make within "
                                    "auth_window before it is not heard for auth_backoff seconds (0: no limit)."),
        "auth_province_failures": Key(_count, "20",
                                      "Failed CmsPassword checks for one province, from all sources, within "
                                      "auth_window after which it is heard for auth_backoff seconds only from "
                                      "sources that authenticated as it before (0: no limit)."),
        "auth_window": Key(_positive, "600", "Seconds over which failed CmsPassword checks are counted."),
        "auth_backoff": Key(_positive, "60",
                            "Seconds a throttled source or province is not heard; doubles at each repeat, up "
                            "to an hour."),
    },
    "province": {
        "group_url": Key(_url, "",
                         "The group platform's /soap/group URL, e.g. http://group.example.cn:8080/soap/group. Empty: "
                         "this process's own group when it also runs the group role (the demo), otherwise no group "
                         "(devices the province does not know cannot be claimed; everything else works)."),
        "province_no": Key(_digits(4), "3100", "§6 ProvinceNo: the first 4 digits of the GB/T 2260 code."),
        "cms_no": Key(_digits(2), "01", "§6 CmsNo: this platform's number in its province."),
        "cms_password": Key(str, "", "§6 CmsPassword: the password the group assigned to this province (its [group] "
                                     "provinces). An empty password never authenticates: a process running the group "
                                     "and gateway roles without group_url (its group trusts this province) refuses "
                                     "to start while it is empty."),
        "cms_ver": Key(str, "1.0", "§6.1 CmsVer: the platform version reported to the group."),
        "mcu_url": Key(_url, "", "§6.1 McuUrl reported (empty: http://public_host:[http] port/soap/mcu)."),
        "register_url": Key(_url, "",
                            "§6.1 DevUrl reported, where the group redirects claimed cameras "
                            "(empty: http://public_host:[http] port/register)."),
        "group_timeout": Key(_positive, "5", "Seconds to wait for the group's answer to one §6 call."),
        "retry_interval": Key(_positive, "60",
                              "Seconds before a §6 call the group did not take is tried again: the address report at "
                              "this interval, service notices with back-off doubling up to an hour (they are kept in "
                              "the database)."),
        "reconcile_interval": Key(_positive, "86400",
                                  "Seconds between two reconciliations with the group: every account of this "
                                  "province is announced again (§6.3 ChangeService; §6.2 OpenService where the group "
                                  "answers 3, it lacks the number). Also run when the group answers again after an "
                                  "outage. See docs/protocol.md."),
    },
    "soap": {
        "session_idle_timeout": Key(_positive, "1800", "Seconds a LoginSession may stay unused before it expires."),
        "min_mcu_version": Key(_version, "1.0", "Lowest MCU Version accepted at login (§8.3 Result 3 below it)."),
        "update_url": Key(str, "", "UpdateUrl given with §8.3 Result 3: where the client downloads a new version."),
        "max_devices_per_account": Key(_count, "10", "DevNum: devices an account may own (shared ones not counted)."),
        "sms_code_lifetime": Key(_positive, "300", "Seconds an SMS verification code stays valid."),
        "sms_code_attempts": Key(_count, "5", "Wrong entries of an SMS code before it is void."),
        "sms_interval": Key(_positive, "60", "Minimum seconds between two codes sent to one number."),
        "sms_peer_limit": Key(_count, "20", "Codes one source address may request per hour (IPv6: per /64)."),
        "sms_number_hourly": Key(_count, "5", "Codes one number may be sent per hour (however its codes end)."),
        "sms_number_daily": Key(_count, "10", "Codes one number may be sent per day (however its codes end)."),
        "login_slowdown_after": Key(_count, "3", "Wrong passwords in a row after which each answer is delayed."),
        "login_lockout_after": Key(_count, "10", "Wrong passwords in a row after which the account is locked."),
        "login_lockout": Key(_positive, "900", "Seconds an account stays locked."),
        "hashtoken_lifetime": Key(_positive, "60", "Seconds a HashToken stays valid (§7.5.5: 1 minute)."),
        "stun_host": Key(str, "", "StunIP given in §8.9 (empty: public_host)."),
        "stun_port": Key(_optional_port, "", "StunPort given in §8.9 (empty: [stun] port)."),
        "firmware": Key(_firmware, "",
                        "Newest firmware per model for §8.16/§8.17: MODEL VERSION ftp://user:pw@host:port/file items "
                        "(model * matches any). Example: DS-2CD3T25-I3 V1.1.0 "
                        "ftp://upg:secret@10.0.0.5:21/ds/V1.1.0.bin"),
    },
    "sms": {
        "backend": Key(_choice("log", "smgp"), "log",
                       "log: write SMS texts to the log (no gateway needed); smgp: send through SMGP 3.0."),
        "host": Key(str, "127.0.0.1", "SMGP gateway address."),
        "port": Key(_port, "8890", "SMGP gateway port."),
        "client_id": Key(str, "", "SMGP Login ClientID (the SP account, at most 8 characters)."),
        "secret": Key(str, "", "SMGP shared secret (both authenticators)."),
        "src_term_id": Key(str, "", "SrcTermID: the SP access number, e.g. 10659xxxx."),
        "service_id": Key(str, "", "SMGP ServiceID (at most 10 characters)."),
        "submit_timeout": Key(_positive, "30", "Seconds to wait for each Submit_Resp."),
        "active_test_interval": Key(_positive, "60", "Seconds between SMGP keep-alive probes."),
        "long_mode": Key(_choice("udhi", "split"), "udhi",
                         "Long texts: udhi (concatenated, 67 characters a part) or split (70 a part)."),
        "verify_server": Key(_bool, "yes", "Check the gateway's AuthenticatorServer at login."),
    },
    "crm": {
        "backend": Key(_choice("allow", "http"), "allow",
                       "allow: every number may open the service; http: ask the CRM adapter at url (§2, §8.2)."),
        "url": Key(str, "", "CRM adapter URL (backend = http)."),
        "method": Key(_choice("POST", "GET"), "POST", "HTTP method for the CRM adapter."),
        "timeout": Key(_positive, "3", "Seconds to wait for the CRM."),
        "fail_open": Key(_bool, "no",
                         "When the CRM cannot answer (down, timeout, redirect, bad answer): no refuses the "
                         "number, yes lets it open the service."),
    },
    "stun": {
        "interface": Key(str, "127.0.0.1", "Primary STUN address."),
        "port": Key(_port, "3479",
                    "Primary STUN port (3478 is left to the TURN server, which also answers Binding)."),
        "alternate_interface": Key(str, "", "Second address for RFC 3489 CHANGE-REQUEST (empty: none)."),
        "alternate_port": Key(_port, "3480", "Second port for RFC 3489 CHANGE-REQUEST."),
    },
    "turn": {
        "interface": Key(str, "127.0.0.1", "Address the TURN server listens on (UDP and TCP)."),
        "port": Key(_port, "3478", "TURN port (also answers STUN Binding)."),
        "tls_port": Key(_optional_port, "", "TURN over TLS port (needs tls_cert and tls_key)."),
        "tls_cert": Key(str, "", "PEM certificate file for TURN over TLS."),
        "tls_key": Key(str, "", "PEM private key file for TURN over TLS."),
        "realm": Key(str, "globaleye", "Long-term credential realm."),
        "relay_interface": Key(str, "", "Address relays bind on (empty: interface)."),
        "external_ip": Key(str, "", "Address advertised in XOR-RELAYED-ADDRESS (empty: the relay address)."),
        "relay_ports": Key(_port_range, "49152-65535", "Relay port range."),
        "users": Key(_users, "", "Static users: alice:secret, bob:pw."),
        "shared_secret": Key(str, "", "TURN REST API shared secret (time-limited usernames)."),
        "allow_peers": Key(_cidrs, "", "Peer ranges allowed even if private/loopback (CIDR list)."),
        "deny_peers": Key(_cidrs, "", "Peer ranges always denied (CIDR list)."),
        "user_quota": Key(int, "10", "Allocations per user."),
        "total_quota": Key(int, "10000", "Allocations in all."),
        "max_bps": Key(int, "0", "Bandwidth cap per allocation in bytes/s (0: none)."),
        "device_credentials": Key(_bool, "yes", "Accept DevID/DevKey of the device store as TURN credentials."),
        "device_quota": Key(_count, "2", "Allocations per device (DevID/DevKey credentials); a camera keeps one."),
        "new_device_quota": Key(_count, "200",
                                "Allocations in all for self-enrolled devices that never completed a gateway "
                                "login; the rest of total_quota stays for the others."),
    },
    "rtsp": {
        "interface": Key(str, "127.0.0.1", "Address the RTSP proxy listens on for players."),
        "port": Key(_port, "8554", "RTSP proxy port; 0 picks a free one."),
        "tls_port": Key(_optional_port, "",
                        "RTSPS port (RTSP over TLS, rtsps://; needs tls_cert and tls_key; empty: none). Media go "
                        "interleaved inside TLS; RTP over UDP is refused there, as it would leave the connection "
                        "encrypted and the pictures not."),
        "tls_cert": Key(str, "", "PEM certificate file (with its chain) for RTSPS."),
        "tls_key": Key(str, "", "PEM private key file for RTSPS."),
        "auth": Key(_auth_schemes, "digest",
                    "How players log in with their platform account: digest, basic, 'digest, basic' or none "
                    "(none: anyone may watch any online camera; tests and closed networks only). With digest, "
                    "each account keeps MD5(account:realm:password) next to its argon2 hash; basic or none keeps "
                    "none (docs/protocol.md, Client API item 18)."),
        "realm": Key(str, "GlobalEye", "Authentication realm shown to players (part of the Digest secret)."),
        "auth_peer_limit": Key(_count, "20",
                               "Failed authentications one source address (an IPv6 /64) may have within "
                               "auth_peer_window seconds; after that its requests get 403 and are disconnected until "
                               "older failures leave the window. 0: no limit per address. Wrong passwords also count "
                               "per account, together with SOAP logins ([soap] login_slowdown_after, "
                               "login_lockout_after, login_lockout). Counted: a wrong password, an unknown user, a "
                               "try on a locked account; not counted: a player's first request without credentials, "
                               "a stale Digest nonce."),
        "auth_peer_window": Key(_positive, "300", "Seconds of the auth_peer_limit window (sliding)."),
        "linger": Key(_seconds, "5", "Seconds a camera stream stays up after its last viewer left."),
        "udp_timeout": Key(_positive, "5",
                           "Seconds to wait for RTP over UDP through the TURN relay before falling back to "
                           "TCP interleaved (§15 step 4: 5)."),
        "connect_timeout": Key(_positive, "3", "Seconds for each TCP connect to a camera address."),
        "max_viewers": Key(_count, "1000", "Viewer sessions the proxy serves at once (453 beyond)."),
        "stall_timeout": Key(_positive, "10",
                             "Seconds a TCP viewer may read nothing before it is dropped (it skips pictures "
                             "before that)."),
        "recover_timeout": Key(_seconds, "30",
                               "Seconds the proxy keeps trying to get a live camera stream back for its viewers "
                               "when the camera drops it (reboot, network change); the viewers stay connected "
                               "meanwhile. 0: disconnect them at once."),
        "media_timeout": Key(_positive, "10",
                             "Seconds without a packet from a camera before its stream counts as lost (and is "
                             "got back as above)."),
    },
    "log": {
        "max_size": Key(_count, "10000000",
                        "Bytes of a twistd log file before it is rotated (at least 4096) (twistd --logfile, or twistd.log when "
                        "run as a daemon)."),
        "max_files": Key(_count, "10",
                         "Rotated log files kept beside the current one (at least 1); older ones are deleted, "
                         "so the log takes at most (max_files + 1) x max_size bytes."),
    },
    "limits": {
        "per_address": Key(_count, "256",
                           "Connections one source address (an IPv6 /64) may hold to one listening role "
                           "(gateway, http, rtsp, rtsps, turn-tcp, turn-tls); more are closed at once. 0: no limit."),
        "total": Key(_count, "0",
                     "Connections to all roles together. 0: the open file limit minus headroom."),
        "headroom": Key(_count, "256",
                        "With total = 0: descriptors kept free for the database, logs, TURN relays and the "
                        "platform's own connections."),
        "role_share": Key(_fraction, "0.75",
                          "Fraction of total one role may hold, so a flood of one role leaves room for the others."),
        "pressure": Key(_fraction, "0.5",
                        "Fraction of a role's share (or of total) above which pre-login deadlines shrink: a "
                        "connection not logged in (gateway), without a session (RTSP), without a whole request "
                        "(HTTP) or without an allocation (TURN) is closed after a deadline falling from the "
                        "role's own timeout to min_deadline as the budget fills."),
        "min_deadline": Key(_positive, "2", "Shortest pre-login deadline, in seconds, when a budget is full."),
        "http_header_timeout": Key(_positive, "10",
                                   "Seconds an HTTP request line and headers may take from the request's first "
                                   "byte (the connection's opening, for the first request); then 408 and close."),
        "http_body_timeout": Key(_positive, "30",
                                 "Seconds an HTTP request body may take after its headers; then 408 and close."),
        "http_idle_timeout": Key(_positive, "60", "Seconds an HTTP keep-alive connection may wait for its next request."),
        "turn_first_message_timeout": Key(_positive, "10",
                                          "Seconds a TURN TCP/TLS connection has to send its first STUN message "
                                          "(the TLS handshake included)."),
        "turn_auth_timeout": Key(_positive, "30",
                                 "Seconds a TURN TCP/TLS connection has to get an allocation (or bind as an "
                                 "RFC 6062 data connection)."),
        "log_interval": Key(_positive, "60", "Seconds between summary lines of refused connections."),
    },
    "ops": {
        "token": Key(operator_token, "",
                     "Operator pages on the HTTP site (today /status/streams: streams, accounts, DevIDs, viewer "
                     "addresses). They are served only when a token is set, and only to requests that send "
                     '"Authorization: Bearer TOKEN" (or HTTP Basic with any user name and TOKEN as password); at '
                     'least 16 characters, e.g. from `python -c "import secrets; print(secrets.token_urlsafe(24))"`. '
                     "Empty: the operator pages are not served at all. Use it over TLS or from the operator's own "
                     "network only."),
    },
    "retention": {
        "exceptions": Key(_seconds, "30", "Days device exception reports are kept (0: for ever)."),
        "pictures": Key(_seconds, "30", "Days device picture notices are kept (0: for ever)."),
        "audit": Key(_seconds, "180", "Days the client API's audit log is kept (0: for ever)."),
        "interval": Key(_positive, "3600", "Seconds between two purges (the first runs at start-up)."),
        "batch": Key(_positive_int, "1000",
                     "Rows deleted per store call of a purge (the store's other work goes on between them)."),
    },
    "keyguard": {
        "source_free": Key(_count, "10",
                           "Failed DevKey/password checks one source address (an IPv6 /64) may have, over all "
                           "DevIDs and accounts, before each further check of an identity that does not trust it "
                           "waits 1, 2, 4 … s after its latest failure."),
        "source_max": Key(_positive, "3600", "Longest wait of a source address's backoff, in seconds."),
        "identity_free": Key(_count, "20",
                             "Failed checks of one DevID or account from addresses it does not trust before each "
                             "further check from such an address waits 1, 2, 4 … s."),
        "identity_max": Key(_positive, "60",
                            "Longest wait of a DevID's or account's backoff (and of one address's for one "
                            "identity), in seconds."),
        "pair_free": Key(_count, "3",
                         "Failed checks of one identity from one address before that address backs off for it; "
                         "also the most wrong passwords one address adds to an account's lockout count."),
        "trust_ttl": Key(_positive, "604800",
                         "Seconds an address stays trusted for a DevID or account after a right key or password "
                         "from it: others' failures never refuse it."),
        "forget": Key(_positive, "86400", "Seconds after its latest failure that a failure count is forgotten."),
        "max_entries": Key(_count, "100000", "Failure and trust records kept at most (the quietest go first)."),
    },
    "storage": {
        "interface": Key(str, "127.0.0.1", "Address of the embedded S3-compatible object store (the storage role, §7.1)."),
        "port": Key(_port, "9000", "Object store port; 0 picks a free one."),
        "data_dir": Key(str, "",
                        "Directory of the embedded store's objects (relative: to [globaleye] data_dir; empty: "
                        "storage under it). Its filesystem must keep user extended attributes (ext4, xfs, btrfs)."),
        "public_url": Key(_url, "",
                          "EURL given to cameras (LOGIN_RES, 65H): where they reach the store "
                          "(empty: http://public_host:port)."),
        "max_object_size": Key(_positive_int, "5368709120",
                               "Largest object accepted, in bytes (a larger Content-Length is refused before the "
                               "body is read; a chunked body is cut when it passes it)."),
        "multipart_expiry": Key(_positive, "86400",
                                "Seconds an unfinished multipart upload is kept after its latest part."),
        "region": Key(str, "us-east-1", "Region name of the store (the one clients sign with; any is accepted)."),
        "backend": Key(_choice("file", "s3"), "file",
                       "file: objects in data_dir (the embedded store); s3: an external S3-compatible service "
                       "(endpoint, region, access_key, secret_key, addressing_style)."),
        "endpoint": Key(_url, "", "backend = s3: the external service's URL, e.g. https://oos-cn.ctyunapi.cn."),
        "access_key": Key(str, "", "backend = s3: the platform's access key at the external service."),
        "secret_key": Key(str, "", "backend = s3: the platform's secret key at the external service."),
        "addressing_style": Key(_choice("path", "virtual"), "path",
                                "backend = s3: path (https://host/bucket/key) or virtual (https://bucket.host/key)."),
    },
    "ftp": {
        "interface": Key(str, "127.0.0.1",
                         "Address the cameras' FTP server listens on (pictures of §7.5.24 policies with StoreType "
                         "0, 36H; firmware of 6DH). Passive data connections are bound to the same address."),
        "port": Key(_port, "2121",
                    "FTP control port; 0 picks a free one. Not 21: a port below 1024 needs root, and the platform "
                    "does not run as root; give cameras 21 by a firewall redirect (or [gateway] ftp_port = 2121)."),
        "passive_ports": Key(_port_range, "50000-50099",
                             "Ports of passive data connections (PASV/EPSV; active mode is refused), first-last: "
                             "one per transfer in progress; open them in the firewall."),
        "max_picture_size": Key(_positive_int, "2097152",
                                "Largest picture accepted, in bytes; a larger upload is cut and nothing is kept."),
        "firmware_dir": Key(str, "",
                            "Directory whose plain files RETR serves (the ftp:// firmware URLs of [soap] firmware, "
                            "6DH); empty: no downloads."),
        "firmware_account": Key(str, "",
                                "user:password of the read-only account of those firmware URLs (it may only RETR); "
                                "empty: none. Cameras also log in with their own store keys."),
        "staging_dir": Key(str, "",
                           "Directory uploads are written to (with fsync) before the object store takes them; "
                           "empty: ftp-staging in data_dir."),
        "login_timeout": Key(_positive, "30", "Seconds a new connection may take to log in."),
        "idle_timeout": Key(_positive, "120", "Seconds a logged-in connection may stay without a command."),
        "transfer_timeout": Key(_positive, "30", "Seconds an upload may go without receiving a byte."),
    },
    "cloud": {
        "retention_days": Key(_seconds, "30", "Days a stored recording or picture is kept, unless its account has "
                                               "its own retention (0: for ever)."),
        "device_quota": Key(_count, "0", "MB (2**20 bytes) one camera may store (0: no quota); when full, a camera "
                                         "set to loop (7AH RecordLoop 1) overwrites its oldest files, another is "
                                         "refused."),
        "account_quota": Key(_count, "0", "MB (2**20 bytes) the cameras an account owns may store together (0: no "
                                          "quota)."),
        "url_lifetime": Key(_positive, "300", "Seconds a download URL given to a user stays valid."),
        "retention_interval": Key(_seconds, "3600", "Seconds between two retention purges (0: none)."),
        "reconcile_interval": Key(_seconds, "3600", "Seconds between two reconciliations of the index with the "
                                                    "store's listing (0: none)."),
        "access_key": Key(str, "", "The platform's own S3 access key for the store (empty: none)."),
        "secret_key": Key(str, "", "Its secret."),
        "batch": Key(_positive_int, "500", "Index entries handled per store call by retention and reconciliation."),
        # FTP pictures delivered to the owner (§7.5.24, globaleye/app/delivery.py)
        "picture_sms_per_day": Key(_count, "3", "SMS per owner and Beijing day telling of new FTP pictures (§7.5.24 "
                                                "policies); the rest are in the portal only (0: no SMS)."),
        "picture_link": Key(_choice("portal", "presigned"), "portal",
                            "The SMS's link: portal (the portal's picture page, login needed) or presigned (the "
                            "picture itself, no login, for picture_link_lifetime seconds: anyone who sees the SMS)."),
        "picture_link_lifetime": Key(_positive, "86400", "Seconds a presigned picture link lives."),
    },
}


@attrs.frozen
class Config:
    """A parsed, checked configuration; ``values[section][key]`` holds typed values."""

    path: Path | None
    values: Mapping[str, Mapping[str, Any]]

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    @property
    def data_dir(self) -> Path:
        """Relative to the working directory, as twistd's own --pidfile and --logfile are."""
        return Path(self.values["globaleye"]["data_dir"]).absolute()

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.values["globaleye"]["roles"])

    def database_path(self) -> str:
        url = self.values["database"]["url"]
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"{self.path}: [database] url: only sqlite:/// URLs are supported so far, got {url!r}")
        path = url[len("sqlite:///") :]
        if path == ":memory:":
            return path
        resolved = Path(path)
        if not resolved.is_absolute():
            resolved = self.data_dir / resolved
        return str(resolved)

    def storage_dir(self) -> str:
        """[storage] data_dir resolved: relative to [globaleye] data_dir; empty: ``storage`` under it."""
        resolved = Path(self.values["storage"]["data_dir"] or "storage")
        if not resolved.is_absolute():
            resolved = self.data_dir / resolved
        return str(resolved)

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys changed: ``config.replace(http={"port": 0})``."""
        values = {name: dict(keys) for name, keys in self.values.items()}
        for name, keys in sections.items():
            values[name].update(keys)
        return Config(self.path, values)


def parse_config(text: str, path: Path | None = None) -> Config:
    where = str(path) if path is not None else "<config>"
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=where)
    except configparser.Error as e:
        raise ConfigError(f"{where}: {e}") from e
    return _typed(parser, where, path)


def load_config(path: str | Path | None) -> Config:
    """Read *path*, or the built-in defaults when *path* is None."""
    if path is None:
        return parse_config("")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from e
    return parse_config(text, path.resolve())


def _typed(parser: configparser.ConfigParser, where: str, path: Path | None) -> Config:
    values: dict[str, dict[str, Any]] = {}
    for section in parser.sections():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        for key in parser[section]:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{where}: [{section}] unknown key {key!r} "
                                  f"(known: {', '.join(SCHEMA[section])})")
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, spec in keys.items():
            raw = parser.get(section, key, fallback=spec.default) if parser.has_section(section) else spec.default
            try:
                values[section][key] = spec.parse(raw)
            except ValueError as e:
                raise ConfigError(f"{where}: [{section}] {key} = {raw!r}: {e}") from e
    _check_combinations(values, where)
    return Config(path, values)


def _check_combinations(values: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Keys that are only wrong together, caught before anything starts."""
    if values["sms"]["backend"] == "smgp":
        missing = [key for key in ("client_id", "secret", "src_term_id") if not values["sms"][key]]
        if missing:
            raise ConfigError(f"{where}: [sms] backend = smgp needs {', '.join(missing)}")
    if values["crm"]["backend"] == "http" and not values["crm"]["url"]:
        raise ConfigError(f"{where}: [crm] backend = http needs url")
    for section in ("http", "web", "rtsp", "turn"):
        _check_tls(values[section], section, where)


def _check_tls(keys: Mapping[str, Any], section: str, where: str) -> None:
    """A TLS listener needs a readable certificate and the key that matches it: checked here, so that
    ``config check`` and twistd name the file and the key instead of failing later or not listening."""
    if keys["tls_port"] is None:
        return
    if not (keys["tls_cert"] and keys["tls_key"]):
        raise ConfigError(f"{where}: [{section}] tls_port needs tls_cert and tls_key")
    from globaleye.guard.tls import TLSFileError, server_context

    try:
        server_context(keys["tls_cert"], keys["tls_key"])
    except TLSFileError as e:
        raise ConfigError(f"{where}: [{section}] {e.key}: {e}") from e


def vendor_codes(items: Iterable[str]) -> frozenset[str]:
    """Expand ``811-824, 830`` into the set of three-digit vendor codes."""
    codes: set[str] = set()
    for item in items:
        low, sep, high = item.partition("-")
        if sep:
            codes.update(f"{code:03d}" for code in range(int(low), int(high) + 1))
        else:
            codes.add(f"{int(item):03d}")
    return frozenset(codes)
