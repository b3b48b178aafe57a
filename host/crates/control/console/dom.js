// Small DOM helpers: elements built with textContent only (API data never becomes
// markup), tables, forms, confirmations and the error line.

/** h('div', {class: 'x', onclick: fn}, child, 'text', ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A table: columns [[title, row => cell]], one row per item; `key` names rows. */
export function table(columns, rows, key) {
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map(([t]) => h('th', {}, t)))),
    h('tbody', {}, rows.length === 0
      ? h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, 'none'))
      : rows.map((r) => h('tr', { dataset: key ? { key: key(r) } : undefined },
        columns.map(([t, f]) => h('td', { 'data-label': t }, f(r))))))));
}

/** A form of labelled fields; `submit(values)` runs on submit, errors shown under it. */
export function form(id, fields, label, submit) {
  const err = h('p', { class: 'error', role: 'alert' });
  const el = h('form', { id, class: 'form' },
    fields.map(([name, title, type = 'text', extra = {}]) => h('label', {},
      h('span', {}, title),
      type === 'textarea'
        ? h('textarea', { name, rows: 4, ...extra })
        : h('input', { name, type, autocomplete: 'off', ...extra }))),
    h('button', { type: 'submit' }, label), err);
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const values = Object.fromEntries(new FormData(el).entries());
    try {
      await submit(values, el);
    } catch (x) {
      err.textContent = x.message;
    }
  });
  return el;
}

/** A button running `action`; its failure is shown in `status` (the page's line). */
export function button(text, action, cls = '') {
  return h('button', {
    type: 'button',
    class: cls,
    onclick: async (e) => {
      const b = e.currentTarget;
      b.disabled = true;
      try { await action(); } catch (x) { showError(x.message); } finally { b.disabled = false; }
    },
  }, text);
}

/** Asks before a destructive action (a modal dialog, not window.confirm, for tests). */
export function confirmThen(question, action) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm', id: 'confirm' },
      h('p', {}, question),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', id: 'confirm-yes', onclick: async () => { dlg.close(); dlg.remove(); try { await action(); } catch (x) { showError(x.message); } resolve(true); } }, 'Confirm'),
        h('button', { type: 'button', id: 'confirm-no', onclick: () => { dlg.close(); dlg.remove(); resolve(false); } }, 'Cancel')));
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function showError(message) {
  const s = document.getElementById('status');
  s.className = 'status error';
  s.textContent = message;
}

export function showInfo(message) {
  const s = document.getElementById('status');
  s.className = 'status';
  s.textContent = message;
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export const fmt = (n, digits = 1) => (n === undefined || n === null || Number.isNaN(n)) ? '–'
  : Number.isInteger(n) ? String(n) : n.toFixed(digits);
