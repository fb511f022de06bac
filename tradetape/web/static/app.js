// The tradetape page: asks NATS directly over WebSocket (nats.ws), draws the volume profile and the
// bars of a range, and keeps them current from tape.live.* by the join rules of tradetape.api.live.messages:
// subscribe, snapshot beside a coverage reply of the same view, apply only the batches the snapshot
// does not hold, new snapshot when an update's seq does not follow on. Volumes are exact BigInt
// units of 1e-8 and POC / value area / vacuums follow the docs/design.md rules, so the POC shown is the
// one the volume_profile method answers. The picker lists the web server's symbols and those the analytics shards
// serve (`servedSymbols`: their lists in NATS KV); without a symbol in the link it opens on the served symbol that
// traded most in the last 10 s (`probe`, asked of the first PROBE.most), and says in words when one is not served.
// The footprint and TPO views are orderflow.js's; the view switch (`?view=`) chooses which panels are shown
// and followed.
import { connect } from "./nats.js";
import { followOrderFlow } from "./orderflow.js";

const SCALE = 100000000n;
const VALUE_AREA = [7n, 10n]; // 70 %, as an exact fraction
const VACUUM = { minRows: 3, threshold: [1n, 5n] }; // rows below 0.2 x the mean row
const OPEN_END_MS = 120000; // trades may be stamped up to a minute ahead: snapshot past them
const BARS_CHUNK_MS = 900000;
const ASK_TIMEOUT_MS = 15000;
const PROBE = { window: "10s", timeoutMs: 5000, concurrency: 8, most: 64 }; // which listed symbols trade now
const SERVED = { stream: "KV_TAPE_SERVED", keys: "$KV.TAPE_SERVED.>", timeoutMs: 5000 }; // tradetape.bus.served
const INSTRUMENT = /^(?:(?:um|cm):)?(?=[A-Z0-9_]{1,32}$)[A-Z0-9]+(?:_[A-Z0-9]+)*$/; // tradetape.domain.instruments
const PRICE_LABELS = { fewest: 5, most: 8 };
const NICE_STEPS = [1, 2, 2.5, 5];
const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
export const TIME_LABEL_PX = 90; // room each time label gets under the candles
const te = new TextEncoder();
const td = new TextDecoder();
export const $ = (id) => document.getElementById(id);

export function parseUnits(text) {
  const negative = text.startsWith("-");
  const [whole, frac = ""] = (negative ? text.slice(1) : text).split(".");
  const units = BigInt(whole || "0") * SCALE + BigInt((frac + "00000000").slice(0, 8));
  return negative ? -units : units;
}

export function formatUnits(units, places = 8) {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const base = 10n ** BigInt(places);
  const frac = (abs % base).toString().padStart(places, "0").replace(/0+$/, "");
  return (negative ? "-" : "") + (abs / base).toString() + (frac ? "." + frac : "");
}

// An instrument's name is `BTCUSDT` (spot) or `um:BTCUSDT` (USD-M), `cm:BTCUSD_PERP` (COIN-M); subjects carry its
// token, the market a token of its own (tradetape.domain.instruments): `tape.query.bars.um.BTCUSDT`.
const MARKETS = { spot: "spot", um: "USD-M", cm: "COIN-M" };

export function subjectToken(symbol) {
  return symbol.replace(":", ".");
}

export function instrumentLabel(symbol) {
  const [market, bare] = symbol.includes(":") ? symbol.split(":", 2) : ["spot", symbol];
  return `${bare} · ${MARKETS[market] ?? market}`;
}

export async function ask(nc, method, symbol, body, timeout = ASK_TIMEOUT_MS) {
  return (await askViewed(nc, method, symbol, body, timeout)).reply;
}

// The reply and the view of the store it read (header Tradetape-View; "" when it read across a catch-up).
async function askViewed(nc, method, symbol, body, timeout = ASK_TIMEOUT_MS) {
  const msg = await nc.request(`tape.query.${method}.${subjectToken(symbol)}`, te.encode(JSON.stringify(body)), { timeout });
  const reply = JSON.parse(td.decode(msg.data));
  if (reply.error) {
    const error = new Error(`${reply.error.code}: ${reply.error.message}`);
    error.code = reply.error.code;
    error.details = reply.error.details ?? {};
    throw error;
  }
  return { reply, view: (msg.headers && msg.headers.get("Tradetape-View")) || "" };
}

