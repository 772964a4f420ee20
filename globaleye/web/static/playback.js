// The playback page: one recording on the camera, #/devices/{id}/recordings/{channel}/{fileName} (issue 11).
//
// The video plays through js/player.js's playRecording (fragmented MP4 stamped in the file's own
// time, so the seek bar is video.currentTime against the file's length).  The length comes from
// the camera's answer (X-Duration); until it is known the seek bar waits.  Play/pause, speed
// 0.25-4, a download link, zh-CN and English (i18n.js), big touch targets for a phone.  Linked from
// the recordings page; app.js hands this module its render/api/explain helpers.
import { t } from './i18n.js';
import { playRecording } from './js/player.js';

const API = '/api/v1';
const SPEEDS = [0.25, 0.5, 1, 2, 4];
// §7.1 DevID_ChannelNo_YYYYMMDDHHMMSS.ts
const NAME = /^([0-9A-Za-z]{1,32})_(\d{1,3})_(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)\.ts$/;

let current = null; // the page's player: closed when the page is left or drawn again

function stop() {
  if (current !== null) {
    current.close();
    current = null;
  }
}
window.addEventListener('hashchange', () => {
  if (!/^#\/devices\/[0-9]+\/recordings\/[0-9]+\//.test(location.hash)) stop();
});

/** The route this module answers: [devId, channel, fileName] or null. */
export function playbackRoute(hash) {
  const match = hash.match(/^#\/devices\/([0-9]+)\/recordings\/([0-9]+)\/([A-Za-z0-9_.-]{1,128})$/);
  return match ? [match[1], Number(match[2]), match[3]] : null;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

/** 75.4 → "01:15" (and "1:01:15" past an hour). */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const two = (n) => String(n).padStart(2, '0');
  const hours = Math.floor(s / 3600);
  return hours ? `${hours}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${two(Math.floor(s / 60))}:${two(s % 60)}`;
}

/** The words for a player error (its detail is the problem's title). */
function errorText(detail) {
  const text = String(detail || '');
  if (/no such recording/i.test(text)) return t('pbNotFound');
  if (/no such camera/i.test(text)) return t('notFound');
  if (/offline/i.test(text)) return t('cameraOffline');
  if (/path|refused/i.test(text)) return t('noPath');
  if (/HTTP 401|session/i.test(text)) return t('sessionExpired');
  return text ? `${t('error')} (${text})` : t('error');
}

/**
 * Draw the page.  `app` is app.js's {render, api, explain}.
 * @param {string} devId @param {number} channel @param {string} fileName
 */
export async function playbackPage(devId, channel, fileName, app) {
  stop();
  const back = `#/devices/${encodeURIComponent(devId)}/recordings`;
  const named = fileName.match(NAME);
  let device = null;
  try {
    device = await app.api('GET', `/devices/${encodeURIComponent(devId)}`);
  } catch (error) {
    app.render(el('p', { class: 'error', text: app.explain(error) }), el('a', { href: '#/devices', text: t('back') }));
    return;
  }
  const base = `${API}/devices/${encodeURIComponent(devId)}/channels/${channel}/recordings/${encodeURIComponent(fileName)}`;
  const title = named ? `${named[3]}-${named[4]}-${named[5]} ${named[6]}:${named[7]}:${named[8]}` : fileName;

  const video = el('video', { id: 'playback', muted: true, playsinline: true, 'aria-label': `${t('pbTitle')} ${title}` });
  video.muted = true;
  const status = el('p', { id: 'playback-state', class: 'live-state', role: 'status', 'aria-live': 'polite' });
  const seek = el('input', { id: 'playback-seek', type: 'range', min: '0', max: '0', step: '1', value: '0',
    disabled: true, 'aria-label': t('pbSeek') });
  const position = el('span', { id: 'playback-time', class: 'pb-time', text: '00:00 / --:--' });
  const toggle = el('button', { type: 'button', id: 'playback-toggle', class: 'primary', text: t('pbPause') });
  let speed = 1;
  const speedButtons = SPEEDS.map((x) => el('button', { type: 'button', 'data-speed': String(x),
    'aria-pressed': String(x === speed), text: `${x}×`, onclick: () => setSpeed(x) }));
  const download = el('a', { id: 'playback-download', class: 'button', href: `${base}/download.mp4`,
    download: fileName.replace(/\.ts$/, '.mp4'), text: t('pbDownload') });

  let duration = null;
  let dragging = false;
  let paused = false;
  let ended = false;

  function setState(text, key) {
    status.textContent = text;
    status.dataset.state = key;
  }
  function showTime() {
    const now = video.currentTime || 0;
    position.textContent = `${clock(now)} / ${duration === null ? '--:--' : clock(duration)}`;
    if (!dragging && duration !== null) seek.value = String(Math.floor(now));
    seek.setAttribute('aria-valuetext', clock(now));
  }
  function setSpeed(x) {
    speed = x;
    for (const b of speedButtons) b.setAttribute('aria-pressed', String(Number(b.dataset.speed) === x));
    if (current !== null && !paused) current.setSpeed(x);
    else if (current !== null) video.playbackRate = x;
  }
  function setPaused(value) {
    paused = value;
    toggle.textContent = t(ended ? 'pbReplay' : (paused ? 'pbPlay' : 'pbPause'));
  }

  toggle.addEventListener('click', () => {
    if (current === null) return;
    if (ended) {
      ended = false;
      setPaused(false);
      current.seek(0);
    } else if (paused) {
      setPaused(false);
      current.setSpeed(speed); // resume at the chosen speed (a new request from where the picture stands)
    } else {
      setPaused(true);
      current.pause();
    }
  });
  seek.addEventListener('input', () => {
    dragging = true;
    position.textContent = `${clock(Number(seek.value))} / ${duration === null ? '--:--' : clock(duration)}`;
  });
  seek.addEventListener('change', () => {
    dragging = false;
    ended = false;
    setPaused(false);
    if (current !== null) current.seek(Number(seek.value));
  });
  video.addEventListener('timeupdate', showTime);

  app.render(
    el('p', {}, el('a', { href: back, text: `← ${t('pbBack')}` })),
    el('h1', {}, `${t('pbTitle')} · ${title}`),
    el('p', { class: 'dev-id', text: `${device.name && device.name !== devId ? `${device.name} · ` : ''}${devId} #${channel}` }),
    el('div', { class: 'player' }, video, status),
    el('div', { class: 'pb-bar' }, toggle, seek, position),
    el('div', { class: 'controls' },
      el('div', { class: 'streams pb-speeds', role: 'group', 'aria-label': t('pbSpeed') }, speedButtons), download),
  );
  setState(t('connecting'), 'connecting');

  current = playRecording(video, `${base}/play.mp4`, {
    start: 0,
    speed,
    onInfo: (info) => {
      if (info.duration !== null && Number.isFinite(info.duration)) {
        duration = info.duration;
        seek.max = String(Math.ceil(duration));
        seek.disabled = false;
      }
      showTime();
    },
    onState: (what, detail) => {
      if (what === 'playing') {
        ended = false;
        setPaused(false);
        setState(speed === 1 ? t('playing') : `${t('playing')} ${speed}×`, 'playing');
      } else if (what === 'connecting') setState(t('connecting'), 'connecting');
      else if (what === 'paused') setState(t('pbPaused'), 'paused');
      else if (what === 'ended') {
        ended = true;
        setPaused(true);
        setState(t('pbEnded'), 'ended');
      } else setState(errorText(detail), 'error');
    },
  });
}
