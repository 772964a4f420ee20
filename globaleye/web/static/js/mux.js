// The grid's live view: several cameras over ONE HTTP answer (issue 11).
//
// A browser opens at most six HTTP/1.1 connections to one origin, so a 9-camera grid cannot be
// nine live.mp4 streams.  GET /api/v1/live/mux.bin?s=<devId>:<channel>:<main|sub>&s=... answers
// all of them in frames (docs/protocol.md): index u8, kind u8 (0 init, 1 fragment, 2 error),
// length u32 big-endian, payload.  This module cuts the body into frames and feeds each stream
// into its tile's own MediaSource through player.js's append queue (the same buffering rules as
// the single-camera player).

import { appendQueue } from './player.js';

const HEADER = 6;
const INIT = 0;
const FRAGMENT = 1;
const ERROR = 2;
const CHECK_MS = 500;

/**
 * One tile: its <video>, a MediaSource made at the stream's first init frame.
 */
class Tile {
  constructor(video, onState) {
    this.video = video;
    this.onState = onState;
    this.closed = false;
    this.codec = null;
    this.sourceBuffer = null;
    this.buffer = null;
    this.pending = []; // what came before the SourceBuffer was ready
    this.objectUrl = null;
    this.playing = false;
    this.onPlaying = () => {
      if (!this.playing) {
        this.playing = true;
        this.state('playing');
      }
    };
    video.addEventListener('playing', this.onPlaying);
  }

  state(name, detail) {
    if (!this.closed) this.onState(name, detail);
  }

  fail(detail) {
    this.state('error', detail);
    this.close();
  }

  init(codec, segment) {
    if (this.codec === null) {
      this.codec = codec;
      this.open(codec);
    } else if (codec !== this.codec && this.sourceBuffer && this.sourceBuffer.changeType) {
      this.sourceBuffer.changeType(`video/mp4; codecs="${codec}"`);
      this.codec = codec;
    }
    this.push(segment);
  }

  async open(codec) {
    const MS = window.MediaSource || window.ManagedMediaSource;
    const mime = `video/mp4; codecs="${codec}"`;
    if (!MS) return this.fail({ title: 'this browser has no Media Source Extensions' });
    if (!MS.isTypeSupported(mime)) return this.fail({ title: `this browser cannot play ${codec}` });
    const mediaSource = new MS();
    if (!window.MediaSource) this.video.disableRemotePlayback = true;
    const opened = new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    this.objectUrl = URL.createObjectURL(mediaSource);
    this.video.src = this.objectUrl;
    await opened;
    if (this.closed) return undefined;
    this.sourceBuffer = mediaSource.addSourceBuffer(mime);
    this.sourceBuffer.mode = 'segments';
    this.sourceBuffer.addEventListener('error', () => this.fail({ title: 'the browser could not decode the stream' }));
    this.buffer = appendQueue(this.video, this.sourceBuffer, {
      fail: (detail) => this.fail({ title: detail }), isClosed: () => this.closed,
    });
    for (const chunk of this.pending) this.buffer.push(chunk);
    this.pending = [];
    this.video.play().catch(() => {});
    return undefined;
  }

  push(chunk) {
    if (this.closed) return;
    if (this.buffer) this.buffer.push(chunk);
    else this.pending.push(chunk);
  }

  tick() {
    if (this.buffer) this.buffer.tick();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.video.removeEventListener('playing', this.onPlaying);
    if (this.objectUrl !== null) {
      this.video.removeAttribute('src');
      this.video.load();
      URL.revokeObjectURL(this.objectUrl);
    }
  }
}

/**
 * Cut a stream of bytes into frames: `feed(bytes)` calls `onFrame(index, kind, payload)` for
 * each whole frame (payload a view into the bytes, valid during the call).
 */
export function frameReader(onFrame) {
  let rest = new Uint8Array(0);
  return (chunk) => {
    let data = chunk;
    if (rest.byteLength > 0) {
      data = new Uint8Array(rest.byteLength + chunk.byteLength);
      data.set(rest, 0);
      data.set(chunk, rest.byteLength);
    }
    let at = 0;
    while (data.byteLength - at >= HEADER) {
      const view = new DataView(data.buffer, data.byteOffset + at, HEADER);
      const length = view.getUint32(2);
      if (data.byteLength - at - HEADER < length) break;
      onFrame(view.getUint8(0), view.getUint8(1), data.subarray(at + HEADER, at + HEADER + length));
      at += HEADER + length;
    }
    rest = data.slice(at);
  };
}

/**
 * Play several live streams of one mux.bin answer, one per tile.
 * @param {string} url  /api/v1/live/mux.bin?s=...&s=... (the tiles in the order of the `s`)
 * @param {{video: HTMLVideoElement, onState: (state: 'connecting'|'playing'|'error', detail?: object) => void}[]} tiles
 *   `detail` of 'error' is the stream's problem ({status, title, detail}).
 * @param {{onEnd?: (detail: object) => void}} [options] the answer ended (network, server) while open
 * @returns {{close: () => void}}
 */
export function playMux(url, tiles, { onEnd = () => {} } = {}) {
  const controller = new AbortController();
  const players = tiles.map(({ video, onState }) => new Tile(video, onState));
  let closed = false;
  const timer = setInterval(() => players.forEach((p) => p.tick()), CHECK_MS);
  const decoder = new TextDecoder();

  function stop() {
    if (closed) return;
    closed = true;
    controller.abort();
    clearInterval(timer);
    players.forEach((p) => p.close());
  }

  function ended(detail) {
    if (closed) return;
    for (const p of players) if (!p.closed) p.fail(detail);
    stop();
    onEnd(detail);
  }

  const feed = frameReader((index, kind, payload) => {
    const player = players[index];
    if (!player) return;
    if (kind === INIT) {
      const n = payload[0];
      const codec = decoder.decode(payload.subarray(1, 1 + n));
      player.init(codec, payload.slice(1 + n));
    } else if (kind === FRAGMENT) {
      player.push(payload.slice());
    } else if (kind === ERROR) {
      let problem;
      try {
        problem = JSON.parse(decoder.decode(payload));
      } catch {
        problem = { title: 'error' };
      }
      player.fail(problem);
    }
  });

  async function run() {
    players.forEach((p) => p.state('connecting'));
    let response;
    try {
      response = await fetch(url, { credentials: 'same-origin', cache: 'no-store', signal: controller.signal });
    } catch (e) {
      return ended({ title: String(e.message || e) });
    }
    if (!response.ok) {
      let problem = { status: response.status, title: `HTTP ${response.status}` };
      try {
        problem = await response.json();
      } catch {
        // not JSON: the status says it
      }
      return ended(problem);
    }
    const reader = response.body.getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        return ended({ title: String(e.message || e) });
      }
      if (closed) return undefined;
      if (chunk.done) return ended({ title: 'the stream ended' });
      feed(chunk.value);
    }
  }

  run().catch((e) => ended({ title: String((e && e.message) || e) }));
  return { close: stop };
}
