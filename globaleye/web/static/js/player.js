// Live view player: fragmented MP4 over HTTP streaming into Media Source Extensions (issue 11).
//
// The server (globaleye/web/live.py) answers `video/mp4` with the codec in `X-Codec`, then an
// initialization segment and one fragment per picture.  This module reads that body with a
// ReadableStream reader and appends it to a SourceBuffer as it comes: no library, no build step,
// no inline script (the portal's Content-Security-Policy forbids them).
//
// Live, not video-on-demand: the buffer is kept short (what is more than BACK_BUFFER seconds
// behind the playhead is removed) and the playhead jumps to the live edge when it falls more than
// MAX_LAG seconds behind (a background tab, a slow device, a gap after skipped pictures).
// ManagedMediaSource is used where MediaSource is absent (iPhone Safari 17+).  Older Safari
// (no MSE at all) plays the same camera stream as HLS natively: `video.src` is the stream's
// live.m3u8 (globaleye/web/hls.py, fMP4 segments of the same feed), its cookie sent by the
// browser with every playlist and segment request.

const MAX_LAG = 1.5; // seconds behind the live edge before jumping to it
const EDGE = 0.3; // where to land before the live edge
const BACK_BUFFER = 10; // seconds kept behind the playhead
const CHECK_MS = 500;
const STALL_MS = 1000; // without pictures this long while playing: 'connecting' again

/**
 * The append queue of one live SourceBuffer, shared by playLive and the grid's tiles (mux.js):
 * bytes are appended as they come (several chunks at once while the buffer is busy), what is
 * more than BACK_BUFFER seconds behind the playhead is removed, a full buffer is trimmed and the
 * bytes appended again, a late joiner starts where the media are, and `tick()` (every CHECK_MS)
 * keeps the playhead within MAX_LAG of the live edge.
 * @param {HTMLVideoElement} video
 * @param {SourceBuffer} sourceBuffer
 * @param {{fail: (detail: string) => void, isClosed?: () => boolean, queue?: Uint8Array[]}} options
 *   queue: where the bytes wait (the caller's, if it wants to see them)
 * @returns {{push: (chunk: Uint8Array) => void, pump: () => void, tick: () => void}}
 */
export function appendQueue(video, sourceBuffer, { fail, isClosed = () => false, queue = [] }) {
  function pump() {
    if (isClosed() || sourceBuffer.updating) return;
    if (queue.length > 0) {
      const size = queue.reduce((n, c) => n + c.byteLength, 0);
      const data = new Uint8Array(size);
      let at = 0;
      for (const chunk of queue) {
        data.set(chunk, at);
        at += chunk.byteLength;
      }
      queue.length = 0;
      try {
        sourceBuffer.appendBuffer(data);
      } catch (e) {
        // Full: put the bytes back (a byte lost would break the boxes that follow), free what is
        // behind the playhead, and append again when that is done (updateend).
        if (e.name === 'QuotaExceededError' && trim(0.5)) queue.unshift(data);
        else fail(e.name === 'QuotaExceededError' ? 'the browser\'s video buffer is full' : String(e.message || e));
      }
      return;
    }
    trim(BACK_BUFFER);
  }

  // Remove what is more than `keep` seconds behind the playhead; whether anything was.
  function trim(keep) {
    const b = sourceBuffer.buffered;
    if (b.length === 0 || sourceBuffer.updating) return false;
    const upTo = video.currentTime - keep;
    if (b.start(0) >= upTo - (keep > 1 ? 1 : 0)) return false;
    sourceBuffer.remove(b.start(0), upTo);
    return true;
  }

  // A viewer who joins a stream others watch gets fragments whose times do not start at 0:
  // start where the media are (the newest buffered range).
  function startInBuffer() {
    const b = video.buffered;
    if (b.length === 0) return;
    const t = video.currentTime;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= t && t < b.end(i)) return;
    if (t < b.start(b.length - 1)) video.currentTime = b.start(b.length - 1);
  }

  function tick() {
    if (isClosed()) return;
    const b = video.buffered;
    if (b.length === 0) return;
    const end = b.end(b.length - 1);
    if (end - video.currentTime > MAX_LAG) video.currentTime = Math.max(end - EDGE, b.start(b.length - 1));
    if (video.paused && !video.ended) video.play().catch(() => {});
    pump();
  }

  sourceBuffer.addEventListener('updateend', () => {
    startInBuffer();
    pump();
  });
  return {
    push(chunk) {
      queue.push(chunk);
      pump();
    },
    pump,
    tick,
  };
}

