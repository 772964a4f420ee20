"""What the platform keeps across restarts, behind an asynchronous interface.

Callers depend only on :class:`Store` (a typing Protocol) and the attrs records
here; :mod:`globaleye.store.sqlite` is the embedded default.  Every method returns
an awaitable because the real work happens off the reactor thread: a PostgreSQL
implementation can follow without any caller changing.

What is deliberately *not* here: heartbeats.  A camera beats every 120 s and a
gateway holds tens of thousands of them, so liveness stays in memory in the
gateway; the store sees a device's addresses only when they change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs


@attrs.frozen
class Device:
    """A device known to this province platform."""

    dev_id: str
    dev_key: str
    manufacturer_no: str = ""
    model: str = ""
    dev_type: int = 1
    source: str = "import"  # "import" (an operator) or "open" (self-enrolled)
    created_at: float = 0.0
    registered_at: float | None = None
    login_at: float | None = None
    dev_ver: str = ""


@attrs.frozen
class DeviceAddresses:
    """Where a device says it can be reached (LOGIN_REQ / HEARTBEAT_REQ, §7.5.1, §7.5.3)."""

    public_ip: str = ""
    public_port: int = 0
    upnp_ip: str = ""
    rtsp_upnp_port: int = 0
    local_ip: str = ""
    rtsp_local_port: int = 0
    turn_relay_ip: str = ""
    rtsp_turn_relay_port: int = 0
    net_type: int = 0


@attrs.frozen
class DeviceAbility:
    """The ability report of §7.5.2, kept for the client API (PtzFlag, channels)."""

    channel_num: int = 0
    ptz_flag: int = 0
    estore_flag: int = 0
    local_store_flag: int = 0
    xml: bytes = b""


@attrs.frozen
class ExceptionRecord:
    dev_id: str
    channel_no: int
    exception_type: int
    description: str
    received_at: float
    id: int | None = None


@attrs.frozen
class PictureRecord:
    dev_id: str
    channel_no: int
    file_name: str
    shot_time: str
    received_at: float
    id: int | None = None


@attrs.frozen
class HashToken:
    """A one-time token (§7.5.5, §7.5.23) the platform issued for one view."""

    token: str
    dev_id: str
    channel_no: int
    expires_at: float
    stream_type: int = 0  # live view
    file_name: str = ""  # playback
    account: str = ""


@attrs.frozen
class Account:
    """A client account (§8.2): the 11-digit mobile number and its password hash (argon2)."""

    account: str
    password_hash: str
    created_at: float = 0.0
    password_changed_at: float = 0.0
    dev_num: int | None = None  # devices it may own; None: [soap] max_devices_per_account


@attrs.frozen
class DigestSecret:
    """An account's RTSP Digest secret (RFC 2617): HA1 = MD5(account:realm:password), for *realm*,
    and the same with SHA-256 (RFC 7616).

    Kept next to the argon2 hash because Digest cannot be verified from argon2; see
    docs/protocol.md ("Client API", item 18) for the trade-off and ``[rtsp] auth = basic``.
    """

    realm: str
    ha1: str = attrs.field(repr=False)
    #: HA1 of RFC 7616's SHA-256 Digest: SHA-256(account:realm:password); None until written.
    ha1_sha256: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Binding:
    """A device on an account's list (§8.5): its own (share_flag 0) or shared with it (1)."""

    account: str
    dev_id: str
    share_flag: int = 0
    name: str = ""
    bound_at: float = 0.0


#: Outcomes of :meth:`Store.bind_device`.
BIND_OK, BIND_ALREADY_MINE, BIND_TAKEN, BIND_LIMIT, BIND_NO_ACCOUNT = "ok", "mine", "taken", "limit", "no-account"


#: What :meth:`Store.purge` deletes: rows devices and users make the platform store ([retention]).
RETENTION_KINDS = ("exceptions", "pictures", "audit")


