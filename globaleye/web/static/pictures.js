// Picture (snapshot) policies on the settings page (§4 "picture policies"; §7.5.24-§7.5.26, 75H-77H):
// list, add, delete.  FTP is one snapshot a day at a time (the platform sets end = start, interval 0);
// the cloud takes a picture every interval seconds between start and end, every day (75H has no weekday).
// Cloud is greyed out when the camera's ability report (32H) has no cloud storage (§4 item 1).
// settings.js puts the card on its page; app.js's `kit` ({api, h, t, ...}) is handed in.

function say(node, text, kind = 'info') {
  node.textContent = text;
  node.dataset.kind = kind;
}

/** The words for an API error of this card (the platform's rules in the page's language). */
function explainPicture(kit, error) {
  const { t } = kit;
  const detail = String((error && error.problem && error.problem.detail) || '');
  if (error && error.kind === 'rule-violation') {
    if (detail.includes('overlap')) return t('pictureRuleOverlap');
    if (detail.includes('two snapshots')) return t('pictureRuleSameTime');
    if (detail.includes('at most')) return t('pictureRuleMax');
    if (detail.includes('Interval')) return t('pictureRuleInterval');
    return `${t('ruleViolation')}: ${detail}`;
  }
  if (error && error.kind === 'not-supported') return t('pictureNoCloud');
  return kit.explain(error);
}

/** The picture-policy card of camera *id*'s settings page: `{node, load}` as the other cards. */
export function picturesCard(kit, id, abilities, channel) {
  const { api, h, t } = kit;
  const noCloud = Boolean(abilities.known && !abilities.cloudStore);
  const state = h('p', { id: 'picture-status', class: 'card-status', role: 'status', 'aria-live': 'polite' });
  const list = h('ul', { id: 'picture-policies', class: 'windows', 'aria-label': t('picturePolicies') });
  const storage = h('select', { id: 'picture-storage', name: 'storage' },
    h('option', { value: 'ftp', text: t('pictureFtp') }),
    h('option', { value: 'cloud', text: noCloud ? `${t('storageCloud')} (${t('unsupported')})` : t('storageCloud'),
      disabled: noCloud }));
  const start = h('input', { id: 'picture-start', name: 'start', type: 'time', required: true, value: '09:00' });
  const end = h('input', { id: 'picture-end', name: 'end', type: 'time', value: '18:00' });
  const interval = h('input', { id: 'picture-interval', name: 'interval', type: 'number', inputmode: 'numeric',
    min: '1', max: '86400', value: '600' });
  const cloudOnly = h('div', { class: 'row', id: 'picture-window' },
    h('div', { class: 'field' }, h('label', { for: 'picture-end', text: t('pictureEnd') }), end),
    h('div', { class: 'field' }, h('label', { for: 'picture-interval', text: t('pictureInterval') }), interval));
  const form = h('form', { id: 'picture-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'picture-storage', text: t('pictureStorage') }), storage),
    h('div', { class: 'field' }, h('label', { for: 'picture-start', text: t('pictureStart') }), start),
    cloudOnly,
    h('p', { class: 'hint', id: 'picture-hint', text: t('pictureRules') }),
    h('button', { type: 'submit', class: 'primary', id: 'picture-add', text: t('addPicturePolicy') }));

  // FTP takes only a time of day: the window and interval are the cloud's.
  function kind() {
    const ftp = storage.value === 'ftp';
    cloudOnly.hidden = ftp;
    end.required = !ftp;
    interval.required = !ftp;
  }
  storage.addEventListener('change', kind);
  kind();

  function describe(p) {
    return p.storage === 'ftp' ? `${t('pictureFtp')} · ${t('pictureDailyAt')} ${p.start}`
      : `${t('storageCloud')} · ${p.start}–${p.end} · ${t('pictureEvery')} ${p.interval} s`;
  }

  function show(policies) {
    list.replaceChildren(...(policies.length ? policies.map((p) => h('li', { 'data-picture-id': String(p.id) },
      h('span', { text: describe(p) }),
      h('button', { type: 'button', class: 'danger', 'aria-label': `${t('delete')} ${describe(p)}`, text: t('delete'),
        onclick: async () => {
          say(state, t('saving'));
          try {
            await api('DELETE', `/devices/${id}/channels/${channel}/picture-policies`, { id: p.id });
            await load();
            say(state, t('deleted'), 'ok');
          } catch (error) {
            say(state, explainPicture(kit, error), 'error');
          }
        } })))
      : [h('li', { class: 'empty', text: t('noPicturePolicies') })]));
  }

  async function load() {
    say(state, t('loading'));
    try {
      show((await api('GET', `/devices/${id}/channels/${channel}/picture-policies`)).policies);
      say(state, '');
    } catch (error) {
      say(state, explainPicture(kit, error), 'error');
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const policy = { start: start.value };
    if (!start.value) {
      say(state, t('pictureChooseTime'), 'error');
      start.focus();
      return;
    }
    if (storage.value === 'cloud') {
      policy.end = end.value === '00:00' ? '24:00' : end.value; // until midnight
      policy.interval = Number(interval.value);
      if (!end.value || policy.start >= policy.end) {
        say(state, t('startBeforeEnd'), 'error');
        end.focus();
        return;
      }
      if (!Number.isInteger(policy.interval) || policy.interval < 1 || policy.interval > 86400) {
        say(state, t('pictureRuleInterval'), 'error');
        interval.focus();
        return;
      }
    }
    say(state, t('saving'));
    try {
      show((await api('POST', `/devices/${id}/channels/${channel}/picture-policies`,
        { storage: storage.value, policies: [policy] })).policies);
      say(state, t('saved'), 'ok');
    } catch (error) {
      say(state, explainPicture(kit, error), 'error');
    }
  });

  const node = h('section', { class: 'card setting', id: 'picture-card', 'aria-labelledby': 'picture-card-title' },
    h('h2', { id: 'picture-card-title', text: t('picturePolicies') }), list, form, state);
  return { node, load };
}
