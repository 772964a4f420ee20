// The device page's viewing controls (issue 11, §4): mute, fullscreen, snapshot to a JPEG
// download, local recording to an MP4 download.  The main/sub switch and the PTZ pad stay in app.js.
//
// Local recording is a second fetch of the same live fMP4 stream kept in memory while it runs
// (the server sends an initialization segment then fragments from an IDR on, which is a valid
// fragmented MP4 file as it is), bounded by MAX_RECORD_MS and MAX_RECORD_BYTES, saved as a Blob
// on stop.  No transcoding, no MediaRecorder (whose formats differ between browsers).  The stream
// starts with the camera's cached GOP, up to a GOP before the click: the file starts at the IDR
// nearest to the picture on screen at the click (the same feed's decode times), so what is saved
// is what was watched, give or take half a GOP.
import { t } from './i18n.js';

const MAX_RECORD_MS = 10 * 60 * 1000;
const MAX_RECORD_BYTES = 200 * 1024 * 1024;

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

/** YYYYMMDD-HHMMSS in local time, for file names. */
export function stamp(date = new Date()) {
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}-`
    + `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}

/** Top-level MP4 boxes of a byte stream, whole, as they come: feed(chunk) calls onBox(type, bytes). */
function boxCutter(onBox) {
  let rest = new Uint8Array(0);
  return (chunk) => {
    let data = chunk;
    if (rest.byteLength > 0) {
      data = new Uint8Array(rest.byteLength + chunk.byteLength);
      data.set(rest, 0);
      data.set(chunk, rest.byteLength);
    }
    let at = 0;
    while (data.byteLength - at >= 8) {
      const view = new DataView(data.buffer, data.byteOffset + at);
      let size = view.getUint32(0);
      if (size === 1 && data.byteLength - at >= 16) size = Number(view.getBigUint64(8));
      if (size < 8 || data.byteLength - at < size) break;
      const type = String.fromCharCode(data[at + 4], data[at + 5], data[at + 6], data[at + 7]);
      onBox(type, data.slice(at, at + size));
      at += size;
    }
    rest = data.slice(at);
  };
}

/** The payload of the first box of `path` (e.g. ['traf', 'tfdt']) inside the box `bytes` (its children). */
function child(bytes, path, offset = 8) {
  let at = offset;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (at + 8 <= bytes.byteLength) {
    const size = view.getUint32(at);
    const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
    if (size < 8) return null;
    if (type === path[0]) {
      const box = bytes.subarray(at, at + size);
      return path.length === 1 ? box : child(box, path.slice(1));
    }
    at += size;
  }
  return null;
}

/** A fragment's decode time (in its track's timescale units) and whether its first picture is an IDR. */
function fragmentInfo(moof) {
  const tfdt = child(moof, ['traf', 'tfdt']);
  const trun = child(moof, ['traf', 'trun']);
  if (!tfdt || !trun) return null;
  const d = new DataView(tfdt.buffer, tfdt.byteOffset, tfdt.byteLength);
  const time = d.getUint8(8) === 1 ? Number(d.getBigUint64(12)) : d.getUint32(12);
  const r = new DataView(trun.buffer, trun.byteOffset, trun.byteLength);
  const flags = r.getUint32(8) & 0xffffff;
  let at = 16 + (flags & 0x1 ? 4 : 0);
  let sampleFlags = null;
  if (flags & 0x4) sampleFlags = r.getUint32(at);
  else if (flags & 0x400) sampleFlags = r.getUint32(at + (flags & 0x100 ? 4 : 0) + (flags & 0x200 ? 4 : 0));
  return { time, sync: sampleFlags !== null && !(sampleFlags & 0x10000) };
}

/** The media timescale of an initialization segment's first track (or of the mdhd at `path` in `box`). */
function timescaleOf(box, path = ['trak', 'mdia', 'mdhd']) {
  const mdhd = child(box, path);
  if (!mdhd) return 0;
  const d = new DataView(mdhd.buffer, mdhd.byteOffset, mdhd.byteLength);
  return d.getUint8(8) === 1 ? d.getUint32(28) : d.getUint32(20);
}

/** The child boxes of `bytes` (a box): {type, box} each. */
function children(bytes, offset = 8) {
  const out = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = offset; at + 8 <= bytes.byteLength;) {
    const size = view.getUint32(at);
    if (size < 8) break;
    out.push({ type: String.fromCharCode(...bytes.subarray(at + 4, at + 8)), box: bytes.subarray(at, at + size) });
    at += size;
  }
  return out;
}