class SnapshotIds {
  constructor(coverage) {
    this.first = coverage.first_id;
    this.last = coverage.last_id;
    this.gaps = coverage.gaps;
  }
  holds(batch) {
    if (!batch.ids.length || this.first === null) return false;
    const id = batch.ids[0][0];
    if (id < this.first || id > this.last) return false;
    return !this.gaps.some((gap) => gap.from_id <= id && id <= gap.to_id);
  }
}

class ProfileState {
  constructor(start, end, rowSize, snapshot, ids) {
    Object.assign(this, { start, end, rowSize, ids, rows: new Map(), updates: 0 });
    for (const row of snapshot.rows) {
      if (row.trade_count) this.add(parseUnits(row.price_low), parseUnits(row.volume), parseUnits(row.buy_volume), row.trade_count);
    }
  }
  add(price, volume, buy, count) {
    const index = price / this.rowSize; // prices are positive: BigInt division is the floor
    const row = this.rows.get(index) || { volume: 0n, buy: 0n, count: 0 };
    row.volume += volume;
    row.buy += buy;
    row.count += count;
    this.rows.set(index, row);
  }
  apply(update) {
    let changed = false;
    for (const batch of update.batches) {
      if (this.ids.holds(batch)) continue;
      for (const levels of batch.levels) {
        if (levels.time < this.start || (this.end !== null && levels.time >= this.end)) continue;
        levels.price.forEach((price, i) =>
          this.add(parseUnits(price), parseUnits(levels.volume[i]), parseUnits(levels.buy_volume[i]), levels.trade_count[i]));
        changed = true;
      }
    }
    if (changed) this.updates += 1;
    return changed;
  }
  // Every row from the lowest to the highest traded one, POC, value area and vacuums (docs/design.md).
  summary() {
    if (!this.rows.size) return null;
    const keys = [...this.rows.keys()];
    const low = keys.reduce((a, b) => (b < a ? b : a));
    const high = keys.reduce((a, b) => (b > a ? b : a));
    const rows = [];
    for (let k = low; k <= high; k += 1n) {
      const row = this.rows.get(k) || { volume: 0n, buy: 0n, count: 0 };
      rows.push({ index: k, low: k * this.rowSize, high: (k + 1n) * this.rowSize, ...row });
    }
    const total = rows.reduce((sum, row) => sum + row.volume, 0n);
    const last = rows.length - 1;
    const top = rows.reduce((max, row) => (row.volume > max ? row.volume : max), 0n);
    let poc = -1;
    rows.forEach((row, i) => {
      if (row.volume !== top) return;
      if (poc < 0 || Math.abs(2 * i - last) < Math.abs(2 * poc - last)) poc = i; // ties: nearest the middle, then lower
    });
    let [vaLow, vaHigh, inArea] = [poc, poc, rows[poc].volume];
    const [num, den] = VALUE_AREA;
    while (inArea * den < num * total) {
      const canUp = vaHigh < last;
      const canDown = vaLow > 0;
      if (canUp && (!canDown || rows[vaHigh + 1].volume >= rows[vaLow - 1].volume)) inArea += rows[++vaHigh].volume;
      else if (canDown) inArea += rows[--vaLow].volume;
      else break;
    }
    const vacuums = [];
    const n = BigInt(rows.length);
    const bound = VACUUM.threshold[0] * total;
    let run = null;
    for (let i = 1; i < last; i++) {
      const thin = rows[i].volume * n * VACUUM.threshold[1] < bound;
      if (thin && run === null) run = i;
      if (!thin && run !== null) { vacuums.push([run, i - 1]); run = null; }
    }
    if (run !== null) vacuums.push([run, last - 1]);
    return {
      rows, total, poc, vaLow, vaHigh,
      trades: rows.reduce((sum, row) => sum + row.count, 0),
      pocText: formatUnits((rows[poc].low + rows[poc].high) * 5n, 9),
      vacuums: vacuums.filter(([a, b]) => b - a + 1 >= VACUUM.minRows),
    };
  }
}