/**
 * Play the live stream at `url` in `video`.
 * @param {HTMLVideoElement} video
 * @param {string} url
 * @param {{onState?: (state: 'connecting'|'playing'|'error', detail?: string) => void, hlsUrl?: string}} [options]
 *   hlsUrl: the same stream as HLS, for a browser without MSE (default: `url` with live.m3u8 for live.mp4).
 *   'connecting' first, and again when pictures stop coming for a second while playing (the
 *   camera is being reconnected); 'playing' when pictures show; 'error' with a detail a person
 *   can read (the problem's title of an HTTP error) when the player stops for good.
 * @returns {{close: () => void}}
 */
export function playLive(video, url, { onState = () => {}, hlsUrl = url.replace(/live\.mp4(?=\?|$)/, 'live.m3u8') } = {}) {
  const controller = new AbortController();
  const queue = [];
  let closed = false;
  let playing = false;
  let mediaSource = null;
  let sourceBuffer = null;
  let buffer = null; // appendQueue() of the SourceBuffer
  let objectUrl = null;
  let timer = null;
  let stalled = null;
  let native = false; // playing HLS natively (no MSE)

  const state = (name, detail) => {
    if (!closed) onState(name, detail);
  };

  const fail = (detail) => {
    state('error', detail);
    stop();
  };

  function stop() {
    if (closed) return;
    closed = true;
    controller.abort();
    if (timer !== null) clearInterval(timer);
    if (stalled !== null) clearTimeout(stalled);
    video.removeEventListener('waiting', onWaiting);
    video.removeEventListener('playing', onPlaying);
    video.removeEventListener('error', onNativeError);
    if (objectUrl !== null || native) {
      video.removeAttribute('src');
      video.load();
      if (objectUrl !== null) URL.revokeObjectURL(objectUrl);
    }
  }

  function onPlaying() {
    if (stalled !== null) clearTimeout(stalled);
    stalled = null;
    if (!playing) {
      playing = true;
      state('playing');
    }
  }

  // A gap in what is buffered (pictures the server skipped for a slow connection): go on at
  // the next buffered range instead of waiting forever.  Nothing ahead (the camera is being
  // reconnected): after STALL_MS without pictures the page is told, and told again when they
  // come back ('playing'); a live buffer this short runs dry for a moment now and then, which
  // is not worth a word.
  function onWaiting() {
    const b = video.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) > video.currentTime) {
        video.currentTime = b.start(i) + 0.01;
        return;
      }
    }
    if (stalled === null && playing) {
      stalled = setTimeout(() => {
        stalled = null;
        if (!closed && video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
          playing = false;
          state('connecting', 'waiting for the camera');
        }
      }, STALL_MS);
    }
  }

  function followLiveEdge() {
    if (!closed && buffer !== null) buffer.tick();
  }

  async function problemTitle(response) {
    try {
      const body = await response.json();
      return body.title || body.detail || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  function onNativeError() {
    fail('the browser could not play the stream');
  }

  // No MSE (Safari before ManagedMediaSource): the browser's own HLS player.  The playlist is
  // asked for here first so that a refusal (offline, not yours) shows its problem's title, and
  // the server's segments are already being cut when the player asks for them.
  async function playNative() {
    let response;
    try {
      response = await fetch(hlsUrl, { credentials: 'same-origin', cache: 'no-store', signal: controller.signal });
    } catch (e) {
      return fail(closed ? 'closed' : String(e.message || e));
    }
    if (!response.ok) return fail(await problemTitle(response));
    if (closed) return;
    native = true;
    video.addEventListener('waiting', onWaiting);
    video.addEventListener('playing', onPlaying);
    video.addEventListener('error', onNativeError);
    video.src = hlsUrl;
    video.play().catch(() => {});
  }

  async function run() {
    state('connecting');
    const MS = window.MediaSource || window.ManagedMediaSource;
    if (!MS) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) return playNative();
      return fail('this browser has no Media Source Extensions');
    }
    let response;
    try {
      response = await fetch(url, { credentials: 'same-origin', cache: 'no-store', signal: controller.signal });
    } catch (e) {
      return fail(closed ? 'closed' : String(e.message || e));
    }
    if (!response.ok) return fail(await problemTitle(response));
    const codec = response.headers.get('X-Codec') || 'avc1.42E01E';
    const mime = `video/mp4; codecs="${codec}"`;
    if (!MS.isTypeSupported(mime)) return fail(`this browser cannot play ${codec}`);

    mediaSource = new MS();
    if (!window.MediaSource) video.disableRemotePlayback = true; // ManagedMediaSource needs it (or an AirPlay source)
    const opened = new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    objectUrl = URL.createObjectURL(mediaSource);
    video.src = objectUrl;
    await opened;
    if (closed) return;
    sourceBuffer = mediaSource.addSourceBuffer(mime);
    sourceBuffer.mode = 'segments';
    buffer = appendQueue(video, sourceBuffer, { fail, isClosed: () => closed, queue });
    sourceBuffer.addEventListener('error', () => fail('the browser could not decode the stream'));
    video.addEventListener('waiting', onWaiting);
    video.addEventListener('playing', onPlaying);
    timer = setInterval(followLiveEdge, CHECK_MS);

    const reader = response.body.getReader();
    let first = true;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        return fail(closed ? 'closed' : String(e.message || e));
      }
      if (closed) return;
      if (chunk.done) {
        // The server ends the stream when the camera's stream ends and cannot be recovered.
        return fail('the stream ended');
      }
      buffer.push(chunk.value);
      if (first) {
        first = false;
        video.play().catch(() => {});
      }
    }
  }

  run().catch((e) => fail(String((e && e.message) || e)));
  return { close: stop };
}

