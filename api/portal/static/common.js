/* envx portal: small helpers shared by the pages (no dependencies). */
"use strict";
window.Envx = (function () {
  const NS = "http://www.w3.org/2000/svg";
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  // Decimal strings are only turned into numbers to place pixels; every figure shown is the string itself.
  function px(s) { const n = Number(s); return Number.isFinite(n) ? n : 0; }

  /* Horizontal grouped bars: rows [{label, values: {k: "decimal"}}], series [{key, label, color}]. */
  function bars(box, rows, series, title) {
    const w = 640, rowH = 18 * series.length + 26, h = Math.max(60, rows.length * rowH + 30);
    const s = svg("svg", {viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title});
    s.appendChild(svg("title", {})).textContent = title;
    const max = Math.max(1, ...rows.flatMap(r => series.map(x => px(r.values[x.key]))));
    const left = 200, width = w - left - 90;
    rows.forEach((r, i) => {
      const y0 = 10 + i * rowH;
      const t = svg("text", {x: 0, y: y0 + 12, "font-size": 12, fill: "#1a1a1a"}); t.textContent = r.label.slice(0, 30);
      s.appendChild(t);
      series.forEach((x, j) => {
        const v = r.values[x.key], len = Math.max(v === "0" || px(v) === 0 ? 0 : 1, width * px(v) / max);
        const y = y0 + 16 + j * 18;
        s.appendChild(svg("rect", {x: left, y: y - 11, width: len, height: 14, fill: x.color}));
        const lab = svg("text", {x: left + len + 4, y: y, "font-size": 11, fill: "#1a1a1a"});
        lab.textContent = `${x.label} ${v}`; s.appendChild(lab);
      });
    });
    box.replaceChildren(s);
    return s;
  }

  /* A line (or OHLC sticks) over time with volume bars below. points: [{t: label, o,h,l,c, v}] (strings). */
  function priceChart(box, points, title, noData) {
    const w = 640, h = 260, top = 10, ph = 170, vh = 50, left = 56, right = 10;
    const s = svg("svg", {viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title});
    s.appendChild(svg("title", {})).textContent = title;
    if (!points.length) {
      const t = svg("text", {x: w / 2, y: h / 2, "text-anchor": "middle", "font-size": 14, fill: "#333"});
      t.textContent = noData; s.appendChild(t); box.replaceChildren(s); return s;
    }
    const hi = Math.max(...points.map(p => px(p.h))), lo = Math.min(...points.map(p => px(p.l)));
    const span = hi - lo || Math.max(1, hi * 0.05), vmax = Math.max(1, ...points.map(p => px(p.v)));
    const step = (w - left - right) / Math.max(1, points.length);
    const y = v => top + ph - (px(v) - lo + span * 0.05) / (span * 1.1) * ph;
    [hi, lo].forEach(v => {
      const t = svg("text", {x: 2, y: y(v) + 4, "font-size": 11, fill: "#333"}); t.textContent = v.toFixed(2);
      s.appendChild(t);
      s.appendChild(svg("line", {x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#d5d9d2"}));
    });
    let path = "";
    points.forEach((p, i) => {
      const x = left + step * (i + 0.5);
      s.appendChild(svg("line", {x1: x, x2: x, y1: y(p.h), y2: y(p.l), stroke: "#555"}));
      const up = px(p.c) >= px(p.o);
      s.appendChild(svg("rect", {x: x - Math.max(1, step * 0.3), y: Math.min(y(p.o), y(p.c)),
        width: Math.max(2, step * 0.6), height: Math.max(1, Math.abs(y(p.o) - y(p.c))), fill: up ? "#0f5e2a" : "#8b1a1a"}));
      path += (i ? " L" : "M") + x.toFixed(1) + " " + y(p.c).toFixed(1);
      const vhgt = vh * px(p.v) / vmax;
      s.appendChild(svg("rect", {x: x - Math.max(1, step * 0.3), y: top + ph + 20 + vh - vhgt, width: Math.max(2, step * 0.6),
        height: vhgt, fill: "#6b8fb3"}));
    });
    s.appendChild(svg("path", {d: path, fill: "none", stroke: "#0b5394", "stroke-width": 1.5}));
    const first = svg("text", {x: left, y: h - 2, "font-size": 11, fill: "#333"}); first.textContent = points[0].t;
    const last = svg("text", {x: w - right, y: h - 2, "font-size": 11, fill: "#333", "text-anchor": "end"});
    last.textContent = points[points.length - 1].t;
    s.appendChild(first); s.appendChild(last);
    box.replaceChildren(s);
    return s;
  }
  return {el, svg, data, bars, priceChart};
})();