class BarsState {
  constructor(start, end, bars, ids) {
    Object.assign(this, { start, end, ids, bars: new Map(bars.map((bar) => [bar.time, bar])) });
  }
  apply(update) {
    if (!update.batches.length || this.ids.holds(update.batches[update.batches.length - 1])) return false;
    let changed = false;
    for (const bar of update.bars) {
      if (bar.time < this.start || (this.end !== null && bar.time >= this.end)) continue;
      this.bars.set(bar.time, bar);
      changed = true;
    }
    return changed;
  }
}

// Subscribe, join a snapshot, apply updates; a seq that does not follow on means: join again.
async function follow(nc, subject, join, onState, stopped) {
  const subscription = nc.subscribe(subject);
  stopped.then(() => subscription.unsubscribe());
  await nc.flush();
  const messages = subscription[Symbol.asyncIterator]();
  while (!stopped.done) {
    const state = await join();
    if (state === null || stopped.done) return;
    onState(state);
    let last = null;
    for (;;) {
      const { value: msg, done } = await messages.next();
      if (done || stopped.done) return;
      const update = JSON.parse(td.decode(msg.data));
      if (last !== null && !(last.run === update.run && last.seq + 1 === update.seq)) break;
      last = update;
      if (state.apply(update)) onState(state);
    }
  }
}

async function joinProfile(nc, view, stopped) {
  // The snapshot and the ids it holds, asked together: taken when both replies read one state (the same view).
  for (let attempt = 0; !stopped.done; attempt++) {
    const request = { start: view.start, end: Date.now() + OPEN_END_MS, min_trades: 0 };
    if (view.rowSize) request.row_size = view.rowSize;
    const asking = askViewed(nc, "coverage", view.symbol, {});
    asking.catch(() => null); // a refusal landing before the profile's is handled below, not an unhandled rejection
    let snapshot;
    try {
      snapshot = await askViewed(nc, "volume_profile", view.symbol, request);
    } catch (error) {
      await asking.catch(() => null);
      if (error.code !== "insufficient_trades") throw error;
      setStatus(`no trades yet in the range; waiting`);
      await sleep(2000);
      continue;
    }
    const held = await asking;
    if (held.view && held.view === snapshot.view) {
      const reply = snapshot.reply;
      return new ProfileState(view.start, null, parseUnits(reply.row_size), reply, new SnapshotIds(held.reply));
    }
    await sleep(Math.min(20 * attempt, 500));
  }
  return null;
}

