/* envx portal: one market, live. REST for the first picture, the WebSocket stream for changes; trade ids are
 * consecutive per market, so a trade that skips one (a lost message) or a dropped connection is a gap: the page
 * refetches what it missed from REST and carries on. */
"use strict";
(function () {
  let cfg, lastTrade = 0, trades = [], ws = null, backoff = 500, refetching = null;
  const $ = id => document.getElementById(id);

  function status(text) { $("live").textContent = text; }
  function row(cells, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    cells.forEach(([text, num]) => { const td = document.createElement("td"); td.textContent = text; if (num) td.className = "num"; tr.appendChild(td); });
    return tr;
  }
  function depth(d) {
    $("asks").tBodies[0].replaceChildren(...d.asks.slice(0, 5).reverse().map(l => row([[l.price], [l.quantity, 1], [String(l.orders), 1]])));
    $("bids").tBodies[0].replaceChildren(...d.bids.slice(0, 5).map(l => row([[l.price], [l.quantity, 1], [String(l.orders), 1]])));
  }
  function renderTrades(fresh) {
    const recent = trades.slice(-50).reverse();
    $("trades").tBodies[0].replaceChildren(...recent.map(t => {
      const tr = row([[t.ts.replace("T", " ").slice(0, 19)], [t.price, 1], [t.quantity, 1], [t.amount, 1]], fresh.has(t.trade_id) ? "new" : "");
      tr.dataset.tradeId = t.trade_id;
      return tr;
    }));
    $("no-trades").hidden = trades.length > 0;
  }
  function addTrades(list) {
    const fresh = new Set();
    for (const t of list) {
      if (t.trade_id <= lastTrade) continue;
      trades.push(t); fresh.add(t.trade_id); lastTrade = t.trade_id;
    }
    if (trades.length > 500) trades = trades.slice(-500);
    renderTrades(fresh);
    if (fresh.size) chartSoon();
  }
  async function json(url) { const r = await fetch(url); if (!r.ok) throw new Error(`${url}: ${r.status}`); return r.json(); }
  async function fetchTradesAfter(after) {
    const out = [];
    for (let page = 0; page < 20; page++) {  // at most 20 000 trades per catch-up; the page keeps the last 500
      const batch = await json(`/v1/markets/${encodeURIComponent(cfg.market)}/trades?after=${after}&limit=1000`);
      out.push(...batch);
      if (batch.length < 1000) break;
      after = batch[batch.length - 1].trade_id;
    }
    return out;
  }
  /* What REST says now: depth, and every trade after the last one shown. One refetch at a time. */
  function refetch() {
    if (!refetching) refetching = (async () => {
      try {
        depth(await json(`/v1/markets/${encodeURIComponent(cfg.market)}/depth`));
        addTrades(await fetchTradesAfter(lastTrade));
      } finally { refetching = null; }
    })();
    return refetching;
  }

  let chartTimer = null;
  function chartSoon() { clearTimeout(chartTimer); chartTimer = setTimeout(charts, 300); }
  async function charts() {
    const m = encodeURIComponent(cfg.market);
    const candles = (await json(`/v1/markets/${m}/ohlc?interval=1m&limit=240`)).reverse();
    const lastDay = candles.length ? candles[candles.length - 1].start_ts.slice(0, 10) : null;
    const day = candles.filter(c => c.start_ts.slice(0, 10) === lastDay)
      .map(c => ({t: c.start_ts.slice(11, 16), o: c.open, h: c.high, l: c.low, c: c.close, v: c.volume}));
    Envx.priceChart($("day-chart"), day, $("day-chart").getAttribute("aria-label"), cfg.labels.no_data);
    if (day.length) {
      const last = day[day.length - 1];
      $("day-summary").textContent = `${lastDay}: ${day.length} × 1m; ${cfg.labels.price} ${day[0].o} → ${last.c}`;
    }
    const daily = (await json(`/v1/instruments/${encodeURIComponent(cfg.instrument)}/daily?limit=30`)).reverse();
    const closes = daily.map(d => { const c = d.close || d.last; return {t: d.trading_day, o: c, h: d.high, l: d.low, c: c, v: d.volume}; });
    Envx.priceChart($("closes-chart"), closes, $("closes-chart").getAttribute("aria-label"), cfg.labels.no_data);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/v1/markets/${encodeURIComponent(cfg.market)}/stream`);
    let reconnected = false;
    ws.onopen = () => { backoff = 500; };
    ws.onmessage = async ev => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") {
        depth(msg);
        // Anything traded while we were away (or before the stream opened) comes from REST.
        const before = lastTrade; await refetch();
        status(reconnected || (before && lastTrade > before) ? cfg.labels.caught_up : cfg.labels.connected);
      } else if (msg.type === "depth") {
        depth(msg);
      } else if (msg.type === "trade") {
        if (lastTrade && msg.trade_id > lastTrade + 1) {  // a gap: one or more trades were never received
          await refetch();
          status(cfg.labels.caught_up);
        }
        addTrades([msg]);
      }
    };
    ws.onclose = () => {
      status(cfg.labels.reconnecting); reconnected = true;
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
    };
  }

  document.addEventListener("DOMContentLoaded", async () => {
    cfg = Envx.data("market-config");
    if (!cfg) return;
    await refetch();
    charts();
    connect();
  });
  window.EnvxMarket = {socket: () => ws};
})();
