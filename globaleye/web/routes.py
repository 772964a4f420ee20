"""The table of ``/api/v1`` routes: what the router (:mod:`globaleye.web.api`) serves and the
OpenAPI document (:mod:`globaleye.web.openapi`) describes, from one source so they cannot drift.

Each :class:`Route` names its method, path (an OpenAPI template relative to ``/api/v1``), the
:class:`~globaleye.web.api.WebApi` method that answers it, whether it needs a session and the
CSRF token, its request body's JSON Schema (with a valid example), its parameters and answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

#: §7.5.10 PtzDirection by name (the body's ``direction``).
PTZ_DIRECTIONS = {"stop": 0, "up": 1, "down": 2, "left": 3, "right": 4}
#: §8.9 StreamType by name (the ``stream`` query parameter).
STREAMS = {"main": 1, "sub": 2}


@attrs.frozen
class Param:
    name: str
    where: str  # path or query
    schema: Mapping[str, Any]
    required: bool = True
    description: str = ""


@attrs.frozen
class Route:
    """One API route: the router's entry and the OpenAPI document's operation."""

    method: str
    path: str  # OpenAPI template, relative to /api/v1: /devices/{devId}
    handler: str  # the WebApi method's name
    summary: str
    session: bool = True
    #: State-changing routes with a session need X-CSRF-Token (login and sign-up have no session).
    csrf: bool = True
    body: Mapping[str, Any] | None = None  # JSON Schema of the request body
    example: Mapping[str, Any] | None = None  # a valid body (the OpenAPI example; the IDOR test sends it)
    params: tuple[Param, ...] = ()
    responses: Mapping[int, str] = attrs.field(factory=dict)
    content_type: str = "application/json"

    @property
    def operation_id(self) -> str:
        """The handler's name in camelCase (``change_password`` → ``changePassword``)."""
        first, *rest = self.handler.split("_")
        return first + "".join(word.title() for word in rest)

    def klein_path(self) -> str:
        """The werkzeug rule of this route under /v1 (``{channel}`` is an integer)."""
        out = self.path
        for p in self.params:
            if p.where == "path":
                kind = "int:" if p.schema.get("type") == "integer" else ""
                out = out.replace("{" + p.name + "}", f"<{kind}{p.name}>")
        return "/v1" + out


def _obj(required: tuple[str, ...], **properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": dict(properties),
            "additionalProperties": False}


_STR = {"type": "string"}
_MOBILE = {"type": "string", "pattern": "^1[0-9]{10}$", "description": "an 11-digit mobile number"}
_PASSWORD = {"type": "string", "minLength": 6, "maxLength": 32}
DEV_ID = Param("devId", "path", {"type": "string", "pattern": "^[0-9]{11}$"}, description="the camera's DevID")
CHANNEL = Param("channel", "path", {"type": "integer", "minimum": 0}, description="channel number, from 0")
RECORDING = Param("fileName", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
                  description="a recording's file name (§7.1 DevID_ChannelNo_YYYYMMDDHHMMSS.ts)")

_STREAM_QUERY = Param("stream", "query", {"type": "string", "enum": list(STREAMS), "default": "main"}, False,
                      "main or sub stream")