async function joinBars(nc, view) {
  const ids = new SnapshotIds(await ask(nc, "coverage", view.symbol, {})); // bars replace: ids before suffice
  const stop = Date.now() + OPEN_END_MS;
  const bars = [];
  for (let lo = view.start; lo < stop; lo += BARS_CHUNK_MS) {
    const chunk = await ask(nc, "bars", view.symbol, { start: lo, end: Math.min(lo + BARS_CHUNK_MS, stop), interval: "1s" });
    bars.push(...chunk.bars);
  }
  return new BarsState(view.start, null, bars, ids);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const setStatus = (text) => { $("status").textContent = text; };

// --- drawing -------------------------------------------------------------------------------

export function canvas2d(id) {
  const canvas = $(id);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  g.font = "11px system-ui, sans-serif";
  return [g, canvas.clientWidth, canvas.clientHeight];
}

export const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function drawProfile(summary) {
  const [g, width, height] = canvas2d("profile-canvas");
  const { rows } = summary;
  const left = 70;
  const rowHeight = height / rows.length;
  const y = (i) => height - (i + 1) * rowHeight; // highest price on top
  const peak = Number(rows.reduce((max, row) => (row.volume > max ? row.volume : max), 1n));
  const x = (volume) => (Number(volume) / peak) * (width - left - 8);
  g.fillStyle = css("--va");
  g.fillRect(left, y(summary.vaHigh), width - left, (summary.vaHigh - summary.vaLow + 1) * rowHeight);
  g.fillStyle = css("--vacuum");
  for (const [a, b] of summary.vacuums) g.fillRect(0, y(b), width, (b - a + 1) * rowHeight);
  rows.forEach((row, i) => {
    const h = Math.max(rowHeight - (rowHeight > 3 ? 1 : 0), 0.5);
    g.fillStyle = css("--buy");
    g.fillRect(left, y(i), x(row.buy), h);
    g.fillStyle = css("--sell");
    g.fillRect(left + x(row.buy), y(i), x(row.volume - row.buy), h);
  });
  g.strokeStyle = css("--poc");
  g.lineWidth = 2;
  const pocY = y(summary.poc) + rowHeight / 2;
  g.beginPath(); g.moveTo(left, pocY); g.lineTo(width, pocY); g.stroke();
  g.fillStyle = css("--text");
  const labels = Math.max(1, Math.ceil(rows.length / (height / 28)));
  rows.forEach((row, i) => { if (i % labels === 0) g.fillText(formatUnits(row.low), 4, y(i) + rowHeight); });
  g.fillStyle = css("--poc");
  g.fillText(`POC ${summary.pocText}`, width - 120, pocY - 4);
}

function candlesOf(state) {
  const times = [...state.bars.keys()].sort((a, b) => a - b);
  if (!times.length) return { candles: [], step: 1000 };
  const span = times[times.length - 1] - times[0] + 1000;
  const step = [1, 5, 15, 30, 60, 120, 300, 600].map((s) => s * 1000).find((s) => span / s <= 90) || 900000;
  const candles = new Map();
  for (const time of times) {
    const bar = state.bars.get(time);
    const key = time - (time % step);
    const c = candles.get(key);
    const [open, high, low, close] = [bar.open, bar.high, bar.low, bar.close].map(Number);
    const delta = Number(parseUnits(bar.buy_volume) - parseUnits(bar.sell_volume)) / 1e8;
    if (!c) candles.set(key, { time: key, open, high, low, close, volume: Number(bar.volume), delta });
    else Object.assign(c, { high: Math.max(c.high, high), low: Math.min(c.low, low), close, volume: c.volume + Number(bar.volume), delta: c.delta + delta });
  }
  return { candles: [...candles.values()], step };
}

// 5 to 8 round prices over lo..hi: the smallest step of 1, 2, 2.5 or 5 x 10^k giving at most 8 inside, the range
// widened by whole steps while there are fewer than 5 (the step before gave more than 8, so this is one step at most).
export function priceTicks(lo, hi) {
  if (!(hi > lo)) {
    const pad = Math.max(Math.abs(hi) * 1e-4, 1e-8);
    [lo, hi] = [lo - pad, hi + pad];
  }
  for (let exp = Math.floor(Math.log10((hi - lo) / PRICE_LABELS.most)) - 1; ; exp++) {
    for (const mantissa of NICE_STEPS) {
      const step = mantissa * 10 ** exp;
      let [first, last] = [Math.ceil(lo / step - 1e-9), Math.floor(hi / step + 1e-9)];
      if (last - first + 1 > PRICE_LABELS.most) continue;
      while (last - first + 1 < PRICE_LABELS.fewest) (last - first) % 2 ? (first -= 1) : (last += 1);
      const decimals = Math.max(0, -exp + (mantissa === 2.5 ? 1 : 0));
      const values = [];
      for (let k = first; k <= last; k++) values.push(k * step);
      return { values, text: (price) => price.toFixed(decimals) };
    }
  }
}

// Round UTC times over t0..t1 (epoch ms), at most `most` of them: HH:MM, or HH:MM:SS below a minute's step.
export function timeTicks(t0, t1, most) {
  const step = TIME_STEPS_S.map((s) => s * 1000).find((s) => (t1 - t0) / s <= most) || 86400000;
  const values = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) values.push(t);
  return { values, text: (t) => new Date(t).toISOString().slice(11, step < 60000 ? 19 : 16) };
}

export function intervalText(ms) {
  return ms < 60000 ? `${ms / 1000} s` : ms < 3600000 ? `${ms / 60000} min` : `${ms / 3600000} h`;
}

