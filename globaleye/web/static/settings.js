// Camera settings (#/devices/{id}/settings): video parameters, Wi-Fi, recording windows, full-day and loop
// recording, reboot and firmware (§8.11-§8.17, §4 items 7 and 11).  What the camera's ability report (32H)
// says it cannot do is greyed out with the reason (§4 item 1); the API refuses it too.
// app.js hands in its helpers as `kit` ({api, h, field, show, explain, render, t, go}): no second copy.

import { picturesCard } from './pictures.js';

const WEEKDAYS = [1, 2, 3, 4, 5, 6, 7];
const CHANNELS = new Map(); // DevID -> the channel chosen on these pages (an NVR has several)
const FRAME_SIZES = ['720P', 'D1', 'CIF'];

/** The words for an API error of these pages (the rules and abilities problems in the page's language). */
export function explainSetting(kit, error) {
  const { t } = kit;
  if (error && error.kind === 'not-supported') return t('notSupported');
  if (error && error.kind === 'rule-violation') {
    const detail = String(error.problem.detail || '');
    if (detail.includes('at most')) return t('ruleFourPerDay');
    if (detail.includes('overlap')) return t('ruleOverlap');
    return `${t('ruleViolation')}: ${detail}`;
  }
  if (error && error.kind === 'camera-refused') return t('cameraRefused');
  return kit.explain(error);
}

/** The links of the device page to its settings and recordings pages. */
export function deviceLinks(kit, devId, device) {
  const { h, t } = kit;
  const id = encodeURIComponent(devId);
  return h('nav', { class: 'device-links', 'aria-label': t('moreForCamera') },
    device && device.shared ? null : h('a', { href: `#/devices/${id}/settings`, id: 'settings-link', class: 'button',
      text: t('settings') }),
    h('a', { href: `#/devices/${id}/recordings`, id: 'recordings-link', class: 'button', text: t('recordings') }));
}

/** The channel of *device* these pages show (0 unless chosen). */
export function channelOf(device) {
  const chosen = CHANNELS.get(device.devId) || 0;
  return device.channels.some((c) => c.channel === chosen) ? chosen : 0;
}

/** A channel picker for a camera of several channels (nothing for one); *again* redraws the page. */
export function channelPicker(kit, device, again) {
  const { h, t } = kit;
  if (device.channels.length < 2) return [];
  const picker = h('select', { id: 'channel', name: 'channel' }, device.channels.map((c) =>
    h('option', { value: String(c.channel), text: c.name, selected: c.channel === channelOf(device) })));
  picker.addEventListener('change', () => {
    CHANNELS.set(device.devId, Number(picker.value));
    again();
  });
  return [h('div', { class: 'field' }, h('label', { for: 'channel', text: t('channel') }), picker)];
}

function card(kit, id, title, ...children) {
  return kit.h('section', { class: 'card setting', id, 'aria-labelledby': `${id}-title` },
    kit.h('h2', { id: `${id}-title`, text: title }), ...children);
}

function select(kit, id, label, name, options, attributes = {}) {
  const { h } = kit;
  return h('div', { class: 'field' }, h('label', { for: id, text: label }),
    h('select', { id, name, ...attributes }, options.map(([value, text, disabled]) =>
      h('option', { value, text, disabled: Boolean(disabled) }))));
}

/** A status line of a card (loading, saved, error), read out by screen readers. */
function status(kit, id) {
  return kit.h('p', { id, class: 'card-status', role: 'status', 'aria-live': 'polite' });
}

function say(node, text, kind = 'info') {
  node.textContent = text;
  node.dataset.kind = kind;
}

/** Disable every control of *root*, each saying why (its title). */
function disableAll(root, reason) {
  for (const control of root.querySelectorAll('input, select, button')) {
    control.disabled = true;
    control.title = reason;
  }
}

