// toygun dashboard: the overview's two charts (uPlot) from /api/v1/series.
// Everything else works without this file (forms post; pages are HTML).
'use strict';
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  window.toygunCsrf = meta ? meta.getAttribute('content') : null;

  function say(el, text) {
    el.textContent = '';
    const p = document.createElement('p');
    p.className = 'chart-note';
    p.textContent = text;
    el.appendChild(p);
  }

  async function charts() {
    const els = [document.getElementById('chart-throughput'), document.getElementById('chart-failures')].filter(Boolean);
    if (!els.length) return;
    let data;
    try {
      const win = els[0].dataset.window === '24h' ? '24h' : '1h';
      const r = await fetch('/api/v1/series?window=' + win, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      data = await r.json();
      if (!r.ok) { els.forEach((el) => say(el, (data.error && data.error.message) || ('HTTP ' + r.status))); return; }
    } catch (e) {
      els.forEach((el) => say(el, 'could not load the series: ' + e.message));
      return;
    }
    const xs = data.points.map((p) => p.at);
    if (!xs.length) { els.forEach((el) => say(el, 'no ticks counted yet (the counters start when PostgreSQL starts)')); return; }
    if (typeof uPlot === 'undefined') { els.forEach((el) => say(el, 'uPlot did not load')); return; }
    for (const el of els) {
      const key = el.dataset.series;
      const ys = data.points.map((p) => p[key]);
      el.textContent = '';
      new uPlot({
        width: Math.max(300, el.clientWidth || 560), height: 200,
        series: [{}, { label: key, stroke: key === 'failures' ? '#c0392b' : '#2c7be5', fill: key === 'failures' ? 'rgba(192,57,43,0.1)' : 'rgba(44,123,229,0.1)' }],
        axes: [{}, { size: 60 }],
      }, [xs, ys], el);
    }
  }

  document.addEventListener('DOMContentLoaded', charts);
})();
