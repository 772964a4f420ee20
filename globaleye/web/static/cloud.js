// Cloud recordings and pictures on the recordings page (issue 12, §7.1.2).
//
// A second lane under the camera's 24-hour timeline shows the day's recordings in the platform's cloud
// store (a legend tells the lanes apart), even when the camera is offline or gone: that is what the
// cloud is for.  Choosing a moment plays the day from there through js/player.js's playRecording: the
// API's cloud play.mp4 remuxes the consecutive 5-minute TS files into one fragmented MP4 whose time 0
// is the day's midnight (Beijing), so video.currentTime is the position on the lane, a seek is
// "play from here", and playback runs on across the files.  Speed is the browser's playbackRate.
// Downloads: the chosen file as stored (a presigned URL the API gives), or a range as one MP4.  The
// day's pictures are a strip of thumbnails served through the API (same origin: the CSP stays strict).
// SVG drawn with attributes, no inline style or script (CSP).
import { t } from './i18n.js';
import { playRecording } from './js/player.js';
import { svg } from './js/svg.js';

const API = '/api/v1';
const MINUTES = 24 * 60;
const SPEEDS = [0.5, 1, 2, 4];
const PAGE = 200; // files per search page (a day of 5-minute files is 288)
const MAX_PICTURES = 60;


const pad = (n) => String(n).padStart(2, '0');

/** 2026-12-02 → 20261202000000 and the next day's midnight. */
function dayRange(day) {
  const [y, m, d] = day.split('-').map(Number);
  const next = new Date(Date.UTC(y, m - 1, d + 1));
  return [`${day.replace(/-/g, '')}000000`,
    `${next.getUTCFullYear()}${pad(next.getUTCMonth() + 1)}${pad(next.getUTCDate())}000000`];
}

/** Seconds after the day's midnight of an ISO local time (2026-12-02T10:00:02), clipped to the day. */
function secondOf(iso, day) {
  const [date, time] = iso.split('T');
  if (date < day) return 0;
  if (date > day) return MINUTES * 60;
  const [hh, mm, ss] = time.split(':').map(Number);
  return hh * 3600 + mm * 60 + (ss || 0);
}

