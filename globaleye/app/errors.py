"""What goes wrong in the application layer, as types.

Each :class:`AppError` carries the Result code §8 answers it with by default (``result``);
a face may map it differently where its operation defines no such code (§8.9–§8.17 have
no "device offline" for some operations: there it is "device does not exist", 3).
:class:`InvalidRequest` has no code: the request itself is wrong (a Client fault in §8).
:class:`DeviceRefused` is the camera's own refusal (a non-zero Result from the device),
for which §8 has no code either.
"""

from __future__ import annotations

OK, EXPIRED, NO_DEVICE, OFFLINE, RULES, OTHER = 0, 2, 3, 4, 5, 255


class AppError(Exception):
    """An operation that could not be done; ``result`` is its Result code."""

    result: int = OTHER

    def __init__(self, message: str = "", result: int | None = None) -> None:
        super().__init__(message)
        if result is not None:
            self.result = result


class SessionExpired(AppError):
    """No live session for this account and token (§8: Result 2)."""

    result = EXPIRED


class NoSuchDevice(AppError):
    """The camera (or channel) is not the caller's to use, or does not exist (Result 3)."""

    result = NO_DEVICE


class DeviceOffline(AppError):
    """The camera is offline, silent or went away during the command (Result 4)."""

    result = OFFLINE


class RuleViolation(AppError):
    """The platform's rules refuse the request (e.g. §7.5.13's four windows a day; Result 5)."""

    result = RULES


class NotFound(AppError):
    """No such policy, share, account or service (Result 5)."""

    result = RULES


class AddRefused(AppError):
    """AddDevice refused: 3 unknown camera, 4 wrong DevKey, 5 too many devices, 255 other (§8.6)."""


class InvalidRequest(AppError):
    """The request's values are wrong (no Result: a Client fault)."""


class DeviceRefused(AppError):
    """The camera answered the command with a non-zero Result (``device_result``)."""

    def __init__(self, message: str, device_result: int) -> None:
        super().__init__(message)
        self.device_result = device_result


def check(condition: bool, message: str) -> None:
    """Raise :class:`InvalidRequest` with *message* unless *condition*."""
    if not condition:
        raise InvalidRequest(message)
