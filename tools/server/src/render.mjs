// HTML: the layout and the small pieces the pages share. hono/html escapes
// every interpolated value; raw() is used only for markup made here.
import { html, raw } from 'hono/html';

export { html, raw };

const NAV = [['/', 'Overview'], ['/runs', 'Runs'], ['/alarms', 'Alarms'], ['/schedules', 'Schedules'], ['/workers', 'Workers']];

export function fmtTime(t) {
  if (!t) return '';
  const d = t instanceof Date ? t : new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return fmtTime(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// Attrs with sealed secrets shown as "sealed".
export function attrsView(attrs) {
  if (!attrs || typeof attrs !== 'object') return html``;
  const rows = Object.entries(attrs).map(([k, v]) => {
    const sealed = v && typeof v === 'object' && v.$sealed === true;
    return html`<tr><th>${k}</th><td>${sealed ? html`<span class="sealed" title="an encrypted field: you may not read its secrets">sealed</span>` : fmtValue(v)}</td></tr>`;
  });
  return html`<table id="attrs" class="kv">${rows}</table>`;
}

export function page({ title, session = null, body, flash = null, status = null }) {
  const nav = NAV.map(([href, label]) => html`<a href="${href}">${label}</a>`);
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${session ? html`<meta name="csrf-token" content="${session.csrf}">` : ''}
<title>${title} · toygun</title>
<link rel="stylesheet" href="/static/uPlot.min.css"><link rel="stylesheet" href="/static/app.css">
<script src="/static/uPlot.iife.min.js" defer></script><script src="/static/app.js" defer></script>
</head><body>
<header>
<span class="brand">toygun</span>
${session ? html`<nav>${nav}</nav>
<span class="who">signed in as <strong id="role">${session.role}</strong></span>
<form id="signout" method="post" action="/signout"><input type="hidden" name="_csrf" value="${session.csrf}"><button type="submit">Sign out</button></form>` : ''}
</header>
<main>
${flash ? html`<p class="flash ${status || ''}">${flash}</p>` : ''}
${body}
</main></body></html>`;
}

export function table(id, columns, rows, empty = 'nothing to show') {
  return html`<table id="${id}"><thead><tr>${columns.map(([, label]) => html`<th>${label}</th>`)}</tr></thead>
<tbody>${rows.length ? rows.map((r) => html`<tr>${columns.map(([k]) => html`<td class="${k}">${fmtValue(r[k])}</td>`)}</tr>`)
    : html`<tr class="empty"><td colspan="${columns.length}">${empty}</td></tr>`}</tbody></table>`;
}

export function csrfField(session) {
  return html`<input type="hidden" name="_csrf" value="${session.csrf}">`;
}