/** 36002.5 → "10:00:02". */
function hms(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

/** "10:00" or "10:00:30" from an <input type=time> → YYYYMMDDHHMMSS of *day*. */
function stampOf(day, time) {
  const [hh, mm, ss] = (time || '00:00').split(':');
  return `${day.replace(/-/g, '')}${pad(Number(hh))}${pad(Number(mm))}${pad(Number(ss || 0))}`;
}

let player = null;
function stop() {
  if (player !== null) {
    player.close();
    player = null;
  }
}
window.addEventListener('hashchange', stop);

/**
 * The cloud part of the recordings page.  `kit` is app.js's kit, `device` the camera, `channel()`
 * the chosen channel, `dayOf()` the chosen day (YYYY-MM-DD).  Returns {nodes, lane, legend, refresh}:
 * the lane and legend go under the camera's timeline, the nodes after the camera's list.
 */
export function cloudPart(kit, device, channel, dayOf) {
  const { api, h } = kit;
  const id = encodeURIComponent(device.devId);
  const lane = svg('svg', { id: 'cloud-timeline', class: 'timeline cloud-lane', viewBox: `0 0 ${MINUTES} 36`,
    preserveAspectRatio: 'none', role: 'img', 'aria-label': t('cloudLane') });
  const legend = h('p', { class: 'timeline-legend' },
    h('span', { class: 'legend-camera', text: t('cloudLegendCamera') }),
    h('span', { class: 'legend-cloud', text: t('cloudLegendCloud') }));
  const state = h('p', { id: 'cloud-status', class: 'card-status', role: 'status', 'aria-live': 'polite' });
  const video = h('video', { id: 'cloud-video', muted: true, playsinline: true, 'aria-label': t('cloudPlayer') });
  video.muted = true;
  const playState = h('p', { id: 'cloud-play-state', class: 'live-state', role: 'status', 'aria-live': 'polite' });
  const position = h('span', { id: 'cloud-time', class: 'pb-time', text: '--:--:--' });
  const toggle = h('button', { type: 'button', id: 'cloud-toggle', class: 'primary', text: t('pbPause'),
    disabled: true });
  let speed = 1;
  const speedButtons = SPEEDS.map((x) => h('button', { type: 'button', 'data-speed': String(x),
    'aria-pressed': String(x === speed), text: `${x}×`, onclick: () => setSpeed(x) }));
  const filePlay = h('button', { type: 'button', id: 'cloud-play', class: 'primary', disabled: true,
    text: t('cloudPlayFile') });
  const fileDownload = h('button', { type: 'button', id: 'cloud-file-download', class: 'button', disabled: true,
    text: t('cloudDownloadFile') });
  const fileDelete = device.shared ? null : h('button', { type: 'button', id: 'cloud-file-delete', class: 'danger',
    disabled: true, text: t('cloudDelete') });
  const fromInput = h('input', { id: 'cloud-from', type: 'time', step: 1, value: '00:00:00' });
  const toInput = h('input', { id: 'cloud-to', type: 'time', step: 1, value: '00:05:00' });
  const rangeDownload = h('a', { id: 'cloud-range-download', class: 'button', href: '#', download: 'cloud.mp4',
    text: t('cloudDownloadRange') });
  const rangeDelete = device.shared ? null : h('button', { type: 'button', id: 'cloud-range-delete', class: 'danger',
    text: t('cloudDeleteRange') });
  const strip = h('div', { id: 'cloud-pictures', class: 'thumb-strip' });
  const playerBox = h('div', { id: 'cloud-player', class: 'cloud-player', hidden: true },
    h('div', { class: 'player' }, video, playState),
    h('div', { class: 'pb-bar' }, toggle, position),
    h('div', { class: 'controls' },
      h('div', { class: 'streams pb-speeds', role: 'group', 'aria-label': t('pbSpeed') }, speedButtons)));
  const range = h('form', { id: 'cloud-range', class: 'row', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'cloud-from', text: t('cloudFrom') }), fromInput),
    h('div', { class: 'field' }, h('label', { for: 'cloud-to', text: t('cloudTo') }), toInput),
    rangeDownload, rangeDelete);
  const chosenText = h('p', { id: 'cloud-chosen', class: 'dev-id' });
  // The files as buttons too: the lane is for the eye and the mouse, the list for keyboards and screen readers.
  const list = h('ol', { id: 'cloud-list', class: 'recording-list' });
  const nodes = [h('section', { class: 'card', id: 'cloud-card' },
    h('h2', { text: t('cloudRecordings') }), state, list, chosenText,
    h('div', { class: 'controls' }, filePlay, fileDownload, fileDelete), playerBox, h('h3', { text: t('cloudRangeTitle') }),
    h('p', { class: 'hint', text: t('cloudRangeHint') }), range,
    h('h3', { text: t('cloudPictures') }), strip)];

  let files = [];
  let chosen = null;
  let day = dayOf();
  let paused = false;

  function setState(node, text, key) {
    node.textContent = text;
    node.dataset.state = key;
  }
  function updateRange() {
    const d = dayOf();
    const [from, to] = [stampOf(d, fromInput.value), stampOf(d, toInput.value)];
    rangeDownload.href = `${API}/devices/${id}/channels/${channel()}/cloud-files/download.mp4?from=${from}&to=${to}`;
    rangeDownload.setAttribute('download', `${device.devId}_${channel()}_${from}-${to.slice(8)}.mp4`);
  }
  fromInput.addEventListener('change', updateRange);
  toInput.addEventListener('change', updateRange);
  range.addEventListener('submit', (event) => event.preventDefault());

  function playhead() {
    const x = (video.currentTime || 0) / 60;
    let line = lane.querySelector('line.playhead');
    if (line === null) {
      line = svg('line', { class: 'playhead', y1: 0, y2: 36 });
      lane.append(line);
    }
    line.setAttribute('x1', String(x));
    line.setAttribute('x2', String(x));
    position.textContent = `${day} ${hms(video.currentTime || 0)}`;
    lane.dataset.position = String(Math.floor(video.currentTime || 0));
  }
  video.addEventListener('timeupdate', playhead);
  // A gap between recordings (the camera was off): jump to the next recorded moment.
  video.addEventListener('waiting', () => {
    const b = video.buffered;
    for (let i = 0; i < b.length; i += 1) {
      if (b.start(i) > video.currentTime && b.start(i) - video.currentTime < 24 * 3600) {
        video.currentTime = b.start(i);
        return;
      }
    }
  });

  function choose(index) {
    chosen = index;
    for (const node of lane.querySelectorAll('rect.cloud-file')) {
      node.setAttribute('class', node.dataset.index === String(index) ? 'cloud-file chosen' : 'cloud-file');
    }
    for (const node of list.querySelectorAll('button[aria-pressed]')) {
      node.setAttribute('aria-pressed', String(node.dataset.index === String(index)));
    }
    fileDownload.disabled = false;
    filePlay.disabled = false;
    if (fileDelete) fileDelete.disabled = false;
    const file = files[index];
    chosenText.textContent = `${file.start.replace('T', ' ')}–${file.end.slice(11)} · ${file.fileName}`;
    fromInput.value = file.start.slice(11);
    const end = Math.min(secondOf(file.start, day) + 3600, 24 * 3600 - 1);
    toInput.value = hms(Math.max(end, secondOf(file.end, day)));
    updateRange();
  }

  function playFrom(seconds) {
    stop();
    playerBox.hidden = false;
    toggle.disabled = false;
    paused = false;
    toggle.textContent = t('pbPause');
    const [from, to] = dayRange(day);
    player = playRecording(video, `${API}/devices/${id}/channels/${channel()}/cloud-files/play.mp4?from=${from}&to=${to}`, {
      start: seconds,
      speed,
      onInfo: () => playhead(),
      onState: (what, detail) => {
        if (what === 'playing') setState(playState, speed === 1 ? t('playing') : `${t('playing')} ${speed}×`, 'playing');
        else if (what === 'connecting') setState(playState, t('connecting'), 'connecting');
        else if (what === 'paused') setState(playState, t('pbPaused'), 'paused');
        else if (what === 'ended') setState(playState, t('pbEnded'), 'ended');
        else setState(playState, /no recordings/i.test(String(detail)) ? t('cloudNone') : `${t('error')} (${detail})`, 'error');
      },
    });
  }
  function setSpeed(x) {
    speed = x;
    for (const b of speedButtons) b.setAttribute('aria-pressed', String(Number(b.dataset.speed) === x));
    if (player !== null && !paused) player.setSpeed(x);
  }
  toggle.addEventListener('click', () => {
    if (player === null) return;
    paused = !paused;
    toggle.textContent = t(paused ? 'pbPlay' : 'pbPause');
    if (paused) player.pause();
    else player.setSpeed(speed);
  });
  filePlay.addEventListener('click', () => {
    if (chosen !== null) playFrom(secondOf(files[chosen].start, day));
  });
  fileDownload.addEventListener('click', async () => {
    if (chosen === null) return;
    try {
      const answer = await api('GET', `/devices/${id}/cloud-files/${encodeURIComponent(files[chosen].fileName)}/url`);
      window.location.assign(answer.url);
    } catch (error) {
      setState(state, kit.explain(error), 'error');
    }
  });
  if (fileDelete) {
    fileDelete.addEventListener('click', async () => {
      if (chosen === null || !window.confirm(t('cloudDeleteConfirm').replace('{name}', files[chosen].fileName))) return;
      try {
        await api('DELETE', `/devices/${id}/cloud-files/${encodeURIComponent(files[chosen].fileName)}`);
        refresh();
      } catch (error) {
        setState(state, kit.explain(error), 'error');
      }
    });
  }
  if (rangeDelete) {
    rangeDelete.addEventListener('click', async () => {
      const d = dayOf();
      const [from, to] = [stampOf(d, fromInput.value), stampOf(d, toInput.value)];
      const words = t('cloudDeleteRangeConfirm').replace('{from}', fromInput.value).replace('{to}', toInput.value);
      if (!window.confirm(words)) return;
      try {
        const answer = await api('DELETE', `/devices/${id}/channels/${channel()}/cloud-files`, { kind: 'record', from, to });
        await refresh();
        setState(state, t('cloudDeleted').replace('{n}', String(answer.deleted)), 'info');
      } catch (error) {
        setState(state, kit.explain(error), 'error');
      }
    });
  }
  // A click on the lane plays from that moment (the nearest recording on it, or the next one).
  lane.addEventListener('click', (event) => {
    const box = lane.getBoundingClientRect();
    if (!box.width || !files.length) return;
    const second = Math.floor(((event.clientX - box.left) / box.width) * MINUTES * 60);
    let index = files.findIndex((f) => secondOf(f.end, day) > second);
    if (index < 0) index = files.length - 1;
    choose(index);
    playFrom(Math.max(second, secondOf(files[index].start, day)));
  });

  async function search(kind, from, to) {
    const found = [];
    for (let page = 1; page <= 10; page += 1) {
      const answer = await api('GET', `/devices/${id}/channels/${channel()}/cloud-files?kind=${kind}&from=${from}`
        + `&to=${to}&page=${page}&pageSize=${PAGE}`);
      found.push(...answer.files);
      if (page >= answer.pages) break;
    }
    return found;
  }

  let generation = 0;
  async function refresh() {
    const mine = ++generation;
    day = dayOf();
    stop();
    playerBox.hidden = true;
    chosen = null;
    fileDownload.disabled = true;
    filePlay.disabled = true;
    chosenText.textContent = '';
    if (fileDelete) fileDelete.disabled = true;
    lane.replaceChildren(svg('rect', { x: 0, y: 3, width: MINUTES, height: 30, class: 'day' }));
    delete lane.dataset.files;
    list.replaceChildren();
    strip.replaceChildren();
    setState(state, t('cloudSearching'), 'info');
    updateRange();
    const [from, to] = dayRange(day);
    try {
      const [records, pictures] = await Promise.all([search('record', from, to), search('picture', from, to)]);
      if (mine !== generation) return;
      files = records;
      lane.append(...files.map((file, index) => {
        const x = secondOf(file.start, day) / 60;
        const w = Math.max(1, secondOf(file.end, day) / 60 - x);
        const rect = svg('rect', { x, y: 3, width: w, height: 30, class: 'cloud-file', 'data-index': index,
          'data-file': file.fileName }, svg('title', {}, `${file.start.slice(11)}–${file.end.slice(11)} ${file.fileName}`));
        rect.addEventListener('click', (event) => {
          event.stopPropagation(); // the file itself: from its start
          choose(index);
          playFrom(secondOf(file.start, day));
        });
        return rect;
      }));
      lane.dataset.files = String(files.length);
      list.replaceChildren(...files.map((file, index) => h('li', {},
        h('button', { type: 'button', class: 'link', 'aria-pressed': 'false', 'data-index': String(index),
          'data-file': file.fileName, onclick: () => choose(index) },
        `${file.start.slice(11)}–${file.end.slice(11)}`, ' ',
        h('span', { class: 'muted', text: `${(file.size / 1048576).toFixed(1)} MB` })))));
      strip.replaceChildren(...pictures.slice(0, MAX_PICTURES).map((p) => h('figure', { class: 'thumb' },
        h('img', { src: `${API}/devices/${id}/cloud-files/${encodeURIComponent(p.fileName)}/picture.jpg`,
          alt: `${t('cloudPicture')} ${p.start.replace('T', ' ')}`, loading: 'lazy', 'data-file': p.fileName }),
        h('figcaption', { text: p.start.slice(11) }))));
      setState(state, files.length || pictures.length
        ? t('cloudFound').replace('{n}', String(files.length)).replace('{p}', String(pictures.length))
        : t('cloudNone'), 'info');
      if (files.length) choose(0);
    } catch (error) {
      if (mine !== generation) return;
      setState(state, error && error.kind === 'cloud-unavailable' ? t('cloudUnavailable') : kit.explain(error),
        'error');
    }
  }

  return { nodes, lane, legend, refresh };
}