_ENABLED = _obj(("enabled",), enabled={"type": "boolean"})
#: One recording window (67H): a weekday (1 Monday .. 7 Sunday), HH:MM to HH:MM (24:00 ends the day).
_WINDOW = _obj(("week", "start", "end"), week={"type": "integer", "minimum": 1, "maximum": 7},
               start={"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
               end={"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
               storage={"type": "string", "enum": ["local", "cloud"], "default": "local"},
               stream={"type": "string", "enum": list(STREAMS), "default": "main"})

#: Cloud storage (issue 12): YYYYMMDDHHMMSS Beijing time, as §7.1.1's names and the SOAP operations.
_CLOUD_TIME = {"type": "string", "pattern": "^[0-9]{14}$", "description": "YYYYMMDDHHMMSS, Beijing time"}
_CLOUD_FROM = Param("from", "query", _CLOUD_TIME, True, "the range's start")
_CLOUD_TO = Param("to", "query", _CLOUD_TIME, True, "the range's end (excluded)")
_CLOUD_FILE = Param("fileName", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
                    description="a stored file's name (§7.1.1 DevID_ChannelNo_YYYYMMDDHHMMSS.ts or .jpg)")

ROUTES: tuple[Route, ...] = (
    Route("POST", "/session", "login", "Log in (§8.3); sets the ge_session cookie", session=False, csrf=False,
          body=_obj(("account", "password"), account=_MOBILE, password=_STR),
          responses={200: "logged in: the session (as GET /session)", 401: "wrong account or password",
                     423: "account locked (Retry-After)", 429: "too many attempts from this address (Retry-After)"}),
    Route("GET", "/session", "whoami", "Who is logged in, and the CSRF token for state changes",
          responses={200: "the session", 401: "no live session"}),
    Route("DELETE", "/session", "logout", "Log out (§8.4); clears the cookie", responses={204: "logged out"}),
    Route("POST", "/sms-codes", "sms_code", "Send a sign-up verification code by SMS (§8.1)", session=False,
          csrf=False, body=_obj(("account",), account=_MOBILE),
          responses={202: "code sent", 429: "not sent (number or address at its limit, or not a mobile number)"}),
    Route("POST", "/accounts", "sign_up", "Sign up with the SMS code (§8.2)", session=False, csrf=False,
          body=_obj(("account", "password", "smsCode"), account=_MOBILE, password=_PASSWORD,
                    smsCode={"type": "string", "pattern": "^[0-9]{6}$"}),
          responses={201: "account created", 409: "already registered", 422: "wrong or expired code, or refused"}),
    Route("PUT", "/account/password", "change_password", "Change the password (ends every session)",
          body=_obj(("oldPassword", "newPassword"), oldPassword=_STR, newPassword=_PASSWORD),
          example={"oldPassword": "old password", "newPassword": "new password"},
          responses={204: "changed; log in again", 422: "wrong old password or unfit new one"}),
    Route("DELETE", "/account", "close_account", "Close the account (releases its cameras)",
          responses={204: "closed"}),
    Route("GET", "/devices", "devices", "The cameras the account owns or is shared (§8.5), online state",
          responses={200: "the list"}),
    Route("POST", "/devices", "add_device", "Add a camera by DevID and DevKey (§8.6)",
          body=_obj(("devId", "devKey"), devId={"type": "string", "pattern": "^[0-9]{11}$"}, devKey=_STR),
          responses={201: "added (or already the account's)", 409: "too many cameras, or another account's",
                     422: "unknown camera or wrong DevKey"}),
    Route("GET", "/devices/{devId}", "device", "One camera, with what its ability report (32H) says it can do",
          params=(DEV_ID,), responses={200: "the camera", 404: "no such camera (or not yours)"}),
    Route("DELETE", "/devices/{devId}", "remove_device", "Remove an own camera (§8.7; its DevKey proves it)",
          params=(DEV_ID,), body=_obj(("devKey",), devKey=_STR), example={"devKey": "the camera's DevKey"},
          responses={204: "removed", 404: "no such own camera, or wrong DevKey"}),
    Route("POST", "/devices/{devId}/ptz", "ptz", "Turn the camera (§8.10)", params=(DEV_ID,),
          body=_obj(("direction",), direction={"type": "string", "enum": list(PTZ_DIRECTIONS)},
                    channel={"type": "integer", "minimum": 0, "default": 0}),
          example={"direction": "left", "channel": 0},
          responses={204: "sent; the camera accepted", 404: "no such camera", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/alarms", "alarms", "The camera's alarms (34H), newest first, 10 a page",
          params=(DEV_ID, Param("start", "query", {"type": "string", "pattern": "^[0-9]{14}$"}, False,
                                "YYYYMMDDHHMMSS (empty: open)"),
                  Param("end", "query", {"type": "string", "pattern": "^[0-9]{14}$"}, False,
                        "YYYYMMDDHHMMSS (empty: open)"),
                  Param("page", "query", {"type": "integer", "minimum": 1, "default": 1}, False)),
          responses={200: "one page", 404: "no such camera"}),
    Route("GET", "/devices/{devId}/shares", "shares", "The accounts an own camera is shared with",
          params=(DEV_ID,), responses={200: "the accounts", 404: "no such own camera"}),
    Route("POST", "/devices/{devId}/shares", "share", "Share an own camera with another account (view only)",
          params=(DEV_ID,), body=_obj(("account",), account=_MOBILE), example={"account": "13300000000"},
          responses={201: "shared", 404: "no such own camera, or no such account"}),
    Route("DELETE", "/devices/{devId}/shares/{account}", "unshare", "Stop sharing an own camera with an account",
          params=(DEV_ID, Param("account", "path", _MOBILE, description="the account it is shared with")),
          responses={204: "no longer shared", 404: "no such own camera, or not shared with that account"}),
    Route("GET", "/devices/{devId}/channels/{channel}/live.mp4", "live", "Live video as fragmented MP4 (H.264 "
          "passed through) for Media Source Extensions", params=(
              DEV_ID, CHANNEL, Param("stream", "query", {"type": "string", "enum": list(STREAMS), "default": "main"},
                                     False, "main or sub stream")),
          responses={200: "an endless fMP4 stream", 404: "no such camera", 502: "no path to the camera",
                     503: "camera offline, or this platform runs no rtsp role"},
          content_type="video/mp4"),
    Route("GET", "/openapi.json", "openapi", "This document (OpenAPI 3.1)", session=False,
          responses={200: "the document"}),
    # --- camera settings and recordings (issue 11: §8.11-§8.17, 67H-69H, 78H-7BH, 72H) ---
    Route("GET", "/devices/{devId}/abilities", "abilities", "What the camera's ability report (32H) says it can "
          "do, and the values its settings take (what it cannot do is greyed out and refused, §4 item 1)",
          params=(DEV_ID,), responses={200: "the abilities", 404: "no such camera"}),
    Route("GET", "/devices/{devId}/channels/{channel}/video", "get_video", "A stream's video parameters (§8.11, "
          "61H)", params=(DEV_ID, CHANNEL, _STREAM_QUERY),
          responses={200: "the parameters", 404: "no such own camera", 502: "the camera refused",
                     503: "camera offline"}),
    Route("PUT", "/devices/{devId}/channels/{channel}/video", "set_video", "Change a stream's video parameters "
          "(§8.12, 60H); omitted ones stay as they are. Answers what the camera then reports",
          params=(DEV_ID, CHANNEL),
          body=_obj(("stream",), stream={"type": "string", "enum": list(STREAMS)},
                    frameSize={"type": "string", "enum": ["720P", "D1", "CIF"]},
                    frameRate={"type": "integer", "minimum": 2, "maximum": 25},
                    rateType={"type": "string", "enum": ["cbr", "vbr"]},
                    bitRate={"type": "integer", "enum": [96, 128, 196, 256, 384, 512, 768, 1024, 1536, 2048, 2560,
                                                         3072, 4096], "description": "kbit/s"},
                    audioInput={"type": "boolean"}),
          example={"stream": "main", "frameSize": "D1", "frameRate": 15, "rateType": "vbr", "bitRate": 512,
                   "audioInput": True},
          responses={200: "changed: the parameters the camera now reports", 400: "a value out of range",
                     404: "no such own camera", 422: "the camera cannot (32H: no such stream or frame size)",
                     502: "the camera refused", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/wifi", "wifi", "The Wi-Fi networks the camera sees, strongest first (§8.13, 62H)",
          params=(DEV_ID,), responses={200: "the networks", 404: "no such own camera", 502: "the camera refused",
                                       503: "camera offline"}),
    Route("PUT", "/devices/{devId}/wifi", "set_wifi", "Join a Wi-Fi network (§8.14, 63H); the password is never "
          "answered back", params=(DEV_ID,),
          body=_obj(("ssid", "security"), ssid={"type": "string", "minLength": 1, "maxLength": 32},
                    security={"type": "string", "enum": ["none", "wep", "wpa-psk", "wpa-wpa2-psk", "wpa2-psk",
                                                         "other"]},
                    password={"type": "string", "maxLength": 64, "writeOnly": True}),
          example={"ssid": "Store-Office", "security": "wpa2-psk", "password": "a Wi-Fi password"},
          responses={202: "the camera is joining (the outcome comes later as an alarm, §7.5.9)",
                     404: "no such own camera", 502: "the camera refused the values", 503: "camera offline"}),
    Route("POST", "/devices/{devId}/reboot", "reboot", "Restart the camera (§8.15)", params=(DEV_ID,),
          responses={202: "restarting", 404: "no such own camera", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/firmware", "firmware", "The camera's firmware and the newest known (§8.16)",
          params=(DEV_ID,), responses={200: "the versions", 404: "no such camera"}),
    Route("POST", "/devices/{devId}/firmware/upgrade", "upgrade", "Upgrade to the newest firmware (§8.17)",
          params=(DEV_ID,), responses={200: "already the newest: nothing sent", 202: "the camera is upgrading",
                                       404: "no such own camera", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/channels/{channel}/record-windows", "record_windows", "The camera's recording "
          "windows (68H)", params=(DEV_ID, CHANNEL),
          responses={200: "the windows", 404: "no such own camera", 422: "the camera cannot record (32H)",
                     503: "camera offline"}),
    Route("POST", "/devices/{devId}/channels/{channel}/record-windows", "add_record_windows", "Add recording "
          "windows (67H): at most 4 a weekday, none overlapping (§7.5.13)", params=(DEV_ID, CHANNEL),
          body=_obj(("windows",), windows={"type": "array", "minItems": 1, "maxItems": 28, "items": _WINDOW}),
          example={"windows": [{"week": 1, "start": "08:00", "end": "12:00", "storage": "local", "stream": "main"}]},
          responses={201: "added: every window now", 400: "a malformed window", 404: "no such own camera",
                     422: "refused by the rules (detail says which) or the camera cannot (32H)",
                     503: "camera offline"}),
    Route("DELETE", "/devices/{devId}/channels/{channel}/record-windows", "delete_record_window", "Delete one "
          "recording window (69H)", params=(DEV_ID, CHANNEL),
          body=_obj(("id",), id={"type": "integer", "minimum": 0}), example={"id": 1},
          responses={204: "deleted", 404: "no such own camera, or no such window", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/channels/{channel}/full-day-recording", "full_day_recording", "Whether the "
          "channel records all day (79H)", params=(DEV_ID, CHANNEL),
          responses={200: "on or off", 404: "no such own camera", 422: "the camera cannot record (32H)",
                     503: "camera offline"}),
    Route("PUT", "/devices/{devId}/channels/{channel}/full-day-recording", "set_full_day_recording", "Record all "
          "day, or by the windows (78H)", params=(DEV_ID, CHANNEL), body=_ENABLED, example={"enabled": True},
          responses={200: "changed: what the camera now reports", 404: "no such own camera",
                     422: "the camera cannot record (32H)", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/loop-recording", "loop_recording", "Whether the camera overwrites its oldest "
          "recordings when full (7BH)", params=(DEV_ID,),
          responses={200: "on or off", 404: "no such own camera", 422: "no storage on the camera (32H)",
                     503: "camera offline"}),
    Route("PUT", "/devices/{devId}/loop-recording", "set_loop_recording", "Overwrite the oldest recordings when "
          "full, or stop recording (7AH)", params=(DEV_ID,), body=_ENABLED, example={"enabled": False},
          responses={200: "changed: what the camera now reports", 404: "no such own camera",
                     422: "no storage on the camera (32H)", 503: "camera offline"}),
    Route("GET", "/devices/{devId}/channels/{channel}/recordings", "recordings", "The recordings on the camera "
          "in one day (72H), oldest first, 10 a page; times are the camera's local time", params=(
              DEV_ID, CHANNEL,
              Param("day", "query", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}, False,
                    "YYYY-MM-DD (default: today)"),
              Param("from", "query", {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$", "default": "00:00"},
                    False, "HH:MM"),
              Param("to", "query", {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$", "default": "24:00"},
                    False, "HH:MM"),
              Param("page", "query", {"type": "integer", "minimum": 1, "default": 1}, False)),
          responses={200: "one page", 400: "a malformed day or time", 404: "no such camera",
                     422: "no storage on the camera (32H)", 503: "camera offline"}),
    # --- alarms (live events) ---
    Route("GET", "/events", "events", "The account's live events as Server-Sent Events: alarms (34H) and "
          "online changes of the cameras it may see; ends with the session",
          responses={200: "an endless text/event-stream (event: alarm, device, session)",
                     406: "the request does not accept text/event-stream", 429: "too many open streams"},
          content_type="text/event-stream"),
    # --- playback ---
    Route("GET", "/devices/{devId}/channels/{channel}/recordings/{fileName}/play.mp4", "play_recording",
          "A recording on the camera (§7.5.23) as fragmented MP4 in the file's own time, from start at speed",
          params=(DEV_ID, CHANNEL, RECORDING,
                  Param("start", "query", {"type": "number", "minimum": 0, "default": 0}, False,
                        "seconds into the file (the camera starts at the IDR at or before it: X-Start)"),
                  Param("speed", "query", {"type": "number", "minimum": 0.25, "maximum": 4, "default": 1}, False,
                        "RTSP Scale asked of the camera (what it gives: X-Scale)")),
          responses={200: "the recording as fMP4 until its end (X-Codec, X-Start, X-Scale, X-Duration)",
                     400: "bad start or speed", 404: "no such camera, or no such recording",
                     502: "no path to the camera", 503: "camera offline"},
          content_type="video/mp4"),
    Route("GET", "/devices/{devId}/channels/{channel}/recordings/{fileName}/download.mp4", "download_recording",
          "A whole recording on the camera as an MP4 file (Content-Disposition: attachment)",
          params=(DEV_ID, CHANNEL, RECORDING),
          responses={200: "the MP4 file", 404: "no such camera, or no such recording",
                     502: "no path to the camera", 503: "camera offline"},
          content_type="video/mp4"),
    # --- grid ---
    Route("GET", "/live/mux.bin", "live_mux", "Several live cameras in one answer (the grid): each stream's "
          "fMP4 in frames of [index u8, kind u8 (0 init, 1 fragment, 2 error), length u32 BE, payload], "
          "see docs/protocol.md", params=(
              Param("s", "query", {"type": "array", "minItems": 1, "maxItems": 9,
                                   "items": {"type": "string", "pattern": "^[0-9]{11}:[0-9]{1,3}:(main|sub)$"}},
                    True, "a stream, <devId>:<channel>:<main|sub>; repeated, at most 9"),),
          responses={200: "an endless framed stream (a camera not yours: its error frame, 404)",
                     400: "no stream, more than 9, or a malformed one",
                     503: "this platform runs no rtsp role"},
          content_type="application/vnd.globaleye.live-mux"),
    # --- hls ---
    Route("GET", "/devices/{devId}/channels/{channel}/live.m3u8", "live_hls", "Live video as HLS (fMP4 "
          "segments, from the same feed as live.mp4) for browsers without Media Source Extensions", params=(
              DEV_ID, CHANNEL, Param("stream", "query", {"type": "string", "enum": list(STREAMS), "default": "main"},
                                     False, "main or sub stream")),
          responses={200: "the live playlist (RFC 8216, version 7)", 404: "no such camera",
                     502: "no path to the camera", 503: "camera offline, or this platform runs no rtsp role",
                     504: "no picture from the camera"},
          content_type="application/vnd.apple.mpegurl"),
    Route("GET", "/devices/{devId}/channels/{channel}/init.mp4", "live_hls_init", "The HLS initialization "
          "segment (EXT-X-MAP)", params=(
              DEV_ID, CHANNEL, Param("stream", "query", {"type": "string", "enum": list(STREAMS), "default": "main"},
                                     False, "main or sub stream"),
              Param("v", "query", {"type": "integer", "minimum": 0}, False, "its version (a new SPS, a new one)")),
          responses={200: "the initialization segment", 404: "no such camera, or not being watched"},
          content_type="video/mp4"),
    Route("GET", "/devices/{devId}/channels/{channel}/segment.m4s", "live_hls_segment", "One HLS media segment",
          params=(DEV_ID, CHANNEL,
                  Param("stream", "query", {"type": "string", "enum": list(STREAMS), "default": "main"},
                        False, "main or sub stream"),
                  Param("n", "query", {"type": "integer", "minimum": 0}, True, "its media sequence number")),
          responses={200: "the segment", 404: "no such camera, or the segment left the window"},
          content_type="video/iso.segment"),
    # --- snapshot ---
    Route("GET", "/devices/{devId}/channels/{channel}/snapshot.jpg", "snapshot", "A recent picture of the "
          "camera (the device list's thumbnail): the stream's latest IDR decoded to JPEG, at most 60 s old",
          params=(DEV_ID, CHANNEL, Param("stream", "query", {"type": "string", "enum": list(STREAMS),
                                                             "default": "sub"}, False, "main or sub stream")),
          responses={200: "the picture (Cache-Control: private, max-age up to 60)", 404: "no such camera",
                     501: "this platform cannot decode pictures (no PyAV: the [web] extra)",
                     502: "no path to the camera", 503: "camera offline, or this platform runs no rtsp role",
                     504: "no picture from the camera in time"},
          content_type="image/jpeg"),
    # --- picture policies ---
    Route("GET", "/devices/{devId}/channels/{channel}/picture-policies", "picture_policies", "The camera's "
          "picture (snapshot) policies, FTP and cloud (76H)", params=(DEV_ID, CHANNEL),
          responses={200: "the policies", 404: "no such own camera", 503: "camera offline"}),
    Route("POST", "/devices/{devId}/channels/{channel}/picture-policies", "add_picture_policies", "Add picture "
          "policies (75H): FTP a snapshot a day at start; cloud every interval s from start to end, at most 8 "
          "per storage, not overlapping", params=(DEV_ID, CHANNEL),
          body=_obj(("storage", "policies"), storage={"type": "string", "enum": ["ftp", "cloud"]},
                    policies={"type": "array", "minItems": 1, "maxItems": 8, "items": _obj(
                        ("start",), start={"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
                        end={"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
                        interval={"type": "integer", "minimum": 0, "maximum": 86400})}),
          example={"storage": "ftp", "policies": [{"start": "09:30"}]},
          responses={201: "added: every policy now", 400: "a malformed policy", 404: "no such own camera",
                     422: "refused by the rules (detail says which) or the camera cannot (32H)",
                     503: "camera offline"}),
    Route("DELETE", "/devices/{devId}/channels/{channel}/picture-policies", "delete_picture_policy", "Delete one "
          "picture policy (77H)", params=(DEV_ID, CHANNEL),
          body=_obj(("id",), id={"type": "integer", "minimum": 0}), example={"id": 1},
          responses={204: "deleted", 404: "no such own camera, or no such policy", 503: "camera offline"}),
    # --- delivered pictures ---
    Route("GET", "/devices/{devId}/channels/{channel}/delivered-pictures", "delivered_pictures", "The channel's "
          "stored pictures (FTP pictures of §7.5.24 pushed to the owner, and cloud ones), newest first, paged; on "
          "page 1 also the 36H notices (§7.5.27) whose file never arrived (missing)", params=(
              DEV_ID, CHANNEL,
              Param("page", "query", {"type": "integer", "minimum": 1, "default": 1}, False, "page, from 1"),
              Param("size", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, False,
                    "pictures per page")),
          responses={200: "the pictures, each with the URL of its bytes", 400: "a malformed page or size",
                     404: "no such camera", 503: "this platform stores no pictures"}),
    Route("GET", "/devices/{devId}/delivered-pictures/{name}", "delivered_picture", "One stored picture's bytes, "
          "through this API (same origin)", params=(
              DEV_ID, Param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
                            description="the picture's name (§7.1.1 DevID_ChannelNo_YYYYMMDDHHMMSS.jpg)")),
          responses={200: "the JPEG (Cache-Control: private)", 404: "no such camera, or no such picture",
                     503: "this platform stores no pictures"},
          content_type="image/jpeg"),
    # --- cloud storage (issue 12, §7.1.2) ---
    Route("GET", "/devices/{devId}/channels/{channel}/cloud-files", "cloud_files", "The camera's files in the "
          "cloud store (§7.1.1: 5-minute recordings, pictures) overlapping a time range, oldest first, paged",
          params=(DEV_ID, CHANNEL,
                  Param("kind", "query", {"type": "string", "enum": ["record", "picture"], "default": "record"}, False),
                  _CLOUD_FROM, _CLOUD_TO,
                  Param("page", "query", {"type": "integer", "minimum": 1, "default": 1}, False),
                  Param("pageSize", "query", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                        False)),
          responses={200: "one page (times Beijing, ISO without zone, and YYYYMMDDHHMMSS)", 400: "a malformed value",
                     404: "no such camera", 503: "no cloud storage configured"}),
    Route("GET", "/devices/{devId}/cloud-files/{fileName}/url", "cloud_file_url", "A short-lived presigned "
          "download URL of one stored file ([cloud] url_lifetime seconds)", params=(DEV_ID, _CLOUD_FILE),
          responses={200: "the URL and its lifetime", 404: "no such camera, or no such file",
                     503: "no cloud storage configured"}),
    Route("GET", "/devices/{devId}/cloud-files/{fileName}/picture.jpg", "cloud_picture", "One stored picture, "
          "through the API (same origin: the portal's CSP needs no other host)", params=(DEV_ID, _CLOUD_FILE),
          responses={200: "the JPEG", 404: "no such camera, or no such picture", 503: "no cloud storage configured"},
          content_type="image/jpeg"),
    Route("DELETE", "/devices/{devId}/cloud-files/{fileName}", "delete_cloud_file", "Delete one stored file "
          "(owner only): the object and its index entry", params=(DEV_ID, _CLOUD_FILE),
          responses={204: "deleted", 404: "no such own camera, or no such file", 503: "no cloud storage configured"}),
    Route("DELETE", "/devices/{devId}/channels/{channel}/cloud-files", "delete_cloud_files", "Delete the stored "
          "files of one kind overlapping a range (owner only; at most 5000 a request: ask again for more)",
          params=(DEV_ID, CHANNEL),
          body=_obj(("from", "to"), kind={"type": "string", "enum": ["record", "picture"], "default": "record"},
                    **{"from": _CLOUD_TIME, "to": _CLOUD_TIME}),
          example={"kind": "record", "from": "20261202100000", "to": "20261202110000"},
          responses={200: "how many were deleted", 400: "a malformed range", 404: "no such own camera",
                     503: "no cloud storage configured"}),
    Route("GET", "/devices/{devId}/channels/{channel}/cloud-files/play.mp4", "play_cloud", "The cloud recordings "
          "of a range as one fragmented MP4 (the TS files remuxed, H.264 untouched), its time 0 at from; "
          "consecutive files play as one", params=(
              DEV_ID, CHANNEL, _CLOUD_FROM, _CLOUD_TO,
              Param("start", "query", {"type": "number", "minimum": 0, "default": 0}, False,
                    "seconds after from (output starts at the first IDR at or after it: X-Start)"),
              Param("speed", "query", {"type": "number", "minimum": 0.25, "maximum": 4, "default": 1}, False,
                    "the browser's playbackRate (data come as fast as read: X-Scale echoes it)")),
          responses={200: "fMP4 to the range's end (X-Codec, X-Start, X-Scale, X-Duration)",
                     400: "a malformed or too long range (at most a day)", 404: "no such camera, or no recordings",
                     503: "no cloud storage configured"},
          content_type="video/mp4"),
    Route("GET", "/devices/{devId}/channels/{channel}/cloud-files/download.mp4", "download_cloud", "The cloud "
          "recordings of a range (at most 2 hours) as one MP4 file (Content-Disposition: attachment)",
          params=(DEV_ID, CHANNEL, _CLOUD_FROM, _CLOUD_TO),
          responses={200: "the MP4 file", 400: "a malformed or too long range", 404: "no such camera, or no recordings",
                     503: "no cloud storage configured"},
          content_type="video/mp4"),
)