/** The timescale of each track of an initialization segment, by track_ID. */
function tracksOf(moov) {
  const tracks = new Map();
  for (const { type, box } of children(moov)) {
    if (type !== 'trak') continue;
    const tkhd = child(box, ['tkhd']);
    if (!tkhd) continue;
    const d = new DataView(tkhd.buffer, tkhd.byteOffset, tkhd.byteLength);
    tracks.set(d.getUint32(d.getUint8(8) === 1 ? 28 : 20), timescaleOf(box, ['mdia', 'mdhd']));
  }
  return tracks;
}

/** Move a fragment `seconds` earlier on every track's timeline (its tfdt, in place). */
function rebase(moof, tracks, seconds) {
  for (const { type, box } of children(moof)) {
    if (type !== 'traf') continue;
    const tfhd = child(box, ['tfhd']);
    const tfdt = child(box, ['tfdt']);
    if (!tfhd || !tfdt) continue;
    const scale = tracks.get(new DataView(tfhd.buffer, tfhd.byteOffset).getUint32(12)) || 0;
    const d = new DataView(tfdt.buffer, tfdt.byteOffset, tfdt.byteLength);
    const shift = Math.round(seconds * scale);
    if (d.getUint8(8) === 1) d.setBigUint64(12, BigInt(Math.max(0, Number(d.getBigUint64(12)) - shift)));
    else d.setUint32(12, Math.max(0, d.getUint32(12) - shift));
  }
}

/**
 * The boxes of a recording, from the IDR nearest to `clickAt` (seconds on the feed's timeline;
 * from the first one when that is not known), with the initialization segment in force there,
 * moved to start at 0 (the feed's clock counts from its own start, which a player would show
 * as a long empty beginning).
 */
