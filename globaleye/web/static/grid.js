// The grid page (#/grid, #/grid/1, #/grid/4, #/grid/9): several cameras at once (issue 11).
//
// Every online camera of the page plays over ONE HTTP answer (js/mux.js, GET /api/v1/live/mux.bin),
// so nine cameras do not use up the browser's six connections per origin.  1 camera: its main
// stream; 4 or 9: sub streams (less bandwidth; the main one where a camera has no sub).  A tile
// shows the camera's name, online state and what its player is doing; a click opens the camera's
// page.  Offline cameras get a placeholder and are not asked for.
import { t } from './i18n.js';

const LAYOUTS = [1, 4, 9];
const KEY = 'ge.grid';
const RETRY_MS = 5000;

function storedLayout() {
  try {
    const n = Number(localStorage.getItem(KEY));
    return LAYOUTS.includes(n) ? n : 4;
  } catch {
    return 4;
  }
}

function storeLayout(n) {
  try {
    localStorage.setItem(KEY, String(n));
  } catch {
    // private mode: the choice lasts for this page only
  }
}

/** The player state of a tile in words (the stream's problem for an error). */
function stateText(name, detail) {
  if (name === 'playing') return t('playing');
  if (name === 'connecting') return t('connecting');
  const status = detail && detail.status;
  if (status === 503 && /offline/i.test(detail.title || '')) return t('cameraOffline');
  if (status === 404) return t('notFound');
  if (status === 502 && /path/i.test(detail.title || '')) return t('noPath');
  return t('liveUnavailable');
}

/**
 * Render the grid page.
 * @param {object} portal  app.js's helpers: {api, h, render, show, explain, state, onLeave}
 * @param {string} hash    #/grid[/<layout>][/<page>]
 */
export async function gridPage(portal, hash) {
  const { api, h, render, explain, state, onLeave } = portal;
  const match = hash.match(/^#\/grid(?:\/([0-9]+))?(?:\/([0-9]+))?$/);
  const layout = match && LAYOUTS.includes(Number(match[1])) ? Number(match[1]) : storedLayout();
  storeLayout(layout);
  const { devices } = await api('GET', '/devices');
  const cameras = devices.flatMap((d) => d.channels.map((c) => ({
    devId: d.devId, channel: c.channel, name: d.channels.length > 1 ? c.name : d.name, online: d.online,
    streams: d.abilitiesKnown ? d.abilities.streams : ['main', 'sub'],
  })));
  const pages = Math.max(1, Math.ceil(cameras.length / layout));
  const page = Math.min(pages, Math.max(1, Number(match && match[2]) || 1));
  const shown = cameras.slice((page - 1) * layout, page * layout);

  const layoutButtons = h('div', { class: 'layouts', role: 'group', 'aria-label': t('gridLayout') },
    LAYOUTS.map((n) => h('a', { href: `#/grid/${n}`, class: 'button', 'data-layout': String(n),
      'aria-current': n === layout ? 'page' : null, 'aria-label': t(`layout${n}`), text: n === 1 ? '1' : `${n}` })));
  const pager = pages > 1 ? h('div', { class: 'pager' },
    h('a', { href: `#/grid/${layout}/${page - 1}`, class: 'button', 'aria-label': t('prevPage'),
      'aria-disabled': String(page === 1), hidden: page === 1 ? true : null, text: '‹' }),
    h('span', { text: `${page} / ${pages}` }),
    h('a', { href: `#/grid/${layout}/${page + 1}`, class: 'button', 'aria-label': t('nextPage'),
      hidden: page === pages ? true : null, text: '›' })) : null;

  const tiles = shown.map((camera) => {
    const stream = layout === 1 || !camera.streams.includes('sub') ? 'main' : 'sub';
    const label = h('span', { class: 'tile-state', role: 'status', 'aria-live': 'polite' });
    const media = camera.online
      ? h('video', { muted: true, playsinline: true, autoplay: true, 'aria-label': camera.name })
      : h('div', { class: 'tile-offline', text: t('tileOffline') });
    if (camera.online) media.muted = true;
    const tile = h('a', { class: `tile${camera.online ? '' : ' offline'}`,
      href: `#/devices/${encodeURIComponent(camera.devId)}`, 'data-dev-id': camera.devId,
      'data-stream': stream, 'aria-label': `${camera.name} — ${t('openCamera')}` },
    media,
    h('span', { class: 'tile-bar' }, h('span', { class: 'tile-name', text: camera.name }), state(camera.online),
      label));
    const setState = (name, detail) => {
      tile.dataset.state = name;
      label.textContent = camera.online ? stateText(name, detail) : '';
    };
    setState(camera.online ? 'connecting' : 'offline');
    return { camera, stream, video: media, tile, setState };
  });

  const grid = h('div', { class: `grid layout-${layout}`, id: 'grid' }, tiles.map((x) => x.tile));
  render(h('section', {},
    h('div', { class: 'grid-head' }, h('h1', { text: t('grid') }), layoutButtons, pager),
    cameras.length ? grid : h('p', { class: 'empty', text: t('noDevices') })));

  const live = tiles.filter((x) => x.camera.online);
  if (!live.length) return;
  let player = null;
  let retry = null;
  let left = false;
  // A stream lost or silent (502, 504), or the whole answer ended: the page is made again a few
  // seconds later, with the device list of then (a camera gone offline gets its placeholder).
  const again = () => {
    if (retry === null && !left) retry = setTimeout(() => { if (!left) gridPage(portal, hash); }, RETRY_MS);
  };
  for (const x of live) {
    const shown = x.setState;
    x.setState = (name, detail) => {
      shown(name, detail);
      if (name === 'error' && detail && (detail.status === 502 || detail.status === 504)) again();
    };
  }
  async function start() {
    let mux;
    try {
      mux = await import('./js/mux.js');
    } catch {
      live.forEach((x) => x.setState('error', { title: t('playerMissing') }));
      return;
    }
    if (left) return;
    const query = live.map((x) => `s=${encodeURIComponent(`${x.camera.devId}:${x.camera.channel}:${x.stream}`)}`);
    player = mux.playMux(`/api/v1/live/mux.bin?${query.join('&')}`,
      live.map((x) => ({ video: x.video, onState: x.setState })),
      { onEnd: again });
  }
  onLeave(() => {
    left = true;
    if (retry !== null) clearTimeout(retry);
    if (player) player.close();
  });
  start().catch((error) => portal.show(explain(error), 'error'));
}