// --- playback (a recording on the camera) ---
//
// The server (globaleye/web/playback.py) answers a recording as fragmented MP4 stamped in the
// file's own time (X-Start: where the camera really started, the IDR at or before the asked
// point; X-Scale: the speed it sends at; X-Duration: the file's length), so `video.currentTime`
// is the position in the file and a seek bar needs no arithmetic.  Each request is one playback
// session on the camera: seeking or changing speed is a new request into a fresh MediaSource;
// pausing pauses the video and closes the request (the camera's session is torn down: a paused
// page holds nothing on the camera), and resuming asks again from where the picture stands.

const AHEAD = 30; // seconds buffered ahead of the playhead before reading waits (a camera faster than the playback rate)

async function problemOf(response) {
  try {
    const body = await response.json();
    return body.title || body.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/**
 * Play the recording whose stream is `baseUrl` (…/recordings/{fileName}/play.mp4) in `video`.
 * @param {HTMLVideoElement} video
 * @param {string} baseUrl
 * @param {{start?: number, speed?: number,
 *          onState?: (state: 'connecting'|'playing'|'paused'|'ended'|'error', detail?: string) => void,
 *          onInfo?: (info: {start: number, scale: number, duration: number|null, playbackRate: number}) => void}} [options]
 * @returns {{seek: (s: number) => void, setSpeed: (x: number) => void, pause: () => void,
 *            resume: () => void, close: () => void, readonly duration: number|null}}
 *   seek and setSpeed play from there (also after a pause); pause keeps the picture and ends the request.
 */
export function playRecording(video, baseUrl, { start = 0, speed = 1, onState = () => {}, onInfo = () => {} } = {}) {
  let load = null; // the current request: {controller, objectUrl, done}
  let position = start;
  let rate = speed;
  let paused = false;
  let closed = false;
  let duration = null;
  let generation = 0;

  const state = (name, detail) => {
    if (!closed) onState(name, detail);
  };

  function abortLoad(keepPicture) {
    if (load === null) return;
    load.done = true;
    load.controller.abort();
    if (!keepPicture) {
      video.removeAttribute('src');
      video.load();
    }
    URL.revokeObjectURL(load.objectUrl);
    load = null;
  }

  function open(from) {
    abortLoad(true);
    const MS = window.MediaSource || window.ManagedMediaSource;
    if (!MS) {
      state('error', 'this browser has no Media Source Extensions');
      return;
    }
    const my = ++generation;
    const current = { controller: new AbortController(), objectUrl: '', done: false };
    load = current;
    position = Math.max(0, from);
    state('connecting');
    const url = `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}start=${position.toFixed(3)}&speed=${rate}`;
    run(current, url, MS, my).catch((e) => {
      if (!current.done) {
        state('error', String((e && e.message) || e));
        abortLoad(true);
      }
    });
  }

  async function run(current, url, MS, my) {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store', signal: current.controller.signal });
    if (current.done) return;
    if (!response.ok) {
      state('error', await problemOf(response));
      abortLoad(true);
      return;
    }
    const codec = response.headers.get('X-Codec') || 'avc1.42E01E';
    const mime = `video/mp4; codecs="${codec}"`;
    if (!MS.isTypeSupported(mime)) {
      state('error', `this browser cannot play ${codec}`);
      abortLoad(true);
      return;
    }
    const scale = Number(response.headers.get('X-Scale') || '1');
    const headerDuration = response.headers.get('X-Duration');
    if (headerDuration !== null) duration = Number(headerDuration);
    onInfo({ start: Number(response.headers.get('X-Start') || position), scale, duration,
      playbackRate: rate <= 1 ? rate : Math.min(rate, Math.max(scale, 1)) });

    const mediaSource = new MS();
    if (!window.MediaSource) video.disableRemotePlayback = true;
    const opened = new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    current.objectUrl = URL.createObjectURL(mediaSource);
    video.src = current.objectUrl;
    await opened;
    if (current.done) return;
    const sourceBuffer = mediaSource.addSourceBuffer(mime);
    sourceBuffer.mode = 'segments';
    if (headerDuration !== null) mediaSource.duration = duration;
    // The camera's speed, or slower: a camera that ignores Scale (X-Scale 1) sends at 1×, which can
    // be shown slower (the browser buffers, reading waits) but not faster.
    video.playbackRate = rate <= 1 ? rate : Math.min(rate, Math.max(scale, 1));

    const queue = [];
    let positioned = false;
    let ended = false;
    let wake = null;
    const updated = () => new Promise((resolve) => sourceBuffer.addEventListener('updateend', resolve, { once: true }));
    sourceBuffer.addEventListener('updateend', () => {
      if (current.done) return;
      if (!positioned && sourceBuffer.buffered.length > 0) {
        positioned = true;
        video.currentTime = Math.max(position, sourceBuffer.buffered.start(0));
        if (!paused) video.play().catch(() => {});
      }
      append();
    });
    function append() {
      if (current.done || sourceBuffer.updating) return;
      if (queue.length > 0) {
        const size = queue.reduce((n, c) => n + c.byteLength, 0);
        const data = new Uint8Array(size);
        let at = 0;
        for (const c of queue) {
          data.set(c, at);
          at += c.byteLength;
        }
        queue.length = 0;
        try {
          sourceBuffer.appendBuffer(data);
        } catch (e) {
          if (e.name === 'QuotaExceededError') {
            queue.unshift(data); // the reader waits (buffered ahead); appended when the playhead frees room
            const b = sourceBuffer.buffered;
            if (b.length && video.currentTime - b.start(0) > 5) sourceBuffer.remove(b.start(0), video.currentTime - 2);
          } else {
            state('error', String(e.message || e));
            abortLoad(true);
          }
        }
        return;
      }
      if (ended && mediaSource.readyState === 'open') {
        try {
          mediaSource.endOfStream();
        } catch {
          /* closed meanwhile */
        }
      }
    }
    const ahead = () => {
      const b = video.buffered;
      return b.length ? b.end(b.length - 1) - video.currentTime : 0;
    };
    const onTime = () => {
      if (wake !== null && ahead() < AHEAD - 5) {
        const w = wake;
        wake = null;
        w();
      }
    };
    video.addEventListener('timeupdate', onTime);
    const reader = response.body.getReader();
    try {
      for (;;) {
        if (ahead() > AHEAD) await new Promise((resolve) => { wake = resolve; });
        if (current.done) return;
        const chunk = await reader.read();
        if (current.done) return;
        if (chunk.done) break;
        queue.push(chunk.value);
        append();
      }
    } finally {
      video.removeEventListener('timeupdate', onTime);
    }
    ended = true;
    while (sourceBuffer.updating || queue.length) {
      append();
      if (sourceBuffer.updating) await updated();
      if (current.done) return;
    }
    append();
    if (my === generation && !current.done) current.endOfFile = true;
  }

  const onPlaying = () => state('playing');
  const onEnded = () => state('ended');
  video.addEventListener('playing', onPlaying);
  video.addEventListener('ended', onEnded);

  open(start);

  return {
    get duration() {
      return duration;
    },
    seek(seconds) {
      if (closed) return;
      paused = false;
      open(seconds);
    },
    setSpeed(x) {
      if (closed) return;
      paused = false;
      rate = x;
      open(video.currentTime || position);
    },
    pause() {
      if (closed) return;
      paused = true;
      video.pause();
      position = video.currentTime;
      abortLoad(true); // the picture stays; the camera's session is torn down
      state('paused');
    },
    resume() {
      if (closed) return;
      paused = false;
      open(video.currentTime || position);
    },
    close() {
      if (closed) return;
      abortLoad(false);
      closed = true;
      video.removeEventListener('playing', onPlaying);
      video.removeEventListener('ended', onEnded);
    },
  };
}
