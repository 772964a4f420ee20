// Alarms (34H, §7.5.4) on the portal: the recent alarms of every camera (GET /devices/{id}/alarms), new
// ones pushed live by the server (EventSource on /api/v1/events, Server-Sent Events), a badge in the
// header counting the unseen ones, and a browser notification when the person allowed them (asked
// only when the button is pressed, never on page load).  Online changes from the same stream update
// the device list in place.
import { t } from './i18n.js';

const EVENTS = '/api/v1/events';
const KEEP = 200; // alarms kept in memory for the page (newest first)

/** "20261202091500" -> "2026-12-02 09:15:00" (the platform's time, Beijing as in §7). */
export function alarmTime(text) {
  const s = String(text || '');
  if (!/^[0-9]{14}$/.test(s)) return s;
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)} ${s.slice(8, 10)}:${s.slice(10, 12)}:${s.slice(12, 14)}`;
}

/** The §7.5.4 ExceptionType in the page's language (0, or one we do not know: "unknown"). */
export function alarmTypeName(type) {
  const key = `alarmType${Number(type)}`;
  const word = t(key);
  return word === key ? `${t('alarmType0')} (${type})` : word;
}

/**
 * Installs the alarms part into the page.  *ctx* are app.js's helpers: api (the JSON API call), h (the
 * element builder) and render (replaces the main view).  Returns {start, page}: start() opens the event
 * stream once a session exists (again after a new login), page() draws the #/alarms view.
 */
export function installAlarms({ api, h, render }) {
  let source = null;
  let unseen = 0;
  let missed = 0;
  let recent = []; // {devId, channel, type, text|description, time, live}
  let names = new Map(); // devId -> name
  let list = null; // the <ul> of the alarms view while it is shown
  let filter = '';
  let liveState = null; // the view's status line

  const count = h('span', { class: 'badge', id: 'alarm-badge', 'aria-live': 'polite', hidden: true });
  const label = h('span', { 'data-i18n': 'alarmsNav', text: t('alarmsNav') });
  const link = h('a', { href: '#/alarms', id: 'alarms-link', class: 'alarms-link', hidden: true }, label, count);
  document.querySelector('.bar-actions').prepend(link);

  function updateBadge() {
    count.textContent = unseen > 99 ? '99+' : String(unseen);
    count.hidden = unseen === 0;
    link.setAttribute('aria-label', unseen ? `${t('alarmsNav')}: ${unseen} ${t('alarmsUnseen')}` : t('alarmsNav'));
  }

  function onAlarmsPage() {
    return list !== null && list.isConnected;
  }

  function item(alarm) {
    const name = names.get(alarm.devId) || alarm.devId;
    const text = alarm.text ?? alarm.description ?? '';
    const li = h('li', { class: alarm.live ? 'alarm new' : 'alarm', 'data-dev-id': alarm.devId,
      'data-type': String(alarm.type) },
    h('time', { text: alarmTime(alarm.time) }),
    h('span', { class: 'alarm-camera', text: alarm.channel ? `${name} · ${t('channel')} ${alarm.channel + 1}` : name }),
    h('strong', { class: 'alarm-type', text: alarmTypeName(alarm.type) }),
    text ? h('span', { class: 'alarm-text', text }) : null);
    if (alarm.live) setTimeout(() => li.classList.remove('new'), 10000);
    return li;
  }

  function draw() {
    if (!onAlarmsPage()) return;
    const shown = recent.filter((a) => !filter || a.devId === filter);
    list.replaceChildren(...(shown.length ? shown.map(item) : [h('li', { class: 'empty', text: t('noAlarms') })]));
  }

  function notify(alarm) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const name = names.get(alarm.devId) || alarm.devId;
    try {
      const note = new Notification(t('alarmNotifyTitle'), {
        body: `${name}: ${alarmTypeName(alarm.type)}${alarm.text ? ` — ${alarm.text}` : ''}`,
        tag: `ge-alarm-${alarm.devId}-${alarm.time}-${alarm.type}`,
      });
      note.onclick = () => { window.focus(); location.hash = '#/alarms'; note.close(); };
    } catch {
      // Android Chrome allows notifications only from a service worker: the badge and the list remain
    }
  }

  function arrived(alarm) {
    const live = { ...alarm, live: true };
    recent.unshift(live);
    recent = recent.slice(0, KEEP);
    if (alarm.dropped > missed) {
      missed = alarm.dropped;
      if (liveState) liveState.textContent = t('alarmsMissed');
    }
    if (onAlarmsPage() && (!filter || filter === alarm.devId)) {
      const empty = list.querySelector('.empty');
      if (empty) empty.remove();
      list.prepend(item(live));
    }
    if (!onAlarmsPage() || document.hidden) {
      unseen += 1;
      updateBadge();
    }
    notify(alarm);
  }

  /** A camera went online or offline: its state in the device list changes in place. */
  function presence(change) {
    for (const badge of document.querySelectorAll(`li[data-dev-id="${CSS.escape(change.devId)}"] .state`)) {
      badge.className = `state ${change.online ? 'online' : 'offline'}`;
      badge.textContent = change.online ? t('online') : t('offline');
    }
  }

  function start() {
    link.hidden = false;
    if (source && source.readyState !== EventSource.CLOSED) return;
    source = new EventSource(EVENTS);
    source.addEventListener('alarm', (event) => arrived(JSON.parse(event.data)));
    source.addEventListener('device', (event) => presence(JSON.parse(event.data)));
    source.addEventListener('session', () => {
      source.close(); // the session ended (logout, expiry): a reconnection would only be refused
      if (liveState) liveState.textContent = t('alarmsEnded');
    });
    source.addEventListener('open', () => {
      if (liveState) liveState.textContent = t('alarmsLive');
    });
    source.addEventListener('error', () => {
      if (!liveState) return;
      liveState.textContent = source.readyState === EventSource.CLOSED ? t('alarmsEnded') : t('alarmsOffline');
    });
  }

  function notifyButton() {
    const state = h('span', { class: 'notify-state', role: 'status' });
    const button = h('button', { type: 'button', id: 'notify-button', text: t('notifyAsk') });
    function update() {
      if (!('Notification' in window)) {
        button.hidden = true;
        state.textContent = t('notifyUnsupported');
        return;
      }
      button.hidden = Notification.permission !== 'default';
      state.textContent = { granted: t('notifyOn'), denied: t('notifyDenied') }[Notification.permission] || '';
    }
    button.addEventListener('click', async () => {
      try {
        await Notification.requestPermission();
      } catch {
        // an old browser with the callback form only
      }
      update();
    });
    update();
    return h('div', { class: 'notify' }, button, state);
  }

  async function page() {
    start();
    unseen = 0;
    updateBadge();
    const { devices } = await api('GET', '/devices');
    names = new Map(devices.map((d) => [d.devId, d.name]));
    const pages = await Promise.all(devices.map((d) => api('GET', `/devices/${encodeURIComponent(d.devId)}/alarms`)
      .then((p) => p.alarms.map((a) => ({ ...a, devId: d.devId })))
      .catch(() => [])));
    // The person may have gone elsewhere while the lists loaded: never draw over that page.
    if (location.hash !== '#/alarms') return;
    const stored = pages.flat();
    // Live alarms already shown are in the store too: keep each once (the stored copy).
    const seen = new Set(stored.map((a) => `${a.devId}|${a.time}|${a.type}`));
    recent = [...recent.filter((a) => !seen.has(`${a.devId}|${a.time}|${a.type}`)), ...stored]
      .sort((a, b) => String(b.time).localeCompare(String(a.time))).slice(0, KEEP);
    const select = h('select', { id: 'alarm-camera' },
      h('option', { value: '', text: t('allCameras') }),
      devices.map((d) => h('option', { value: d.devId, text: `${d.name} (${d.devId})` })));
    select.value = names.has(filter) ? filter : '';
    filter = select.value;
    select.addEventListener('change', () => { filter = select.value; draw(); });
    list = h('ul', { class: 'alarms alarm-list', id: 'alarm-list', 'aria-live': 'polite' });
    liveState = h('p', { class: 'alarms-state', id: 'alarms-state', role: 'status',
      text: source && source.readyState === EventSource.OPEN ? t('alarmsLive') : '' });
    render(h('section', {},
      h('h1', { text: t('alarmsTitle') }),
      notifyButton(),
      h('div', { class: 'field alarm-filter' }, h('label', { for: 'alarm-camera', text: t('cameraFilter') }), select),
      liveState,
      list));
    draw();
  }

  updateBadge();
  return { start, page };
}
