// The shop owner's portal: one page, hash routes (#/login, #/signup, #/devices, #/devices/{id}),
// the JSON API at /api/v1 (errors are application/problem+json), no build step, no inline script.
import { playerControls } from './controls.js';
import { gridPage } from './grid.js';
import { lang, setLang, t } from './i18n.js';
import { installAlarms } from './alarms.js';
import { recordingsPage } from './recordings.js';
import { deviceLinks, settingsPage } from './settings.js';
import { playbackPage, playbackRoute } from './playback.js';
import { thumbnails } from './thumbs.js';
import { deliveredLink, deliveredPage, deliveredRoute, keepLink, takeLink } from './delivered.js';

const API = '/api/v1';
const view = document.getElementById('view');
const notice = document.getElementById('notice');
const logoutButton = document.getElementById('logout');
const langButton = document.getElementById('lang-switch');

let session = null; // {account, csrfToken} or null
let stopLive = null; // closes the live player of the device page

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || String(status));
    this.status = status;
    this.problem = problem;
    this.kind = (problem.type || '').split('/').pop();
  }
}

/** One API call; a problem answer is thrown as ApiError; an expired session sends the person to login. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrfToken;
  const response = await fetch(API + path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') && response.status !== 204 ? await response.json() : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data || {});
    if (response.status === 401 && error.kind === 'session-expired' && session) {
      session = null;
      go('#/login', t('sessionExpired'), 'error');
    }
    throw error;
  }
  return data;
}

// DOM helpers ---------------------------------------------------------------------------------

function h(tag, attributes = {}, ...children) {
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

function field(id, label, attributes) {
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), h('input', { id, ...attributes }));
}

function show(text, kind = 'info') {
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = !text;
}

let carried = null; // [text, kind]: a notice that outlives the next route change

/** Go to *hash*, with a notice shown on the page arrived at (e.g. "session expired" on the login page). */
function go(hash, message = null, kind = 'info') {
  carried = message ? [message, kind] : null;
  if (location.hash === hash) {
    arrive();
  } else {
    location.hash = hash;
  }
}

function arrive() {
  const [text, kind] = carried || ['', 'info'];
  carried = null;
  show(text, kind);
  view.focus({ preventScroll: true }); // a screen reader reads the new page, Tab starts in it (a11y)
  route();
}

function render(...nodes) {
  if (stopLive) {
    stopLive();
    stopLive = null;
  }
  view.replaceChildren(...nodes);
  // Each page its own title (WCAG 2.4.2): what a screen reader announces and a tab shows.
  const heading = view.querySelector('h1');
  document.title = heading && heading.textContent ? `${heading.textContent} · ${t('appName')}` : t('appName');
}

/** The words a person understands for an API error. */
function explain(error) {
  if (!(error instanceof ApiError)) return t('error');
  return {
    'camera-offline': t('cameraOffline'), 'session-expired': t('sessionExpired'),
    'login-failed': t('loginFailed'), 'account-locked': t('locked'), 'too-many-attempts': t('locked'),
    'no-such-device': t('notFound'), 'live-unavailable': error.status === 502 ? t('noPath') : t('liveUnavailable'),
  }[error.kind] || (error.problem.detail ? `${error.problem.title}: ${error.problem.detail}` : error.problem.title)
    || t('error');
}

function translateStatic() {
  document.documentElement.lang = lang();
  document.title = t('appName');
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  langButton.textContent = t('switchTo');
  langButton.setAttribute('lang', lang() === 'en' ? 'zh-CN' : 'en');
  logoutButton.hidden = !session;
}

// Pages ---------------------------------------------------------------------------------------

function loginPage() {
  const form = h('form', { class: 'card', id: 'login-form', novalidate: true },
    h('h1', { text: t('loginTitle') }),
    field('login-account', t('account'), { name: 'account', type: 'tel', autocomplete: 'username',
      inputmode: 'numeric', required: true, maxlength: '11' }),
    field('login-password', t('password'), { name: 'password', type: 'password', autocomplete: 'current-password',
      required: true }),
    h('button', { type: 'submit', class: 'primary', text: t('login') }),
    h('p', {}, h('a', { href: '#/signup', text: t('noAccount') })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      session = await api('POST', '/session', { account: data.get('account'), password: data.get('password') });
      go(takeLink() || '#/devices');
    } catch (error) {
      show(explain(error), 'error');
    }
  });
  render(form);
}