@attrs.frozen
class AuditRecord:
    """One action of the client API, who did it from where, and its Result."""

    at: float
    account: str
    peer: str
    action: str
    result: int = 0
    detail: str = ""
    id: int | None = None


@attrs.frozen
class GroupDevice:
    """A device the group platform knows (§6.6 step 2): seen by /redirect or imported."""

    dev_id: str
    dev_key: str
    manufacturer_no: str = ""
    model: str = ""
    dev_type: int = 1
    source: str = "redirect"  # "redirect" (its key pinned at first sight) or "import"
    first_seen: float = 0.0
    last_seen: float = 0.0


@attrs.frozen
class ProvinceReport:
    """A province's §6.1 address report, as the group keeps it; ``province`` is "ProvinceNo-CmsNo"."""

    province: str
    cms_ver: str = ""
    mcu_url: str = ""
    dev_url: str = ""
    peer: str = ""
    reported_at: float = 0.0


@attrs.frozen
class Subscriber:
    """A mobile number with the service open in a province (§6.2-§6.4, group side)."""

    mobile: str
    province: str
    ipcam_num: int
    opened_at: float = 0.0
    changed_at: float = 0.0


@attrs.frozen
class OutboxItem:
    """A §6 notice a province still owes the group (sent again until the group has it)."""

    operation: str
    payload: str  # JSON object of the request's values
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    id: int | None = None


#: Kinds of :class:`CloudObject`: a §7.1.1 recording (.ts), a picture (.jpg), or a device's object whose
#: name is neither (kept, counted against the quotas, never listed as a recording or a picture).
CLOUD_RECORD, CLOUD_PICTURE, CLOUD_OTHER = "record", "picture", "other"
#: How an index entry came: an upload through our S3 endpoint, through our FTP role, or a scan of an
#: external store (written there without passing through us).
SOURCE_S3, SOURCE_FTP, SOURCE_SCAN = "s3", "ftp", "scan"
#: The longest an indexed object may last (seconds); longer durations are clamped when indexed, so that
#: a time-range search reads only the index entries that start at most this long before the range.
MAX_OBJECT_SECONDS = 3600.0


@attrs.frozen
class CloudObject:
    """One object of the cloud store as the platform indexes it (§7.1.2: search by camera, time, type)."""

    dev_id: str
    channel_no: int
    kind: str  # CLOUD_RECORD, CLOUD_PICTURE or CLOUD_OTHER
    start: float  # POSIX seconds of the name's Beijing device time (§7.1.1 DevID_ChannelNo_YYYYMMDDHHMMSS)
    duration: float  # seconds (0 for a picture)
    size: int
    bucket: str
    key: str
    etag: str = ""
    stored_at: float = 0.0  # the platform's clock when it was indexed
    source: str = SOURCE_S3

    @property
    def end(self) -> float:
        return self.start + self.duration


@attrs.frozen
class CloudCredential:
    """A device's own signing key for the cloud store (LOGIN_RES EAccount/EPassword, 65H)."""

    access_key: str
    dev_id: str
    secret: str = attrs.field(repr=False)
    created_at: float = 0.0
    revoked_at: float | None = None


@attrs.frozen
class CloudPage:
    """One page of a search: how many match in all, and these."""

    total: int
    objects: tuple[CloudObject, ...]


#: Outcomes of :meth:`Store.register_device` and :meth:`Store.login_device`.
DEVICE_OK, DEVICE_UNKNOWN, DEVICE_BAD_KEY, DEVICE_TOO_SOON = "ok", "unknown", "bad-key", "too-soon"


@attrs.frozen
class RegistrationOutcome:
    """What :meth:`Store.register_device` decided, in the same transaction as its writes."""

    outcome: str  # DEVICE_OK, DEVICE_UNKNOWN, DEVICE_BAD_KEY or DEVICE_TOO_SOON
    device: Device | None = None  # the device as it was before this registration (None: unknown)
    enrolled: bool = False  # the candidate was inserted by this call