function drawBars(state) {
  const [g, width, height] = canvas2d("bars-canvas");
  const canvas = $("bars-canvas");
  const { candles, step } = candlesOf(state);
  $("candle-interval").textContent = intervalText(step);
  Object.assign(canvas.dataset, { candleMs: String(step), priceLabels: "[]", timeLabels: "[]" });
  if (!candles.length) return;
  const left = 70, right = 8, axisH = 22;
  const plotH = height - axisH;
  const priceH = plotH * 0.62, volumeH = plotH * 0.16, deltaH = plotH * 0.22;
  const t0 = candles[0].time, t1 = candles[candles.length - 1].time + step;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const slot = x(t0 + step) - x(t0);
  const hi = Math.max(...candles.map((c) => c.high)), lo = Math.min(...candles.map((c) => c.low));
  const prices = priceTicks(lo, hi);
  const pHi = Math.max(hi, prices.values[prices.values.length - 1]), pLo = Math.min(lo, prices.values[0]);
  const py = (p) => 8 + ((pHi - p) / (pHi - pLo)) * (priceH - 16);
  const maxVolume = Math.max(...candles.map((c) => c.volume));
  let cumulative = 0;
  const cumulatives = candles.map((c) => (cumulative += c.delta));
  const dHi = Math.max(0, ...cumulatives), dLo = Math.min(0, ...cumulatives);
  const dy = (d) => priceH + volumeH + 8 + ((dHi - d) / (dHi - dLo || 1)) * (deltaH - 16);
  const times = timeTicks(t0, t1, Math.max(2, Math.floor((width - left - right) / TIME_LABEL_PX)));
  g.strokeStyle = css("--grid");
  g.beginPath();
  for (const p of prices.values) { g.moveTo(left, py(p)); g.lineTo(width - right, py(p)); }
  for (const t of times.values) { g.moveTo(x(t), 0); g.lineTo(x(t), plotH); }
  g.stroke();
  candles.forEach((c, i) => {
    const mid = x(c.time) + slot / 2;
    const color = c.close >= c.open ? css("--buy") : css("--sell");
    g.strokeStyle = g.fillStyle = color;
    g.beginPath(); g.moveTo(mid, py(c.high)); g.lineTo(mid, py(c.low)); g.stroke();
    const top = py(Math.max(c.open, c.close));
    g.fillRect(mid - slot * 0.35, top, slot * 0.7, Math.max(py(Math.min(c.open, c.close)) - top, 1));
    const vh = (c.volume / maxVolume) * (volumeH - 4);
    g.globalAlpha = 0.6;
    g.fillRect(mid - slot * 0.35, priceH + volumeH - vh, slot * 0.7, vh);
    g.globalAlpha = 1;
  });
  g.strokeStyle = css("--poc");
  g.beginPath();
  cumulatives.forEach((d, i) => { const mid = x(candles[i].time) + slot / 2; i ? g.lineTo(mid, dy(d)) : g.moveTo(mid, dy(d)); });
  g.stroke();
  g.strokeStyle = css("--dim");
  g.beginPath(); g.moveTo(left, dy(0)); g.lineTo(width - right, dy(0)); g.stroke();
  g.fillStyle = css("--text");
  const priceLabels = prices.values.map(prices.text);
  priceLabels.forEach((text, i) => g.fillText(text, 4, py(prices.values[i]) + 4));
  g.fillText("volume", 4, priceH + volumeH - 4);
  g.fillText("cum. delta", 4, dy(0) + 4);
  g.fillText(cumulative.toFixed(4), 4, dy(cumulative) + 14);
  const timeLabels = drawTimeLabels(g, times, x, left, width, height);
  Object.assign(canvas.dataset, { priceLabels: JSON.stringify(priceLabels), timeLabels: JSON.stringify(timeLabels) });
}

// `times` (timeTicks) under a chart whose x(t) spans left..width, "UTC" beside them; the labels drawn.
export function drawTimeLabels(g, times, x, left, width, height) {
  const drawn = [];
  g.fillStyle = css("--text");
  g.textAlign = "center";
  for (const t of times.values) {
    const text = times.text(t);
    const half = g.measureText(text).width / 2;
    if (x(t) - half < left || x(t) + half > width) continue; // a label cut by the edge is left out
    g.fillText(text, x(t), height - 6);
    drawn.push(text);
  }
  g.textAlign = "left";
  g.fillStyle = css("--dim");
  g.fillText("UTC", 4, height - 6);
  return drawn;
}

// --- wiring --------------------------------------------------------------------------------