function signupPage() {
  const form = h('form', { class: 'card', id: 'signup-form', novalidate: true },
    h('h1', { text: t('signupTitle') }),
    field('signup-account', t('account'), { name: 'account', type: 'tel', autocomplete: 'username',
      inputmode: 'numeric', required: true, maxlength: '11' }),
    h('button', { type: 'button', id: 'send-code', text: t('sendCode'), onclick: async () => {
      try {
        await api('POST', '/sms-codes', { account: form.elements.account.value });
        show(t('codeSent'));
      } catch (error) {
        show(explain(error), 'error');
      }
    } }),
    field('signup-code', t('smsCode'), { name: 'smsCode', inputmode: 'numeric', autocomplete: 'one-time-code',
      required: true, maxlength: '6' }),
    field('signup-password', t('password'), { name: 'password', type: 'password', autocomplete: 'new-password',
      required: true, minlength: '6', maxlength: '32' }),
    h('button', { type: 'submit', class: 'primary', text: t('signup') }),
    h('p', {}, h('a', { href: '#/login', text: t('haveAccount') })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      await api('POST', '/accounts', data);
      session = await api('POST', '/session', { account: data.account, password: data.password });
      go('#/devices');
    } catch (error) {
      show(explain(error), 'error');
    }
  });
  render(form);
}

function state(online) {
  return h('span', { class: `state ${online ? 'online' : 'offline'}`, text: online ? t('online') : t('offline') });
}

async function devicesPage() {
  const { devices } = await api('GET', '/devices');
  const list = devices.length
    ? h('ul', { class: 'devices', id: 'device-list' }, devices.map((d) => h('li', { 'data-dev-id': d.devId },
      h('a', { href: `#/devices/${encodeURIComponent(d.devId)}` },
        h('span', { class: 'name', text: d.name }), h('span', { class: 'dev-id', text: d.devId })),
      state(d.online), d.shared ? h('span', { class: 'tag', text: t('shared') }) : null)))
    : h('p', { class: 'empty', text: t('noDevices') });
  if (devices.length) thumbnails(list, devices, h, t);
  const add = h('form', { class: 'card', id: 'add-form' },
    h('h2', { text: t('addDevice') }),
    field('add-dev-id', t('devId'), { name: 'devId', inputmode: 'numeric', required: true, maxlength: '11' }),
    field('add-dev-key', t('devKey'), { name: 'devKey', required: true, autocomplete: 'off' }),
    h('button', { type: 'submit', class: 'primary', text: t('add') }));
  add.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('POST', '/devices', Object.fromEntries(new FormData(add)));
      go('#/devices', t('added'));
    } catch (error) {
      show(explain(error), 'error');
    }
  });
  const password = h('form', { class: 'card', id: 'password-form' },
    h('h2', { text: t('changePassword') }),
    field('old-password', t('oldPassword'), { name: 'oldPassword', type: 'password',
      autocomplete: 'current-password', required: true }),
    field('new-password', t('newPassword'), { name: 'newPassword', type: 'password', autocomplete: 'new-password',
      required: true, minlength: '6', maxlength: '32' }),
    h('button', { type: 'submit', text: t('changePassword') }));
  password.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('PUT', '/account/password', Object.fromEntries(new FormData(password)));
      session = null;
      go('#/login', t('passwordChanged'));
    } catch (error) {
      show(explain(error), 'error');
    }
  });
  const close = h('button', { type: 'button', class: 'danger', text: t('closeAccount'), onclick: async () => {
    if (!window.confirm(t('confirmClose'))) return;
    try {
      await api('DELETE', '/account');
      session = null;
      go('#/login', t('accountClosed'));
    } catch (error) {
      show(explain(error), 'error');
    }
  } });
  render(h('section', {}, h('h1', { text: t('devices') }), list,
    devices.length ? h('p', {}, h('a', { href: '#/grid', id: 'grid-link', class: 'button', text: t('grid') })) : null), add,
    h('details', { class: 'card' }, h('summary', { text: t('changePassword') }), password, close));
}