#: Outcomes of :meth:`Store.open_subscriber` and :meth:`Store.share_device`.
OPEN_OK, OPEN_OTHER_PROVINCE = "ok", "other-province"
SHARE_OK, SHARE_NOT_OWNER, SHARE_NO_ACCOUNT, SHARE_SELF = "ok", "not-owner", "no-account", "self"


class StoreError(Exception):
    """The store could not do what was asked (e.g. a duplicate where none may be)."""


class Store(Protocol):
    async def get_device(self, dev_id: str) -> Device | None: ...

    async def list_devices(self) -> list[Device]: ...

    async def import_devices(self, devices: Sequence[Device]) -> int:
        """Insert or update (key, vendor, model) devices an operator imports; returns how many."""
        ...

    async def enroll_device(self, device: Device) -> bool:
        """Insert a self-enrolling device unless it exists; True when it was inserted."""
        ...

    async def delete_device(self, dev_id: str) -> bool: ...

    async def record_registration(self, dev_id: str, when: float) -> None: ...

    async def register_device(self, dev_id: str, dev_key: str, when: float, interval: float,
                              candidate: Device | None = None,
                              waive: Callable[[Device], bool] | None = None) -> RegistrationOutcome:
        """§7.2 in one transaction: look *dev_id* up, enrol *candidate* if it is unknown (None: do not
        enrol), check the pinned DevKey and the *interval* since the last registration, and record
        the registration at *when*.  Nothing is written unless the outcome is DEVICE_OK, and a failure
        part-way writes nothing (no device enrolled without its registration, or the reverse).
        *waive* (a pure function of the stored device, called in the transaction) lifts the interval
        for a device it returns True for (one whose session the platform lost)."""
        ...

    async def record_login(self, dev_id: str, when: float, dev_ver: str, addresses: DeviceAddresses) -> None: ...

    async def login_device(self, dev_id: str, dev_key: str, when: float, dev_ver: str,
                           addresses: DeviceAddresses) -> str:
        """§7.3.3 in one transaction: check the device and its DevKey and, when they are right, record
        the login and the addresses.  DEVICE_OK, DEVICE_UNKNOWN or DEVICE_BAD_KEY (nothing written)."""
        ...

    async def update_addresses(self, dev_id: str, addresses: DeviceAddresses) -> None: ...

    async def get_addresses(self, dev_id: str) -> DeviceAddresses | None: ...

    async def record_ability(self, dev_id: str, ability: DeviceAbility) -> None: ...

    async def get_ability(self, dev_id: str) -> DeviceAbility | None: ...

    async def add_exception(self, record: ExceptionRecord) -> int: ...

    async def list_exceptions(self, dev_id: str, limit: int = 100) -> list[ExceptionRecord]: ...

    async def add_picture(self, record: PictureRecord) -> int: ...

    async def list_pictures(self, dev_id: str, limit: int = 100) -> list[PictureRecord]: ...

    async def add_token(self, token: HashToken) -> None: ...

    async def consume_token(self, token: str, now: float) -> HashToken | None:
        """Remove and return *token* if it exists and has not expired: single use, platform-wide."""
        ...

    async def get_province_url(self, dev_id: str) -> str | None:
        """The group platform's assignment of a device to a province (§5, §6.6)."""
        ...

    async def assign_province(self, dev_id: str, province_url: str, when: float) -> None: ...

    async def claim_province(self, dev_id: str, province: str, province_url: str, when: float) -> str:
        """Assign *dev_id* to *province* unless another province has it; returns the owning province.

        Atomic, so two provinces claiming one camera at once cannot both win (§6.6 step 7).
        """
        ...

    async def get_province_of(self, dev_id: str) -> str | None:
        """The province ("ProvinceNo-CmsNo") a device is assigned to ("" for a bare URL assignment)."""
        ...

    async def get_group_device(self, dev_id: str) -> GroupDevice | None: ...

    async def note_group_device(self, device: GroupDevice) -> GroupDevice:
        """Record a device seen by /redirect unless known (then only last_seen moves); returns the record."""
        ...

    async def import_group_devices(self, devices: Sequence[GroupDevice]) -> int: ...

    async def redirect_device(self, dev_id: str, seen: GroupDevice | None) -> tuple[GroupDevice | None, str | None]:
        """§5 in one transaction: note *seen* as :meth:`note_group_device` does (None: note nothing) and
        return the group's record of the device and its registration URL: the DevUrl of the latest
        §6.1 report of the province that claimed it, else the URL it was assigned (None: neither)."""
        ...

    async def save_province_report(self, report: ProvinceReport) -> None: ...

    async def get_province_report(self, province: str) -> ProvinceReport | None: ...

    async def open_subscriber(self, subscriber: Subscriber) -> str:
        """OPEN_OK (new, or re-opened by the same province) or OPEN_OTHER_PROVINCE."""
        ...

    async def change_subscriber(self, mobile: str, province: str, ipcam_num: int, when: float) -> bool: ...

    async def cancel_subscriber(self, mobile: str, province: str) -> bool: ...

    async def get_subscriber(self, mobile: str) -> Subscriber | None: ...

    # Province's outbox of §6 notices -----------------------------------------------------

    async def add_outbox(self, item: OutboxItem) -> int: ...

    async def due_outbox(self, now: float, limit: int = 100) -> list[OutboxItem]: ...

    async def delete_outbox(self, item_id: int) -> None: ...

    async def retry_outbox(self, item_id: int, attempts: int, next_at: float) -> None: ...

    # Client accounts (§8) ----------------------------------------------------------

    async def create_account(self, account: Account, digest: DigestSecret | None = None) -> bool:
        """Insert *account* (with its Digest secret, if any); False (and nothing written) when the
        number is already registered."""
        ...

    async def get_account(self, account: str) -> Account | None: ...

    async def set_password(self, account: str, password_hash: str, when: float,
                           digest: DigestSecret | None = None) -> bool:
        """Replace the password hash and, in the same write, the Digest secret (cleared when None):
        a secret of the old password never outlives it."""
        ...

    async def get_digest(self, account: str) -> DigestSecret | None: ...

    async def set_digest(self, account: str, password_hash: str, digest: DigestSecret | None) -> bool:
        """Set (or clear, with None) the Digest secret while the password hash is still *password_hash*.

        False when the account is gone or its password changed meanwhile (the caller's secret,
        derived from the old password, is then not written).
        """
        ...

    async def forget_digests(self, keep_realm: str = "") -> int:
        """Clear every Digest secret that is not for *keep_realm* ("": all); returns how many."""
        ...

    async def set_dev_num(self, account: str, dev_num: int | None) -> bool: ...

    async def list_account_numbers(self) -> list[tuple[str, int | None]]:
        """Every account's number and DevNum (None: the default), for the §6 reconciliation."""
        ...

    async def delete_account(self, account: str) -> list[str]:
        """Delete the account (its password hash and Digest secret with it) and its bindings in one
        transaction; returns the DevIDs released."""
        ...

    async def bind_device(self, binding: Binding, limit: int) -> str:
        """Bind a device to an account, atomically against *limit* own devices and other owners.

        Returns BIND_OK, BIND_ALREADY_MINE (nothing changed), BIND_TAKEN (another account owns
        it), BIND_LIMIT (the account already owns *limit* devices) or BIND_NO_ACCOUNT.
        """
        ...

    async def unbind_device(self, account: str, dev_id: str) -> bool:
        """Remove the account's *own* binding of *dev_id* (shared ones cannot be removed, §8.7)."""
        ...

    async def list_bindings(self, account: str) -> list[Binding]: ...

    async def get_binding(self, account: str, dev_id: str) -> Binding | None: ...

    async def share_device(self, owner: str, dev_id: str, guest: str, when: float) -> str:
        """Share *owner*'s own device read-only with *guest* (ShareFlag 1); SHARE_* outcome."""
        ...

    async def unshare_device(self, dev_id: str, guest: str | None = None) -> int:
        """Remove the share of *dev_id* with *guest* (every share when None); returns how many."""
        ...

    async def list_shares(self, dev_id: str) -> list[Binding]: ...

    async def add_audit(self, record: AuditRecord) -> int: ...

    async def list_audit(self, account: str, limit: int = 100) -> list[AuditRecord]: ...

    async def list_audit_accounts(self, action: str, since: float) -> list[str]:
        """The accounts with a successful (Result 0) *action* audited at or after *since*."""
        ...

    async def purge(self, kind: str, before: float, limit: int) -> int:
        """Delete at most *limit* of the oldest rows of *kind* (one of RETENTION_KINDS) older than
        *before*; returns how many (fewer than *limit*: nothing older is left)."""
        ...

    # Cloud storage (§7.1, issue 12) -------------------------------------------------------

    async def put_cloud_object(self, obj: CloudObject) -> CloudObject | None:
        """Index *obj*, replacing the entry of the same bucket/key (an overwrite), and move the
        device's usage by the difference, in one transaction; returns the replaced entry, if any."""
        ...

    async def get_cloud_object(self, bucket: str, key: str) -> CloudObject | None: ...

    async def delete_cloud_object(self, bucket: str, key: str) -> CloudObject | None:
        """Unindex bucket/key (and take it off its device's usage); returns the entry removed."""
        ...

    async def search_cloud_objects(self, dev_id: str, channel_no: int, kind: str, start: float, end: float,
                                   offset: int = 0, limit: int = 100) -> CloudPage:
        """The entries of one channel and kind that overlap [start, end) — a file that began before
        *start* and runs into it is included, as one that begins before *end* — by start time."""
        ...

    async def cloud_usage(self, dev_id: str) -> tuple[int, int]:
        """(bytes, objects) the device has stored."""
        ...

    async def account_cloud_usage(self, account: str) -> int:
        """Bytes stored by the devices *account* owns (share_flag 0)."""
        ...

    async def oldest_cloud_objects(self, dev_id: str, limit: int) -> list[CloudObject]:
        """The device's entries, earliest start first (§7.1.1's loop overwrite)."""
        ...

    async def expired_cloud_objects(self, now: float, default_days: float, limit: int) -> list[CloudObject]:
        """At most *limit* entries stored longer ago than their owner's retention (its own
        ``cloud_retention_days``, else *default_days*; 0 or less: kept for ever), oldest first."""
        ...

    async def cloud_objects_after(self, bucket: str, start_after: str, limit: int) -> list[CloudObject]:
        """Entries of *bucket* in key order (the order S3 lists), for the reconciliation."""
        ...

    async def device_owner(self, dev_id: str) -> str | None:
        """The account that owns *dev_id* (share_flag 0), if any."""
        ...

    async def set_cloud_retention(self, account: str, days: float | None) -> bool:
        """An account's own retention in days (None: the configured default)."""
        ...

    async def get_cloud_retention(self, account: str) -> float | None:
        """The account's own retention in days, or None (the configured default, or no such account)."""
        ...

    async def add_cloud_credential(self, credential: CloudCredential) -> None: ...

    async def get_cloud_credential(self, access_key: str) -> CloudCredential | None: ...

    async def device_cloud_credential(self, dev_id: str) -> CloudCredential | None:
        """The device's newest credential that is not revoked."""
        ...

    async def revoke_cloud_credentials(self, dev_id: str, when: float, keep: str = "") -> int:
        """Revoke every live credential of *dev_id* but *keep*; returns how many."""
        ...

    async def close(self) -> None: ...
