// Pictures delivered to the owner (§7.5.24 FTP pictures, 36H §7.5.27; issue 12): #/devices/{id}/pictures and
// #/devices/{id}/pictures/{name} (the link of the SMS).  The channel's stored pictures newest first, paged,
// their bytes through the JSON API (same origin: the CSP's img-src 'self'); the 36H notices whose file never
// arrived, as missing; a new picture appears at the top at once, pushed by the server ('picture' events on
// /api/v1/events, Server-Sent Events), while the page is open.  app.js's kit ({api, h, t, render, ...}).
import { t } from './i18n.js';

const API = '/api/v1';
const EVENTS = '/api/v1/events';
const SIZE = 12;

/** [devId, name] of a pictures route, or null. */
export function deliveredRoute(hash) {
  const match = hash.match(/^#\/devices\/([0-9]+)\/pictures(?:\/([A-Za-z0-9_.-]{1,128}))?$/);
  return match ? [match[1], match[2] || ''] : null;
}

let opened = ''; // a pictures link opened before login (the SMS's): where the login goes, once

/** Keep *hash* for after the login when it is a pictures link (the SMS's link needs the owner's login). */
export function keepLink(hash) {
  opened = deliveredRoute(hash) ? hash : '';
}

/** The pictures link kept before the login ('' if none), forgotten once taken. */
export function takeLink() {
  const hash = opened;
  opened = '';
  return hash;
}

/** The device page's link to its pictures. */
export function deliveredLink(kit, devId) {
  return kit.h('a', { href: `#/devices/${encodeURIComponent(devId)}/pictures`, id: 'pictures-link',
    class: 'button', text: t('deliveredNav') });
}

/** "20261202091500" -> "2026-12-02 09:15:00" (the name's time: Beijing, as the camera took it). */
function shotTime(text) {
  const s = String(text || '');
  if (!/^[0-9]{14}$/.test(s)) return s;
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)} ${s.slice(8, 10)}:${s.slice(10, 12)}:${s.slice(12, 14)}`;
}

function pictureUrl(devId, name) {
  return `${API}/devices/${encodeURIComponent(devId)}/delivered-pictures/${encodeURIComponent(name)}`;
}

let source = null; // this page's event stream (closed when the page is left)

function closeStream() {
  if (source) source.close();
  source = null;
}

/** The pictures page of camera *devId*; *selected*: a picture's name to show large (the SMS's link). */
export async function deliveredPage(kit, devId, selected = '') {
  const { api, h, render } = kit;
  closeStream();
  const device = await api('GET', `/devices/${encodeURIComponent(devId)}`);
  const channels = device.channels && device.channels.length ? device.channels : [{ channel: 0, name: '' }];
  let channel = channels[0].channel;
  if (selected) {
    const named = selected.match(/^[0-9]+_([0-9]+)_/);
    if (named && channels.some((c) => c.channel === Number(named[1]))) channel = Number(named[1]);
  }
  let pageNo = 1;
  const state = h('p', { id: 'delivered-state', class: 'card-status', role: 'status', 'aria-live': 'polite' });
  const list = h('ul', { id: 'delivered-list', class: 'delivered', 'aria-label': t('deliveredTitle') });
  const missing = h('ul', { id: 'delivered-missing', class: 'delivered-missing' });
  const viewer = h('figure', { id: 'delivered-view', class: 'delivered-view', hidden: true });
  const previous = h('button', { type: 'button', id: 'delivered-prev', text: t('deliveredNewer') });
  const next = h('button', { type: 'button', id: 'delivered-next', text: t('deliveredOlder') });
  const pager = h('div', { class: 'row delivered-pager' }, previous, next);

  function show(name) {
    viewer.replaceChildren(
      h('img', { src: pictureUrl(devId, name), alt: `${t('deliveredPicture')} ${shotTime(name.split('_')[2])}` }),
      h('figcaption', { text: name }));
    viewer.hidden = false;
  }

  function item(picture, live = false) {
    const li = h('li', { class: live ? 'picture new' : 'picture', 'data-name': picture.name },
      h('a', { href: `#/devices/${encodeURIComponent(devId)}/pictures/${encodeURIComponent(picture.name)}`,
        onclick: (event) => { event.preventDefault(); show(picture.name); } },
      h('img', { src: pictureUrl(devId, picture.name), loading: 'lazy', alt: `${t('deliveredPicture')} ${shotTime(picture.time)}` })),
      h('time', { text: shotTime(picture.time) }),
      h('span', { class: 'delivered-source', text: picture.source === 'ftp' ? t('deliveredFtp') : t('deliveredCloud') }));
    if (live) setTimeout(() => li.classList.remove('new'), 10000);
    return li;
  }

  async function load() {
    const answer = await api('GET', `/devices/${encodeURIComponent(devId)}/channels/${channel}/delivered-pictures`
      + `?page=${pageNo}&size=${SIZE}`);
    if (!list.isConnected) return;
    list.replaceChildren(...(answer.pictures.length ? answer.pictures.map((p) => item(p))
      : [h('li', { class: 'empty', text: t('deliveredNone') })]));
    missing.replaceChildren(...answer.missing.map((m) => h('li', { class: 'missing', 'data-name': m.name },
      h('time', { text: shotTime(m.time) }), ' ', h('span', { text: t('deliveredMissing') }))));
    missing.hidden = answer.missing.length === 0;
    previous.disabled = pageNo <= 1;
    next.disabled = pageNo * SIZE >= answer.total;
  }

  function arrived(event) {
    if (!list.isConnected) { closeStream(); return; }
    const picture = JSON.parse(event.data);
    if (picture.devId !== devId || picture.channel !== channel || pageNo !== 1) return;
    if (list.querySelector(`li[data-name="${CSS.escape(picture.name)}"]`)) return;
    const empty = list.querySelector('.empty');
    if (empty) empty.remove();
    const shot = picture.name.split('_')[2] || '';
    list.prepend(item({ name: picture.name, time: shot.slice(0, 14), source: 'ftp' }, true));
    while (list.children.length > SIZE) list.lastElementChild.remove();
  }

  const select = h('select', { id: 'delivered-channel' },
    channels.map((c) => h('option', { value: String(c.channel), text: c.name || `${t('channel')} ${c.channel + 1}` })));
  select.value = String(channel);
  select.addEventListener('change', () => { channel = Number(select.value); pageNo = 1; load().catch(fail); });
  previous.addEventListener('click', () => { pageNo = Math.max(1, pageNo - 1); load().catch(fail); });
  next.addEventListener('click', () => { pageNo += 1; load().catch(fail); });

  function fail(error) {
    state.textContent = kit.explain(error);
  }

  render(
    h('p', {}, h('a', { href: `#/devices/${encodeURIComponent(devId)}`, text: `← ${t('back')}` })),
    h('h1', { text: `${t('deliveredTitle')} · ${device.name}` }),
    ...(channels.length > 1 ? [h('div', { class: 'field' },
      h('label', { for: 'delivered-channel', text: t('channel') }), select)] : []),
    state, viewer, list, pager, missing);
  if (selected) show(selected);
  await load();
  source = new EventSource(EVENTS);
  source.addEventListener('picture', arrived);
  source.addEventListener('open', () => { if (list.isConnected) state.textContent = t('deliveredLive'); });
  source.addEventListener('session', closeStream);
  window.addEventListener('hashchange', () => { if (!list.isConnected) closeStream(); }, { once: true });
}
