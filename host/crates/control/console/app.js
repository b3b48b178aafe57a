// The console's shell: login with a token, the pages that token may use, navigation by
// the URL fragment (#tenants; never the token), and the pollers of the page shown.
import { api, token, setToken, forget } from './api.js';
import { h, showError, showInfo } from './dom.js';
import * as tenants from './tenants.js';
import * as users from './users.js';
import * as plugins from './plugins.js';
import * as meetings from './meetings.js';
import * as metrics from './metrics.js';
import * as node from './node.js';

// [id, title, module, operator only]
const PAGES = [
  ['tenants', 'Tenants', tenants, false],
  ['users', 'Users & sessions', users, false],
  ['plugins', 'Plugins', plugins, false],
  ['meetings', 'Meetings', meetings, false],
  ['metrics', 'Metrics', metrics, true],
  ['node', 'Node', node, true],
];

let me = null;
let timers = [];
let shown = 0; // generation of the latest show(): an older one still loading is dropped

const $ = (id) => document.getElementById(id);

function visiblePages() {
  return PAGES.filter(([, , , op]) => !op || me.principal === 'operator');
}

/** What pages get: who is logged in, the tenants in reach, and a poller (a page
 * superseded while it loads starts none). */
function context(generation) {
  return {
    me,
    operator: me.principal === 'operator',
    /** Tenant names this token reaches (the operator: every tenant). */
    async tenantNames() {
      if (me.principal !== 'operator') return [me.tenant];
      const r = await api('GET', '/api/v1/tenants');
      return r.tenants.map((t) => t.name);
    },
    /** Domains this token reaches. */
    async domains() {
      if (me.principal !== 'operator') return me.domains;
      const r = await api('GET', '/api/v1/tenants');
      return r.tenants.flatMap((t) => t.domains);
    },
    every(ms, fn) {
      if (generation !== shown) return;
      const id = setInterval(() => fn().catch((x) => showError(x.message)), ms);
      timers.push(id);
    },
    reload: () => show(true),
  };
}

/** Draws the page the address names; the page already drawn is left as it is (its
 * pollers keep it fresh) unless `force`. `data-page` is set once a page is drawn. */
async function show(force = false) {
  const pages = visiblePages();
  const want = location.hash.slice(1);
  const page = pages.find(([id]) => id === want) || pages[0];
  const main = $('main');
  if (!force && main.dataset.page === page[0]) return;
  const generation = ++shown;
  for (const id of timers) clearInterval(id);
  timers = [];
  for (const a of $('nav').querySelectorAll('a')) a.classList.toggle('active', a.dataset.page === page[0]);
  delete main.dataset.page;
  main.replaceChildren(h('p', { class: 'muted' }, 'loading…'));
  showInfo('');
  try {
    const el = await page[2].render(context(generation));
    if (generation !== shown) return;
    main.replaceChildren(el);
    main.dataset.page = page[0];
  } catch (x) {
    if (generation === shown) main.replaceChildren(h('p', { class: 'error' }, x.message));
  }
}

async function enter() {
  try {
    me = await api('GET', '/api/v1/me');
  } catch (x) {
    forget();
    return showLogin(x.message);
  }
  $('login').hidden = true;
  $('logout').hidden = false;
  $('who').textContent = me.principal === 'operator' ? 'operator' : `tenant ${me.tenant}`;
  const nav = $('nav');
  nav.replaceChildren(...visiblePages().map(([id, title]) => h('a', { href: '#' + id, dataset: { page: id } }, title)));
  nav.hidden = false;
  await show(true);
}

function showLogin(error = '') {
  me = null;
  for (const id of timers) clearInterval(id);
  timers = [];
  $('login').hidden = false;
  $('logout').hidden = true;
  $('nav').hidden = true;
  $('who').textContent = '';
  shown++;
  $('main').replaceChildren();
  delete $('main').dataset.page;
  $('login-error').textContent = error;
  $('token').value = '';
  $('token').focus();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('token').value.trim());
  $('token').value = '';
  enter();
});
$('logout').addEventListener('click', () => { forget(); showLogin(); });
window.addEventListener('hashchange', () => { if (me) show(); });

if (token()) enter(); else showLogin();