function fromNearestIdr(parts, clickAt, tracks) {
  let best = parts.findIndex((p) => p.sync);
  if (best < 0) return parts.flatMap((p) => p.bytes);
  if (clickAt !== null) {
    const first = best;
    let gap = Math.abs(parts[best].seconds - clickAt);
    parts.forEach((p, i) => {
      if (p.sync && Math.abs(p.seconds - clickAt) < gap) {
        best = i;
        gap = Math.abs(p.seconds - clickAt);
      }
    });
    if (!(gap < 10)) best = first; // not the same timeline (the feed restarted): keep it all
  }
  let init = [];
  for (let i = 0; i < best; i++) if (parts[i].init) init = parts[i].bytes;
  const base = parts[best].seconds;
  const kept = parts.slice(best);
  if (Number.isFinite(base) && tracks.size) for (const p of kept) if (!p.init) rebase(p.bytes[0], tracks, base);
  return [...init, ...kept.flatMap((p) => p.bytes)];
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * The controls of the device page's player.
 * @param {object} portal  app.js's helpers ({h, show})
 * @param {{video: HTMLVideoElement, container: HTMLElement, devId: string, liveUrl: () => string}} player
 *   liveUrl: the live.mp4 URL of what is being watched (the stream chosen now)
 * @returns {HTMLElement}
 */
export function playerControls(portal, { video, container, devId, liveUrl }) {
  const { h, show } = portal;

  // Mute: the video starts muted (browsers autoplay only a muted video); a click unmutes.  A
  // toggle button: one name ("Mute"), pressed while muted (a name that changed too would be
  // read as "Unmute, pressed").
  const mute = h('button', { type: 'button', id: 'mute', class: 'mute', 'aria-label': t('mute'), text: t('mute') });
  function updateMute() {
    mute.setAttribute('aria-pressed', String(video.muted));
    mute.title = video.muted ? t('unmute') : t('mute');
  }
  mute.addEventListener('click', () => {
    video.muted = !video.muted;
    if (!video.muted) video.play().catch(() => {});
  });
  video.addEventListener('volumechange', updateMute);
  updateMute();

  // Fullscreen: the player's container (video and state line), the iPhone's own video player otherwise.
  const full = h('button', { type: 'button', id: 'fullscreen', 'aria-label': t('fullscreen'),
    text: t('fullscreen') });
  full.addEventListener('click', async () => {
    try {
      if (document.fullscreenElement || document.webkitFullscreenElement) {
        await (document.exitFullscreen || document.webkitExitFullscreen).call(document);
      } else if (container.requestFullscreen) {
        await container.requestFullscreen();
      } else if (container.webkitRequestFullscreen) {
        container.webkitRequestFullscreen();
      } else if (video.webkitEnterFullscreen) {
        video.webkitEnterFullscreen();
      }
    } catch {
      show(t('fullscreenRefused'), 'error');
    }
  });
  const onFullscreen = () => {
    const on = Boolean(document.fullscreenElement || document.webkitFullscreenElement);
    full.setAttribute('aria-label', on ? t('exitFullscreen') : t('fullscreen'));
    full.textContent = on ? t('exitFullscreen') : t('fullscreen');
  };
  document.addEventListener('fullscreenchange', onFullscreen);

  // Snapshot: the picture on screen, drawn into a canvas at the video's size, as a JPEG.
  const snap = h('button', { type: 'button', id: 'snapshot', 'aria-label': t('snapshot'), text: t('snapshot') });
  snap.addEventListener('click', () => {
    if (!video.videoWidth || video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) {
      show(t('noPicture'), 'error');
      return;
    }
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((blob) => {
      if (blob) download(blob, `${devId}-${stamp()}.jpg`);
      else show(t('error'), 'error');
    }, 'image/jpeg', 0.92);
  });

  // Local recording: a second fetch of the live stream, in memory, bounded.
  const record = h('button', { type: 'button', id: 'record', 'aria-label': t('record'),
    text: t('record') });
  const elapsed = h('span', { id: 'record-time', class: 'record-time', role: 'timer', hidden: true });
  let recording = null; // {controller, parts, bytes, started, timer, name, clickAt}

  function showRecording(on) {
    record.classList.toggle('on', on);
    record.setAttribute('aria-label', on ? t('stopRecording') : t('record'));
    record.textContent = on ? t('stopRecording') : t('record');
    elapsed.hidden = !on;
  }

  function finish(reason) {
    const r = recording;
    if (!r) return;
    recording = null;
    r.controller.abort();
    clearInterval(r.timer);
    showRecording(false);
    if (!video.isConnected) return; // the page was left: nothing to save
    if (r.bytes === 0) {
      show(t('recordFailed'), 'error');
      return;
    }
    download(new Blob(fromNearestIdr(r.parts, r.clickAt, r.tracks), { type: 'video/mp4' }), r.name);
    if (reason) show(reason);
  }

  async function start() {
    const controller = new AbortController();
    const b = video.buffered;
    const r = { controller, parts: [], bytes: 0, started: Date.now(), timer: null, tracks: new Map(),
      name: `${devId}-${stamp()}.mp4`, clickAt: b.length && !video.paused ? b.end(b.length - 1) : null };
    // parts: {bytes: [boxes], init: bool, sync: bool, seconds}: an init segment, or a fragment (moof + mdat)
    let timescale = 0;
    const cut = boxCutter((type, bytes) => {
      const last = r.parts[r.parts.length - 1];
      if (type === 'moof') {
        const info = fragmentInfo(bytes);
        r.parts.push({ bytes: [bytes], init: false, sync: Boolean(info && info.sync),
          seconds: info && timescale ? info.time / timescale : NaN });
      } else if (type === 'ftyp' || !last || (type === 'moov' && !last.init)) {
        r.parts.push({ bytes: [bytes], init: true, sync: false, seconds: NaN });
      } else {
        last.bytes.push(bytes);
      }
      if (type === 'moov') {
        timescale = timescaleOf(bytes) || timescale;
        r.tracks = tracksOf(bytes);
      }
    });
    recording = r;
    showRecording(true);
    const tick = () => {
      const s = Math.floor((Date.now() - r.started) / 1000);
      elapsed.textContent = `● ${pad(Math.floor(s / 60))}:${pad(s % 60)}`;
      if (!video.isConnected) finish();
      else if (Date.now() - r.started >= MAX_RECORD_MS) finish(t('recordLimit'));
    };
    tick();
    r.timer = setInterval(tick, 500);
    let response;
    try {
      response = await fetch(liveUrl(), { credentials: 'same-origin', cache: 'no-store', signal: controller.signal });
    } catch {
      if (recording === r) finish();
      return;
    }
    if (!response.ok) {
      if (recording === r) finish();
      return;
    }
    const reader = response.body.getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        break; // aborted (stopped) or the connection failed: keep what came
      }
      if (recording !== r || chunk.done) break;
      cut(chunk.value);
      r.bytes += chunk.value.byteLength;
      if (r.bytes >= MAX_RECORD_BYTES) {
        finish(t('recordLimit'));
        return;
      }
    }
    if (recording === r) finish();
  }

  record.addEventListener('click', () => {
    if (recording) finish();
    else start();
  });

  return h('div', { class: 'view-controls', role: 'group', 'aria-label': t('viewControls') },
    mute, full, snap, record, elapsed);
}