const PTZ = [['up', '▲'], ['left', '◀'], ['stop', '■'], ['right', '▶'], ['down', '▼']];

async function devicePage(devId) {
  let device;
  try {
    device = await api('GET', `/devices/${encodeURIComponent(devId)}`);
  } catch (error) {
    render(h('p', { class: 'error', text: explain(error) }), h('a', { href: '#/devices', text: t('back') }));
    return;
  }
  const known = device.abilitiesKnown;
  const video = h('video', { id: 'live', muted: true, playsinline: true, autoplay: true, controls: true });
  video.muted = true;
  const status = h('p', { id: 'live-state', class: 'live-state', role: 'status', 'aria-live': 'polite' });
  let stream = 'main';

  const streamButtons = ['main', 'sub'].map((name) => {
    const can = !known || device.abilities.streams.includes(name);
    return h('button', { type: 'button', 'data-stream': name, 'aria-pressed': String(name === stream),
      disabled: !can, title: can ? null : t('noStream'), text: t(name === 'main' ? 'mainStream' : 'subStream'),
      onclick: () => { stream = name; updateStreams(); start(); } });
  });
  function updateStreams() {
    for (const b of streamButtons) b.setAttribute('aria-pressed', String(b.dataset.stream === stream));
  }

  const ptzReason = !device.online ? t('cameraOffline') : (known && !device.abilities.ptz ? t('noPtz') : null);
  const pad = h('div', { class: 'ptz', role: 'group', 'aria-label': t('ptz') }, PTZ.map(([direction, glyph]) =>
    h('button', { type: 'button', class: `ptz-${direction}`, 'data-direction': direction, 'aria-label': t(direction),
      disabled: Boolean(ptzReason), title: ptzReason || t(direction), text: glyph,
      onclick: async () => {
        try {
          await api('POST', `/devices/${encodeURIComponent(devId)}/ptz`, { direction, channel: 0 });
        } catch (error) {
          show(explain(error), 'error');
        }
      } })));

  const alarms = h('ul', { class: 'alarms', id: 'alarms' });
  api('GET', `/devices/${encodeURIComponent(devId)}/alarms`).then((page) => {
    alarms.replaceChildren(...(page.alarms.length
      ? page.alarms.map((a) => h('li', {}, h('time', { text: a.time }), ' ', a.description || String(a.type)))
      : [h('li', { class: 'empty', text: t('noAlarms') })]));
  }).catch(() => alarms.replaceChildren(h('li', { class: 'empty', text: t('error') })));

  function setState(key, detail) {
    status.textContent = detail ? `${t(key)} (${detail})` : t(key);
    status.dataset.state = key;
  }

  async function start() {
    if (stopLive) {
      stopLive();
      stopLive = null;
    }
    if (!device.online) {
      setState('cameraOffline');
      return;
    }
    setState('connecting');
    let player;
    try {
      player = await import('./js/player.js');
    } catch {
      setState('playerMissing');
      return;
    }
    const url = `${API}/devices/${encodeURIComponent(devId)}/channels/0/live.mp4?stream=${stream}`;
    const handle = player.playLive(video, url, {
      onState: (what, detail) => {
        if (what === 'playing') setState('playing');
        else if (what === 'connecting') setState('connecting');
        else setState(liveErrorKey(detail), typeof detail === 'string' ? detail : '');
      },
    });
    stopLive = () => handle.close();
  }

  const owned = device.shared ? [] : [sharing(devId)];
  // data-dev-id: which camera this page shows (a test or a script knows the new page from the last one).
  const box = h('div', { class: 'player', 'data-dev-id': devId }, video, status);
  const liveUrl = (name) => `${API}/devices/${encodeURIComponent(devId)}/channels/0/live.mp4?stream=${name}`;
  box.append(playerControls(portal, { video, container: box, devId, liveUrl: () => liveUrl(stream) }));

  render(
    h('p', {}, h('a', { href: '#/devices', text: `← ${t('back')}` })),
    h('h1', {}, device.name, ' ', state(device.online)), deviceLinks(KIT, devId, device), deliveredLink(KIT, devId),
    box,
    h('div', { class: 'controls' },
      h('div', { class: 'streams', role: 'group', 'aria-label': t('stream') }, streamButtons), pad),
    h('section', { class: 'card' }, h('h2', { text: t('alarms') }), alarms), ...owned);
  start();
}