function showProfile(state, view) {
  const summary = state.summary();
  const stats = $("stats");
  stats.dataset.start = String(view.start);
  stats.dataset.rowSize = formatUnits(state.rowSize);
  $("updates").textContent = String(state.updates);
  if (!summary) return;
  stats.dataset.trades = String(summary.trades);
  $("poc").textContent = summary.pocText;
  $("vah").textContent = formatUnits(summary.rows[summary.vaHigh].high);
  $("val").textContent = formatUnits(summary.rows[summary.vaLow].low);
  $("volume").textContent = formatUnits(summary.total);
  $("trades").textContent = String(summary.trades);
  $("vacuums").textContent = String(summary.vacuums.length);
  drawProfile(summary);
}

// The symbols the analytics shards serve: each shard's list under its key of the TAPE_SERVED bucket (zlib-compressed
// JSON), read with a STREAM.INFO for the keys and a DIRECT.GET a key; null when it cannot be read (then `probe` asks).
async function servedSymbols(nc) {
  const options = { timeout: SERVED.timeoutMs };
  try {
    const filter = te.encode(JSON.stringify({ subjects_filter: SERVED.keys }));
    const info = JSON.parse(td.decode((await nc.request(`$JS.API.STREAM.INFO.${SERVED.stream}`, filter, options)).data));
    if (info.error) return null; // no bucket: no analytics worker has published yet
    const lists = await Promise.all(Object.keys(info.state?.subjects ?? {}).map(async (subject) => {
      const msg = await nc.request(`$JS.API.DIRECT.GET.${SERVED.stream}.${subject}`, new Uint8Array(), options);
      if (!msg.data.length) return []; // a deleted key
      const inflated = new Blob([msg.data]).stream().pipeThrough(new DecompressionStream("deflate"));
      const symbols = JSON.parse(await new Response(inflated).text()).symbols;
      return Array.isArray(symbols) ? symbols : [];
    }));
    return new Set(lists.flat().filter((symbol) => typeof symbol === "string" && INSTRUMENT.test(symbol)));
  } catch {
    return null;
  }
}

// Which symbols some analytics worker answers (`served`, else asked), and how many trades each had in the last
// PROBE.window: a coverage request each of the first PROBE.most served, a few at a time; "no responders" (503) or
// `unserved` means nobody serves the symbol.
async function probe(nc, symbols, served) {
  const found = new Map(symbols.map((symbol) => [symbol, { served: served?.has(symbol) ?? false, trades: 0, last: 0 }]));
  const asked = (served ? symbols.filter((symbol) => served.has(symbol)) : symbols).slice(0, PROBE.most);
  let next = 0;
  const worker = async () => {
    while (next < asked.length) {
      const symbol = asked[next++];
      try {
        const reply = await ask(nc, "coverage", symbol, { last: PROBE.window }, PROBE.timeoutMs);
        found.set(symbol, { served: true, trades: reply.trade_count, last: reply.last_time || 0 });
      } catch (error) {
        found.set(symbol, { served: !unserved(error), trades: 0, last: 0 });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE.concurrency, asked.length) }, worker));
  return found;
}

async function survey(nc, symbols) {
  return probe(nc, symbols, await servedSymbols(nc));
}

// The served symbol with the most trades in the probe's window (then the latest trade, then the list's order).
export function tradingSymbol(symbols, found) {
  const served = symbols.filter((symbol) => found.get(symbol)?.served);
  const rank = (symbol) => [found.get(symbol).trades, found.get(symbol).last];
  const better = (a, b) => { const [x, y] = [rank(a), rank(b)]; return x[0] !== y[0] ? x[0] > y[0] : x[1] > y[1]; };
  return served.reduce((best, symbol) => (better(symbol, best) ? symbol : best), served[0]) ?? symbols[0];
}

// nats.ws: the server's "no responders" status (no worker at all), or the owning shard's `unserved` reply
const unserved = (error) => error.code === "503" || error.code === "unserved";

function servedNote(found) {
  const served = [...found].filter(([, state]) => state.served).map(([symbol]) => symbol);
  return served.length
    ? `Served: ${served.join(", ")}.`
    : "No analytics service answers for any symbol listed: is `tradetape up` (or `tradetape analytics`) running on the NATS server this page uses?";
}