export async function settingsPage(kit, devId) {
  const { api, h, t, render } = kit;
  const id = encodeURIComponent(devId);
  const back = h('p', {}, h('a', { href: `#/devices/${id}`, text: `← ${t('backToCamera')}` }));
  render(back, h('p', { class: 'loading', text: t('loading') }));
  let device;
  let abilities;
  try {
    [device, abilities] = await Promise.all([api('GET', `/devices/${id}`), api('GET', `/devices/${id}/abilities`)]);
  } catch (error) {
    render(back, h('p', { class: 'error', text: kit.explain(error) }));
    return;
  }
  const title = h('h1', {}, `${t('settings')} · ${device.name}`);
  if (device.shared) {
    render(back, title, h('p', { class: 'error', id: 'settings-owner-only', text: t('ownerOnly') }));
    return;
  }
  const offline = !device.online;
  const channel = channelOf(device);
  const cards = [videoCard(kit, id, abilities, channel), wifiCard(kit, id), recordingCard(kit, id, abilities, channel),
    picturesCard(kit, id, abilities, channel), maintenanceCard(kit, id)];
  const banner = offline ? [h('p', { class: 'error', id: 'settings-offline', text: t('settingsOffline') })] : [];
  render(back, title, ...banner, ...channelPicker(kit, device, () => settingsPage(kit, devId)),
    ...cards.map((c) => c.node));
  if (offline) {
    for (const c of cards) disableAll(c.node, t('cameraOffline'));
    return;
  }
  for (const c of cards) c.load();
}

// Video parameters ------------------------------------------------------------------------------------

function videoCard(kit, id, abilities, channel) {
  const { api, h, t } = kit;
  const state = status(kit, 'video-status');
  const streams = ['main', 'sub'].map((name) => [name, t(name === 'main' ? 'mainStream' : 'subStream'),
    !abilities.streams[name]]);
  const form = h('form', { id: 'video-form', novalidate: true },
    select(kit, 'video-stream', t('stream'), 'stream', streams),
    select(kit, 'video-frame-size', t('resolution'), 'frameSize', []),
    h('div', { class: 'field' }, h('label', { for: 'video-frame-rate', text: t('frameRate') }),
      h('input', { id: 'video-frame-rate', name: 'frameRate', type: 'number', inputmode: 'numeric',
        min: String(abilities.frameRate.min), max: String(abilities.frameRate.max), required: true })),
    select(kit, 'video-bit-rate', t('bitRate'), 'bitRate',
      abilities.bitRates.map((kbps) => [String(kbps), `${kbps} kbit/s`])),
    select(kit, 'video-rate-type', t('rateType'), 'rateType', [['vbr', t('vbr')], ['cbr', t('cbr')]]),
    h('div', { class: 'check' }, h('input', { id: 'video-audio', name: 'audioInput', type: 'checkbox' }),
      h('label', { for: 'video-audio', text: t('audioInput') })),
    h('button', { type: 'submit', class: 'primary', id: 'video-save', text: t('save') }), state);
  const el = form.elements;

  function sizes(stream) {
    const can = abilities.streams[stream] || FRAME_SIZES;
    el.frameSize.replaceChildren(...FRAME_SIZES.map((size) => h('option', { value: size, disabled: !can.includes(size),
      text: can.includes(size) ? size : `${size} (${t('unsupported')})` })));
  }

  function fill(p) {
    sizes(p.stream);
    if (p.frameSize) el.frameSize.value = p.frameSize;
    if (p.frameRate !== null) el.frameRate.value = String(p.frameRate);
    if (p.bitRate !== null) el.bitRate.value = String(p.bitRate);
    if (p.rateType) el.rateType.value = p.rateType;
    el.audioInput.checked = Boolean(p.audioInput);
    form.dataset.loaded = p.stream; // what the camera reports is on the form
  }

  async function load() {
    say(state, t('loading'));
    form.setAttribute('aria-busy', 'true');
    try {
      fill(await api('GET', `/devices/${id}/channels/${channel}/video?stream=${el.stream.value}`));
      say(state, '');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    } finally {
      form.removeAttribute('aria-busy');
    }
  }
  el.stream.addEventListener('change', load);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const rate = Number(el.frameRate.value);
    if (!Number.isInteger(rate) || rate < abilities.frameRate.min || rate > abilities.frameRate.max) {
      say(state, t('frameRateRange'), 'error');
      el.frameRate.focus();
      return;
    }
    say(state, t('saving'));
    try {
      fill(await api('PUT', `/devices/${id}/channels/${channel}/video`, { stream: el.stream.value,
        frameSize: el.frameSize.value, frameRate: rate, bitRate: Number(el.bitRate.value),
        rateType: el.rateType.value, audioInput: el.audioInput.checked }));
      say(state, t('saved'), 'ok');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  });
  sizes('main');
  return { node: card(kit, 'video-card', t('videoSettings'), form), load };
}