/** The owner's sharing card: who the camera is shared with (each revocable), and a form to share it. */
function sharing(devId) {
  const path = `/devices/${encodeURIComponent(devId)}/shares`;
  const list = h('ul', { class: 'shares', id: 'shares' });
  async function load() {
    try {
      const { accounts } = await api('GET', path);
      list.replaceChildren(...(accounts.length ? accounts.map((account) => h('li', {}, h('span', { text: account }),
        h('button', { type: 'button', class: 'danger', 'aria-label': `${t('unshare')} ${account}`, text: t('unshare'),
          onclick: async () => {
            try {
              await api('DELETE', `${path}/${encodeURIComponent(account)}`);
              load();
            } catch (error) {
              show(explain(error), 'error');
            }
          } })))
        : [h('li', { class: 'empty', text: t('notShared') })]));
    } catch (error) {
      list.replaceChildren(h('li', { class: 'empty', text: explain(error) }));
    }
  }
  const form = h('form', { id: 'share-form' },
    field('share-account', t('shareWith'), { name: 'account', type: 'tel', inputmode: 'numeric', required: true,
      maxlength: '11' }),
    h('button', { type: 'submit', text: t('share') }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('POST', path, { account: form.elements.account.value });
      form.reset();
      show(t('sharedDone'));
      load();
    } catch (error) {
      show(error.kind === 'not-found' ? t('noSuchAccount') : explain(error), 'error');
    }
  });
  load();
  return h('section', { class: 'card' }, h('h2', { text: t('sharing') }), list, form);
}

/** The words for a player error: its detail may carry the problem kind or HTTP status of the live route. */
function liveErrorKey(detail) {
  const text = String(detail && (detail.kind || detail.type || detail.status || detail) || '').toLowerCase();
  if (text.includes('camera-offline') || text.includes('offline')) return 'cameraOffline';
  if (text.includes('502') || text.includes('path')) return 'noPath';
  if (text.includes('401') || text.includes('session')) return 'sessionExpired';
  return 'liveUnavailable';
}

/** What the pages of other modules (settings.js, recordings.js, alarms.js) use of this one. */
const KIT = { api, h, field, show, explain, render, t, go };
/** The grid's and the player controls' kit (grid.js, controls.js): KIT, the online badge, the live player's stop. */
const portal = { ...KIT, state, onLeave: (stop) => { stopLive = stop; } };

// Routing -------------------------------------------------------------------------------------

const alarmsView = installAlarms(KIT);

async function route() {
  translateStatic();
  const hash = location.hash || '#/devices';
  if (hash === '#/login') return loginPage();
  if (hash === '#/signup') return signupPage();
  if (!session) {
    try {
      session = await api('GET', '/session');
    } catch {
      keepLink(hash);
      go('#/login');
      return undefined;
    }
    translateStatic();
  }
  alarmsView.start();
  try {
    if (hash.startsWith('#/grid')) return await gridPage(portal, hash);
    if (hash === '#/alarms') return await alarmsView.page();
    const delivered = deliveredRoute(hash);
    if (delivered) return await deliveredPage(KIT, ...delivered);
    const recording = playbackRoute(hash);
    if (recording) return await playbackPage(...recording, { render, api, explain });
    const match = hash.match(/^#\/devices\/([0-9]+)$/);
    if (match) return await devicePage(match[1]);
    const more = hash.match(/^#\/devices\/([0-9]+)\/(settings|recordings)$/);
    if (more) return await (more[2] === 'settings' ? settingsPage : recordingsPage)(KIT, more[1]);
    return await devicesPage();
  } catch (error) {
    show(explain(error), 'error');
    return undefined;
  }
}

langButton.addEventListener('click', () => {
  setLang(lang() === 'en' ? 'zh-CN' : 'en');
  route();
});
logoutButton.addEventListener('click', async () => {
  try {
    await api('DELETE', '/session');
  } catch {
    // gone already: log in again either way
  }
  session = null;
  go('#/login');
});
window.addEventListener('hashchange', arrive);
route();
