// The recordings on the camera (#/devices/{id}/recordings): a day picker and a 24-hour timeline of the
// files the camera's record search (72H) finds, each file choosable for its name, time and duration.
// Playback is another part of the portal: its button is here, disabled, until that lands.
// The timeline is SVG drawn with attributes (no inline style for the CSP to refuse).

import { cloudPart } from './cloud.js';
import { channelOf, channelPicker } from './settings.js';
import { svg } from './js/svg.js';

const MINUTES = 24 * 60;
const PARALLEL = 3; // pages asked of the camera at once (each is one 72H command)
const MAX_PAGES = 60; // 600 files: more than a day of 5-minute files (§7.1)


function pad(n) {
  return String(n).padStart(2, '0');
}

/** Today on the camera's clock (Beijing time, as its timestamps) as YYYY-MM-DD. */
function beijingToday() {
  const now = new Date(Date.now() + 8 * 3600 * 1000);
  return `${now.getUTCFullYear()}-${pad(now.getUTCMonth() + 1)}-${pad(now.getUTCDate())}`;
}

/** Minutes from the day's midnight of an ISO local time (2026-12-01T08:05), clipped to the day. */
function minuteOf(iso, day) {
  const [date, time] = iso.split('T');
  if (date < day) return 0;
  if (date > day) return MINUTES;
  const [hh, mm] = time.split(':').map(Number);
  return hh * 60 + mm;
}

function duration(t, seconds) {
  if (seconds === null || seconds === undefined) return '';
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  return rest ? `${minutes} ${t('minutes')} ${rest} ${t('seconds')}` : `${minutes} ${t('minutes')}`;
}

function megabytes(size) {
  return `${(size / 1048576).toFixed(1)} MB`;
}

