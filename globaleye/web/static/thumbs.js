// The device list's pictures (issue 11, §2 item 1 "device list with online state and a recent
// picture"): each online camera's latest picture (GET .../snapshot.jpg, the sub stream's last IDR
// as JPEG, kept 60 s by the platform), refreshed every 60 s while the list is shown.  An offline
// camera, or a picture that does not come, shows a placeholder; a platform that cannot decode
// pictures (501: no PyAV) shows none at all.

const API = '/api/v1';
const REFRESH_MS = 60000;

/**
 * Put a picture in front of each camera of the device list.
 * @param {HTMLElement} list   the <ul id="device-list">, one <li data-dev-id> per device
 * @param {object[]} devices   GET /devices's devices ({devId, name, online, channels})
 * @param {function} h         app.js's element maker
 * @param {function} t         i18n.js's words
 */
export function thumbnails(list, devices, h, t) {
  const thumbs = [];
  for (const d of devices) {
    const li = list.querySelector(`li[data-dev-id="${CSS.escape(d.devId)}"]`);
    if (!li) continue;
    const channel = d.channels && d.channels.length ? d.channels[0].channel : 0;
    const holder = h('a', { href: `#/devices/${encodeURIComponent(d.devId)}`, class: 'thumb', tabindex: '-1' });
    li.prepend(holder);
    const thumb = { d, channel, holder, img: null };
    thumbs.push(thumb);
    if (d.online) load(thumb); else placeholder(thumb, t('offline'));
  }

  function url(thumb) {
    // The minute in the query: the browser's cache (max-age up to 60 s) answers within the minute.
    return `${API}/devices/${encodeURIComponent(thumb.d.devId)}/channels/${thumb.channel}/snapshot.jpg`
      + `?stream=sub&m=${Math.floor(Date.now() / REFRESH_MS)}`;
  }

  function placeholder(thumb, text) {
    thumb.img = null;
    thumb.holder.replaceChildren(h('span', { class: 'thumb-none', text }));
    thumb.holder.dataset.state = 'none';
  }

  function load(thumb) {
    // A refresh changes the src of the picture shown: the browser keeps the old one until the
    // new one has come.
    if (!thumb.img) {
      const img = h('img', { alt: thumb.d.name || thumb.d.devId, loading: 'lazy', decoding: 'async',
        width: '352', height: '288' });
      img.addEventListener('load', () => { thumb.holder.dataset.state = 'loaded'; });
      img.addEventListener('error', async () => {
        if (thumb.img !== img) return;
        placeholder(thumb, t('thumbUnavailable'));
        // The <img> cannot tell why: one look at the status, to give up when pictures are off (501).
        try {
          const answer = await fetch(img.src, { credentials: 'same-origin' });
          if (answer.status === 501) stop(true);
        } catch {
          // the network: the next refresh tries again
        }
      });
      thumb.img = img;
      thumb.holder.replaceChildren(img);
      thumb.holder.dataset.state = 'loading';
    }
    thumb.img.src = url(thumb);
  }

  const timer = setInterval(() => {
    if (!list.isConnected) return stop(false);
    for (const thumb of thumbs) if (thumb.d.online) load(thumb);
    return undefined;
  }, REFRESH_MS);

  function stop(off) {
    clearInterval(timer);
    if (off) {
      for (const thumb of thumbs) thumb.holder.remove();
      list.classList.add('no-thumbs');
    }
  }
}