// Wi-Fi --------------------------------------------------------------------------------------------

function wifiCard(kit, id) {
  const { api, h, t } = kit;
  const state = status(kit, 'wifi-status');
  const list = h('fieldset', { id: 'wifi-list', class: 'wifi-list' }, h('legend', { text: t('wifiNetworks') }));
  const password = h('input', { id: 'wifi-password', name: 'password', type: 'password', autocomplete: 'off',
    maxlength: '64' });
  const form = h('form', { id: 'wifi-form', novalidate: true }, list,
    h('button', { type: 'button', id: 'wifi-scan', text: t('wifiScan'), onclick: () => load() }),
    h('div', { class: 'field' }, h('label', { for: 'wifi-password', text: t('wifiPassword') }), password),
    h('button', { type: 'submit', class: 'primary', id: 'wifi-join', text: t('wifiJoin') }), state);
  let hotspots = [];
  // An open network needs no password: the field is greyed out for it, saying why.
  list.addEventListener('change', () => {
    const chosen = form.querySelector('input[name=ssid]:checked');
    const spot = chosen && hotspots.find((s) => s.ssid === chosen.value);
    const open = Boolean(spot && spot.security === 'none');
    password.disabled = open;
    password.title = open ? t('wifiOpen') : '';
    if (open) password.value = '';
  });

  async function load() {
    say(state, t('wifiScanning'));
    try {
      ({ hotspots } = await api('GET', `/devices/${id}/wifi`));
      list.replaceChildren(h('legend', { text: t('wifiNetworks') }), ...(hotspots.length
        ? hotspots.map((spot, i) => h('div', { class: 'check' },
          h('input', { type: 'radio', name: 'ssid', id: `wifi-${i}`, value: spot.ssid, checked: spot.inUse }),
          h('label', { for: `wifi-${i}` }, spot.ssid, ' ',
            h('span', { class: 'muted', text: `${t('signal')} ${spot.signal}% · ${t(`security_${spot.security.replace(/-/g, '_')}`)}` }),
            spot.inUse ? h('span', { class: 'tag', text: ` ${t('wifiInUse')}` }) : null)))
        : [h('p', { class: 'empty', text: t('wifiNone') })]));
      say(state, '');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = form.querySelector('input[name=ssid]:checked');
    if (!chosen) {
      say(state, t('wifiChoose'), 'error');
      return;
    }
    const spot = hotspots.find((s) => s.ssid === chosen.value);
    say(state, t('saving'));
    try {
      await api('PUT', `/devices/${id}/wifi`, { ssid: spot.ssid, security: spot.security,
        password: password.value });
      say(state, t('wifiJoining'), 'ok');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    } finally {
      password.value = ''; // the password is not kept on the page
    }
  });
  return { node: card(kit, 'wifi-card', t('wifi'), form), load };
}

// Recording: windows, full-day and loop recording ----------------------------------------------------