export async function recordingsPage(kit, devId) {
  const { api, h, t, render } = kit;
  const id = encodeURIComponent(devId);
  const back = h('p', {}, h('a', { href: `#/devices/${id}`, text: `← ${t('backToCamera')}` }));
  render(back, h('p', { class: 'loading', text: t('loading') }));
  let device;
  try {
    device = await api('GET', `/devices/${id}`);
  } catch (error) {
    render(back, h('p', { class: 'error', text: kit.explain(error) }));
    return;
  }
  const today = beijingToday();
  const dayInput = h('input', { id: 'recordings-day', type: 'date', name: 'day', value: today, max: today,
    required: true });
  const state = h('p', { id: 'recordings-status', class: 'card-status', role: 'status', 'aria-live': 'polite' });
  const timeline = svg('svg', { id: 'timeline', class: 'timeline', viewBox: `0 0 ${MINUTES} 60`,
    preserveAspectRatio: 'none', role: 'img', 'aria-label': t('timeline') });
  const axis = h('div', { class: 'timeline-axis', 'aria-hidden': 'true' },
    [0, 3, 6, 9, 12, 15, 18, 21, 24].map((hour) => h('span', { text: pad(hour) })));
  const list = h('ol', { id: 'recording-list', class: 'recording-list' });
  const detail = h('div', { id: 'recording-detail', class: 'recording-detail', hidden: true, 'aria-live': 'polite' });
  // 72H searches by day and time: the whole day unless narrowed (the camera's local time).
  const fromInput = h('input', { id: 'recordings-from', type: 'time', name: 'from', value: '00:00', step: 60 });
  const toInput = h('input', { id: 'recordings-to', type: 'time', name: 'to', value: '23:59', step: 60 });
  const form = h('form', { id: 'recordings-form', class: 'row', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'recordings-day', text: t('day') }), dayInput),
    h('div', { class: 'field' }, h('label', { for: 'recordings-from', text: t('fromTime') }), fromInput),
    h('div', { class: 'field' }, h('label', { for: 'recordings-to', text: t('toTime') }), toInput),
    h('button', { type: 'submit', class: 'primary', id: 'recordings-search', text: t('search') }));

  let chosen = null;
  function choose(file, index) {
    chosen = index;
    for (const node of list.querySelectorAll('button[aria-pressed]')) {
      node.setAttribute('aria-pressed', String(node.dataset.index === String(index)));
    }
    for (const node of timeline.querySelectorAll('rect.file')) {
      node.setAttribute('class', node.dataset.index === String(index) ? 'file chosen' : 'file');
    }
    const start = file.start.replace('T', ' ');
    const end = file.end.slice(11);
    detail.hidden = false;
    detail.replaceChildren(
      h('h2', { text: t('recording') }),
      h('dl', {},
        h('dt', { text: t('fileName') }), h('dd', { id: 'detail-name', text: file.fileName }),
        h('dt', { text: t('time') }), h('dd', { id: 'detail-time', text: `${start}–${end}` }),
        h('dt', { text: t('duration') }), h('dd', { id: 'detail-duration', text: duration(t, file.durationSeconds) }),
        h('dt', { text: t('size') }), h('dd', { text: megabytes(file.size) })),
      h('a', { id: 'play-recording', class: 'button primary', text: t('play'),
        href: `#/devices/${id}/recordings/${channelOf(device)}/${encodeURIComponent(file.fileName)}` }));
  }

  function draw(day, files) {
    const hours = [];
    for (let hour = 0; hour <= 24; hour += 1) {
      hours.push(svg('line', { x1: hour * 60, x2: hour * 60, y1: hour % 6 ? 44 : 36, y2: 60, class: 'tick' }));
    }
    const rects = files.map((file, index) => {
      const from = minuteOf(file.start, day);
      const to = Math.max(from + 1, minuteOf(file.end, day));
      const rect = svg('rect', { x: from, y: 6, width: to - from, height: 30, class: 'file', 'data-index': index },
        svg('title', {}, `${file.start.slice(11)}–${file.end.slice(11)} ${file.fileName}`));
      rect.dataset.index = String(index);
      rect.addEventListener('click', () => choose(file, index));
      return rect;
    });
    timeline.replaceChildren(svg('rect', { x: 0, y: 6, width: MINUTES, height: 30, class: 'day' }), ...hours,
      ...rects);
    timeline.dataset.files = String(files.length);
    list.replaceChildren(...files.map((file, index) => h('li', {},
      h('button', { type: 'button', class: 'link', 'aria-pressed': 'false', 'data-index': String(index),
        'data-file': file.fileName, onclick: () => choose(file, index) },
      `${file.start.slice(11)}–${file.end.slice(11)}`, ' ',
      h('span', { class: 'muted', text: `${duration(t, file.durationSeconds)} · ${megabytes(file.size)}` })))));
  }

  let searching = 0;
  async function search() {
    if (!device.online) {
      state.dataset.kind = 'error';
      state.textContent = t('cameraOffline');
      return;
    }
    const day = dayInput.value || today;
    const mine = ++searching;
    chosen = null;
    detail.hidden = true;
    list.replaceChildren();
    timeline.replaceChildren();
    delete timeline.dataset.files;
    state.dataset.kind = 'info';
    state.textContent = t('searchingRecordings');
    form.setAttribute('aria-busy', 'true');
    const from = fromInput.value || '00:00';
    const to = !toInput.value || toInput.value === '23:59' ? '24:00' : toInput.value;
    const path = `/devices/${id}/channels/${channelOf(device)}/recordings?day=${encodeURIComponent(day)}`
      + `&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    try {
      const first = await api('GET', `${path}&page=1`);
      const pages = Math.min(first.pages, MAX_PAGES);
      const found = [first.recordings];
      let next = 2;
      async function worker() {
        while (next <= pages && mine === searching) {
          const number = next;
          next += 1;
          found[number - 1] = (await api('GET', `${path}&page=${number}`)).recordings;
          state.textContent = `${t('searchingRecordings')} ${found.flat().length}/${first.total}`;
        }
      }
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      if (mine !== searching) return;
      const files = found.flat();
      draw(day, files);
      state.textContent = files.length ? t('recordingsFound').replace('{n}', String(files.length))
        : t('noRecordings');
    } catch (error) {
      if (mine !== searching) return;
      state.dataset.kind = 'error';
      state.textContent = error && error.kind === 'not-supported' ? t('noLocalStorage') : kit.explain(error);
    } finally {
      form.removeAttribute('aria-busy');
    }
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });

  const offline = !device.online;
  // The cloud's recordings and pictures (issue 12): a second lane and a card of their own, searched
  // even when the camera is offline (cloud.js).
  const cloud = cloudPart(kit, device, () => channelOf(device), () => dayInput.value || today);
  form.addEventListener('submit', () => cloud.refresh());
  render(back, h('h1', {}, `${t('recordings')} · ${device.name}`),
    h('section', { class: 'card' }, ...channelPicker(kit, device, () => { search(); cloud.refresh(); }), form, state,
      h('figure', { class: 'timeline-box' }, timeline, cloud.lane, axis, cloud.legend,
        h('figcaption', { class: 'hint', text: t('timelineHint') })),
      list),
    detail, ...cloud.nodes);
  cloud.refresh();
  if (offline) {
    state.dataset.kind = 'error';
    state.textContent = t('cameraOffline');
    // The day stays choosable: the cloud's recordings do not need the camera (issue 12).
    for (const control of form.querySelectorAll('#recordings-from, #recordings-to')) {
      control.disabled = true;
      control.title = t('cameraOffline');
    }
    return;
  }
  search();
}