function explain(error, symbol, found) {
  if (unserved(error)) {
    return `${symbol} is not served: no analytics service answers queries for it (analytics serves its own TRADETAPE_SYMBOLS; this page lists the web server's). ${servedNote(found)}`;
  }
  if (error.code === "TIMEOUT") return `no answer for ${symbol} within ${ASK_TIMEOUT_MS / 1000} s: the analytics service is busy or stopped.`;
  return `${symbol}: ${error.message}`;
}

export function notify(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

let current = null;

async function show(nc, symbols) {
  if (current) current.stop();
  notify("");
  const seconds = Number($("range").value);
  const now = Date.now();
  const view = { symbol: $("symbol").value, start: now - seconds * 1000 - ((now - seconds * 1000) % 1000), rowSize: $("row-size").value.trim() };
  const params = new URLSearchParams({ symbol: view.symbol, range: String(seconds) });
  if (view.rowSize) params.set("row_size", view.rowSize);
  const kind = shownView();
  if (kind !== "candles") params.set("view", kind);
  history.replaceState(null, "", `?${params}`);
  let stop;
  const stopped = new Promise((resolve) => { stop = resolve; });
  stopped.then(() => { stopped.done = true; });
  const mine = { stop: () => stop() };
  current = mine;
  setStatus(`${view.symbol}: live`);
  const fail = async (error) => {
    if (stopped.done) return;
    if (!unserved(error)) {
      setStatus(`${view.symbol}: stopped`);
      notify(explain(error, view.symbol, new Map()));
      return;
    }
    stop(); // both panels: neither will be answered
    setStatus(`${view.symbol}: not served`);
    const found = await survey(nc, symbols);
    if (current === mine) notify(explain(error, view.symbol, found));
  };
  if (kind !== "candles") {
    followOrderFlow(nc, kind, view, seconds, stopped).catch(fail);
    return;
  }
  follow(nc, `tape.live.profile.${subjectToken(view.symbol)}`, () => joinProfile(nc, view, stopped), (state) => showProfile(state, view), stopped).catch(fail);
  follow(nc, `tape.live.bars.1s.${subjectToken(view.symbol)}`, () => joinBars(nc, view), drawBars, stopped).catch(fail);
}

// The view the switch names, its panels shown and the others hidden.
function shownView() {
  const kind = $("view").value;
  $("candles-view").hidden = kind !== "candles";
  $("stats").hidden = kind !== "candles";
  $("orderflow-view").hidden = kind === "candles";
  return kind;
}

async function main() {
  const response = await fetch("config.json");
  if (!response.ok) throw new Error(await response.text()); // e.g. no NATS WebSocket URL known yet
  const config = await response.json();
  const params = new URLSearchParams(location.search);
  if (params.get("range")) $("range").value = params.get("range");
  if (params.get("row_size")) $("row-size").value = params.get("row_size");
  if ([...$("view").options].some((option) => option.value === params.get("view"))) $("view").value = params.get("view");
  const options = { servers: config.servers, name: "tradetape-web", inboxPrefix: config.inbox_prefix };
  if (config.user) Object.assign(options, { user: config.user, pass: config.password });
  let nc;
  try {
    nc = await connect(options);
  } catch (error) {
    throw new Error(`cannot reach NATS at ${config.servers} (${error.message}): is \`tradetape up\` running?`);
  }
  setStatus("finding the symbols that trade…");
  const served = await servedSymbols(nc);
  const symbols = [...new Set([...config.symbols, ...[...(served ?? [])].sort()])];
  const found = await probe(nc, symbols, served);
  for (const symbol of symbols) {
    $("symbol").add(new Option(found.get(symbol).served ? instrumentLabel(symbol) : `${instrumentLabel(symbol)} (not served)`, symbol));
  }
  const wanted = params.get("symbol"); // only a symbol listed (config or served lists) ever reaches a subject
  $("symbol").value = symbols.includes(wanted) ? wanted : tradingSymbol(symbols, found);
  $("show").addEventListener("click", () => show(nc, symbols));
  $("view").addEventListener("change", () => show(nc, symbols));
  await show(nc, symbols);
}

main().catch((error) => {
  setStatus("not connected");
  notify(error.message);
});