function recordingCard(kit, id, abilities, channel) {
  const { api, h, t } = kit;
  const state = status(kit, 'recording-status');
  const canRecord = !abilities.known || abilities.localStore || abilities.cloudStore;
  const canLoop = !abilities.known || abilities.localStore;
  const windows = h('ul', { id: 'record-windows', class: 'windows' });
  const full = h('input', { id: 'full-day', type: 'checkbox', role: 'switch', disabled: !canRecord,
    title: canRecord ? null : t('noStorage') });
  const loop = h('input', { id: 'loop-recording', type: 'checkbox', role: 'switch', disabled: !canLoop,
    title: canLoop ? null : t('noLocalStorage') });
  const storages = [['local', t('storageLocal'), abilities.known && !abilities.localStore],
    ['cloud', t('storageCloud'), abilities.known && !abilities.cloudStore]];
  const add = h('form', { id: 'window-form', novalidate: true },
    h('fieldset', { class: 'weekdays' }, h('legend', { text: t('weekdays') }), WEEKDAYS.map((day) =>
      h('span', { class: 'check' }, h('input', { type: 'checkbox', name: 'week', value: String(day), id: `week-${day}` }),
        h('label', { for: `week-${day}`, text: t(`week${day}`) })))),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'window-start', text: t('startTime') }),
        h('input', { id: 'window-start', name: 'start', type: 'time', required: true, value: '08:00' })),
      h('div', { class: 'field' }, h('label', { for: 'window-end', text: t('endTime') }),
        h('input', { id: 'window-end', name: 'end', type: 'time', required: true, value: '20:00' }))),
    select(kit, 'window-storage', t('storage'), 'storage', storages),
    select(kit, 'window-stream', t('stream'), 'stream', [['main', t('mainStream')], ['sub', t('subStream')]]),
    h('p', { class: 'hint', text: t('windowRules') }),
    h('button', { type: 'submit', class: 'primary', id: 'window-add', text: t('addWindow') }));
  if (abilities.known && !abilities.localStore && abilities.cloudStore) add.elements.storage.value = 'cloud';

  function show(list) {
    windows.replaceChildren(...(list.length ? list.map((w) => h('li', { 'data-window-id': String(w.id) },
      h('span', { text: `${t(`week${w.week}`)} ${w.start}–${w.end}` }),
      h('span', { class: 'muted', text: ` ${t(w.storage === 'cloud' ? 'storageCloud' : 'storageLocal')} · ${
        t(w.stream === 'sub' ? 'subStream' : 'mainStream')}` }),
      h('button', { type: 'button', class: 'danger', 'aria-label': `${t('delete')} ${t(`week${w.week}`)} ${w.start}–${w.end}`,
        text: t('delete'), onclick: async () => {
          try {
            await api('DELETE', `/devices/${id}/channels/${channel}/record-windows`, { id: w.id });
            say(state, t('deleted'), 'ok');
            await loadWindows();
          } catch (error) {
            say(state, explainSetting(kit, error), 'error');
          }
        } })))
      : [h('li', { class: 'empty', text: t('noWindows') })]));
  }

  async function loadWindows() {
    show((await api('GET', `/devices/${id}/channels/${channel}/record-windows`)).windows);
  }

  async function load() {
    if (!canRecord) {
      say(state, t('noStorage'));
      disableAll(add, t('noStorage'));
      windows.replaceChildren(h('li', { class: 'empty', text: t('noStorage') }));
      return;
    }
    say(state, t('loading'));
    try {
      await loadWindows();
      full.checked = (await api('GET', `/devices/${id}/channels/${channel}/full-day-recording`)).enabled;
      if (canLoop) loop.checked = (await api('GET', `/devices/${id}/loop-recording`)).enabled;
      say(state, '');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  }

  async function toggle(input, path) {
    say(state, t('saving'));
    try {
      input.checked = (await api('PUT', path, { enabled: input.checked })).enabled;
      say(state, t('saved'), 'ok');
    } catch (error) {
      input.checked = !input.checked;
      say(state, explainSetting(kit, error), 'error');
    }
  }
  full.addEventListener('change', () => toggle(full, `/devices/${id}/channels/${channel}/full-day-recording`));
  loop.addEventListener('change', () => toggle(loop, `/devices/${id}/loop-recording`));

  add.addEventListener('submit', async (event) => {
    event.preventDefault();
    const days = [...add.querySelectorAll('input[name=week]:checked')].map((box) => Number(box.value));
    const start = add.elements.start.value;
    let end = add.elements.end.value;
    if (end === '00:00') end = '24:00'; // until midnight
    if (!days.length) {
      say(state, t('chooseWeekday'), 'error');
      return;
    }
    if (!start || !end || start >= end) {
      say(state, t('startBeforeEnd'), 'error');
      return;
    }
    say(state, t('saving'));
    try {
      const answer = await api('POST', `/devices/${id}/channels/${channel}/record-windows`, { windows: days.map((week) => ({
        week, start, end, storage: add.elements.storage.value, stream: add.elements.stream.value })) });
      show(answer.windows);
      say(state, t('saved'), 'ok');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  });

  const node = card(kit, 'recording-card', t('recordingSettings'),
    h('div', { class: 'check' }, full, h('label', { for: 'full-day', text: t('fullDay') })),
    h('div', { class: 'check' }, loop, h('label', { for: 'loop-recording', text: t('loopRecording') })),
    canLoop ? null : h('p', { class: 'hint', text: t('noLocalStorage') }),
    h('h3', { text: t('recordWindows') }), windows, add, state);
  return { node, load };
}

// Reboot and firmware -------------------------------------------------------------------------------

/** A button that asks again in the page (not a blocking dialog) before *action*. */
function confirmed(kit, id, label, question, action) {
  const { h, t } = kit;
  const ask = h('div', { class: 'confirm', id: `${id}-confirm`, hidden: true, role: 'alertdialog',
    'aria-label': question },
  h('p', { text: question }),
  h('button', { type: 'button', class: 'danger', id: `${id}-yes`, text: t('confirm'), onclick: async () => {
    ask.hidden = true;
    button.disabled = false;
    await action();
  } }),
  h('button', { type: 'button', id: `${id}-no`, text: t('cancel'), onclick: () => {
    ask.hidden = true;
    button.disabled = false;
    button.focus();
  } }));
  const button = h('button', { type: 'button', class: 'danger', id, text: label, onclick: () => {
    ask.hidden = false;
    button.disabled = true;
    ask.querySelector('button').focus();
  } });
  return [button, ask];
}

function maintenanceCard(kit, id) {
  const { api, h, t } = kit;
  const state = status(kit, 'maintenance-status');
  const version = h('p', { id: 'firmware-version', text: t('loading') });
  const [reboot, rebootAsk] = confirmed(kit, 'reboot', t('reboot'), t('confirmReboot'), async () => {
    say(state, t('saving'));
    try {
      await api('POST', `/devices/${id}/reboot`);
      say(state, t('rebooting'), 'ok');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  });
  const [upgrade, upgradeAsk] = confirmed(kit, 'upgrade', t('upgrade'), t('confirmUpgrade'), async () => {
    say(state, t('saving'));
    try {
      const answer = await api('POST', `/devices/${id}/firmware/upgrade`);
      say(state, answer.upgrading ? `${t('upgrading')} ${answer.newest}` : t('upToDate'), 'ok');
    } catch (error) {
      say(state, explainSetting(kit, error), 'error');
    }
  });

  async function load() {
    try {
      const firmware = await api('GET', `/devices/${id}/firmware`);
      version.textContent = `${t('firmwareCurrent')}: ${firmware.current}` + (firmware.upgradable
        ? ` · ${t('firmwareNewest')}: ${firmware.newest}` : ` · ${t('upToDate')}`);
      upgrade.disabled = !firmware.upgradable;
      upgrade.title = firmware.upgradable ? '' : t('upToDate');
    } catch (error) {
      version.textContent = explainSetting(kit, error);
    }
  }
  return { node: card(kit, 'maintenance-card', t('maintenance'), version,
    h('div', { class: 'row' }, reboot, upgrade), rebootAsk, upgradeAsk, state), load };
}
