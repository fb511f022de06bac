// The page's footprint and market profile (TPO) views: each asks its method over the page's NATS connection,
// as the query user, and draws the reply; asked again every REFRESH_MS while the view is shown (one request in
// flight at a time). Every request is bounded before it is sent: the page's range is cut into at most
// MAX_COLUMNS bars or periods, with a row count the server's bounds allow; only a row size the user
// typed can ask for more rows than the server draws, and its `range_too_large` is said in words.
import { $, TIME_LABEL_PX, ask, canvas2d, css, drawTimeLabels, notify, priceTicks, setStatus, sleep, timeTicks } from "./app.js";

const REFRESH_MS = 5000;
const OPEN_END_MS = 120000; // trades may be stamped up to a minute ahead, as the candle view allows
const MAX_COLUMNS = 15;
const STEPS_S = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
const FOOTPRINT_ROWS = 12; // rows of the tallest bar, when no row size is typed
const TPO_ROWS = 40;
const PAIR_FONTS_PX = [11, 10, 9]; // buy × sell below 9 px is not read: the delta is written instead
const DELTA_FONTS_PX = [11, 10, 9, 8];
const LETTER_FONTS_PX = [13, 12, 11, 10, 9, 8];
const CROSS = 0.55; // the "×" between buy and sell: each number stands this many font sizes from the cell's middle
const VOLUME_DIGITS = 3; // significant digits of the largest volume; the others get its decimals

const NAMES = { footprint: "footprint", tpo: "market profile" };

// The step ("30s", "5m", …) cutting `seconds` into at most MAX_COLUMNS bars or periods (the last step if none does).
function columnStep(seconds) {
  const step = STEPS_S.find((s) => seconds / s <= MAX_COLUMNS) ?? STEPS_S[STEPS_S.length - 1];
  return { ms: step * 1000, text: step % 60 ? `${step}s` : step % 3600 ? `${step / 60}m` : `${step / 3600}h` };
}

// What each view asks: the range starts on a whole step, so bars and letters stay put between refreshes.
function request(kind, view, seconds) {
  const step = columnStep(seconds);
  const now = Date.now();
  const start = Math.floor((now - seconds * 1000) / step.ms) * step.ms;
  const body = { start, end: now + OPEN_END_MS };
  if (kind === "footprint") body.interval = step.text;
  else body.period = step.text;
  if (view.rowSize) body.row_size = view.rowSize;
  else body.rows = kind === "footprint" ? FOOTPRINT_ROWS : TPO_ROWS;
  return body;
}

// Ask and draw every REFRESH_MS until `stopped`; a refused request is said in words and not asked again.
export async function followOrderFlow(nc, kind, view, seconds, stopped) {
  const method = kind === "footprint" ? "footprint" : "market_profile";
  const canvas = $("orderflow-canvas");
  const record = (facts) => { // the canvas's data attributes say what its last drawing (or refusal) was
    for (const key of Object.keys(canvas.dataset)) delete canvas.dataset[key];
    Object.assign(canvas.dataset, facts);
  };
  while (!stopped.done) {
    const body = request(kind, view, seconds);
    let reply;
    try {
      reply = await ask(nc, method, view.symbol, body);
    } catch (error) {
      if (stopped.done) return;
      if (error.code === "insufficient_trades") {
        setStatus(`${view.symbol}: no trades yet in the range; waiting`);
        await sleep(REFRESH_MS);
        continue;
      }
      if (!tooLarge(error)) throw error;
      setStatus(`${view.symbol}: ${NAMES[kind]} not drawn`);
      record({ refused: error.code });
      notify(refusal(kind, view, error));
      return;
    }
    if (stopped.done) return;
    record({ request: JSON.stringify({ method, symbol: view.symbol, ...body }) });
    if (kind === "footprint") drawFootprint(reply, body.start);
    else drawTpo(reply);
    setStatus(`${view.symbol}: ${NAMES[kind]}, asked every ${REFRESH_MS / 1000} s`);
    await sleep(REFRESH_MS);
  }
}

// The server's bounds: cells (bars × rows, periods × rows) or a profile's row count.
const tooLarge = (error) => error.code === "range_too_large" || (error.code === "invalid_request" && "max_rows" in error.details);

function refusal(kind, view, error) {
  const advice = view.rowSize
    ? `a row size of ${view.rowSize} asks for more rows than the server draws: clear the row size (auto) or make it larger`
    : "pick a shorter range";
  return `The ${NAMES[kind]} of ${view.symbol} is too large to draw: ${advice}. (${error.message})`;
}

// Decimals giving the largest of `values` VOLUME_DIGITS significant digits; a zero stays "0".
function volumeFormat(values) {
  const largest = Math.max(0, ...values.map((v) => Math.abs(v)));
  const places = largest > 0 ? Math.min(8, Math.max(0, VOLUME_DIGITS - 1 - Math.floor(Math.log10(largest)))) : 0;
  return (v) => (v === 0 ? "0" : v.toFixed(places));
}

// The largest of `sizes` (px) at which text as wide as `measure(px)` (with the font set) fits width × height.
function firstFitting(g, sizes, measure, width, height, family = "system-ui, sans-serif") {
  return sizes.find((px) => {
    g.font = `${px}px ${family}`;
    return measure(px) + 6 <= width && px * 1.15 <= height;
  });
}

function priceAxis(g, lo, hi, y, left, right) {
  const ticks = priceTicks(lo, hi);
  g.strokeStyle = css("--grid");
  g.beginPath();
  const shown = ticks.values.filter((p) => p >= lo && p <= hi);
  for (const p of shown) { g.moveTo(left, y(p)); g.lineTo(right, y(p)); }
  g.stroke();
  g.fillStyle = css("--text");
  g.font = "11px system-ui, sans-serif";
  g.textAlign = "left";
  shown.forEach((p) => g.fillText(ticks.text(p), 4, y(p) + 4));
}

// --- footprint ------------------------------------------------------------------------------

function drawFootprint(reply, start) {
  const [g, width, height] = canvas2d("orderflow-canvas");
  const canvas = $("orderflow-canvas");
  const bars = reply.bars;
  const rowSize = Number(reply.row_size);
  const step = reply.interval_ms;
  const left = 70, right = 12, axisH = 22, deltaH = 70, gap = 10;
  const plotH = height - axisH - deltaH - gap;
  const t0 = start;
  const t1 = Math.max(t0 + step, ...bars.map((bar) => bar.time + step), Math.ceil(Date.now() / step) * step);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const slot = x(t0 + step) - x(t0);
  const cellX = (bar) => x(bar.time) + slot * 0.12, cellW = slot * 0.8;
  const lo = Math.min(...bars.map((bar) => Number(bar.rows[0].price_low)));
  const hi = Math.max(...bars.map((bar) => Number(bar.rows[bar.rows.length - 1].price_high)));
  const y = (p) => 6 + ((hi - p) / (hi - lo || 1)) * (plotH - 12);
  const rowH = y(0) - y(rowSize);
  $("orderflow-title").textContent =
    `footprint — ${reply.interval} bars, row size ${reply.row_size ?? "–"}: cells buy × sell (delta by colour), ` +
    `imbalances ${reply.imbalance}× striped and bold, POC boxed (yellow), value area (blue line); times in UTC`;
  Object.assign(canvas.dataset, { bars: String(bars.length), rows: "0", pocs: "[]", pocBoxes: "[]", cellText: "none", trades: String(reply.trade_count) });
  if (!bars.length) {
    g.fillStyle = css("--dim");
    g.fillText("no trades in the range yet", left, 40);
    return;
  }
  priceAxis(g, lo, hi, y, left, width - right);
  const cells = bars.flatMap((bar) => bar.rows.map((row) => ({ bar, row, buy: Number(row.buy_volume), sell: Number(row.sell_volume) })));
  const reach = Math.max(...cells.map((c) => Math.abs(c.buy - c.sell))) || 1;
  const format = volumeFormat(cells.flatMap((c) => [c.buy, c.sell]));
  const widestPair = cells.reduce((w, c) => Math.max(w, format(c.buy).length, format(c.sell).length), 1);
  const digits = "8".repeat(widestPair);
  const pairPx = firstFitting(g, PAIR_FONTS_PX, (px) => 2 * g.measureText(digits).width + 2 * CROSS * px, cellW, rowH);
  const deltaPx = pairPx ? undefined : firstFitting(g, DELTA_FONTS_PX, () => g.measureText(`-${digits}`).width, cellW, rowH);
  const pocs = [], pocBoxes = [];
  for (const { bar, row, buy, sell } of cells) {
    const top = y(Number(row.price_high)), cx = cellX(bar);
    const share = Math.min(1, Math.abs(buy - sell) / reach);
    g.fillStyle = buy >= sell ? `rgba(47, 182, 124, ${0.08 + 0.5 * share})` : `rgba(224, 93, 93, ${0.08 + 0.5 * share})`;
    g.fillRect(cx, top + 0.5, cellW, Math.max(rowH - 1, 0.5));
    if (row.buy_imbalance) { g.fillStyle = css("--buy"); g.fillRect(cx + cellW - 3, top + 0.5, 3, Math.max(rowH - 1, 0.5)); }
    if (row.sell_imbalance) { g.fillStyle = css("--sell"); g.fillRect(cx, top + 0.5, 3, Math.max(rowH - 1, 0.5)); }
    if (!row.trade_count) continue;
    const mid = top + rowH / 2 + 1;
    if (pairPx) {
      g.textAlign = "center";
      g.font = `${pairPx}px system-ui, sans-serif`;
      g.fillStyle = css("--dim");
      g.fillText("×", cx + cellW / 2, mid + pairPx * 0.35);
      writeVolume(g, format(buy), row.buy_imbalance, "--buy", "right", cx + cellW / 2 - CROSS * pairPx, mid, pairPx);
      writeVolume(g, format(sell), row.sell_imbalance, "--sell", "left", cx + cellW / 2 + CROSS * pairPx, mid, pairPx);
    } else if (deltaPx) {
      g.textAlign = "center";
      g.font = `${deltaPx}px system-ui, sans-serif`;
      g.fillStyle = css("--text");
      g.fillText(format(buy - sell), cx + cellW / 2, mid + deltaPx * 0.35);
    }
  }
  for (const bar of bars) {
    const cx = cellX(bar);
    g.strokeStyle = css("--va-line");
    g.lineWidth = 2;
    g.beginPath(); g.moveTo(cx - 4, y(Number(bar.val))); g.lineTo(cx - 4, y(Number(bar.vah))); g.stroke();
    for (const run of bar.stacked_imbalances) {
      g.strokeStyle = css(run.side === "buy" ? "--buy" : "--sell");
      g.lineWidth = 3;
      const at = cx + cellW + (run.side === "buy" ? 4 : 8);
      g.beginPath(); g.moveTo(at, y(Number(run.price_low))); g.lineTo(at, y(Number(run.price_high))); g.stroke();
    }
    const poc = bar.rows.find((row) => Number(row.price_low) < Number(bar.poc) && Number(bar.poc) < Number(row.price_high));
    const box = [cx + 1, y(Number(poc.price_high)) + 1, cellW - 2, Math.max(rowH - 2, 1)].map(Math.round); // crisp
    g.strokeStyle = css("--poc");
    g.lineWidth = 2;
    g.strokeRect(...box);
    pocs.push(bar.poc);
    pocBoxes.push(box);
  }
  g.lineWidth = 1;
  const deltaTop = plotH + gap;
  const deltas = bars.map((bar) => Number(bar.delta));
  const deltaReach = Math.max(...deltas.map(Math.abs)) || 1;
  const zero = deltaTop + deltaH / 2;
  bars.forEach((bar, i) => {
    const h = (deltas[i] / deltaReach) * (deltaH / 2 - 4);
    g.fillStyle = css(deltas[i] >= 0 ? "--buy" : "--sell");
    g.fillRect(cellX(bar), Math.min(zero, zero - h), cellW, Math.max(Math.abs(h), 1));
  });
  g.strokeStyle = css("--dim");
  g.beginPath(); g.moveTo(left, zero); g.lineTo(width - right, zero); g.stroke();
  g.fillStyle = css("--text");
  g.textAlign = "left";
  g.font = "11px system-ui, sans-serif";
  g.fillText("bar delta", 4, zero + 4);
  g.font = "11px system-ui, sans-serif";
  drawTimeLabels(g, timeTicks(t0, t1, Math.max(2, Math.floor((width - left - right) / TIME_LABEL_PX))), x, left, width, height);
  Object.assign(canvas.dataset, {
    rows: String(cells.length), pocs: JSON.stringify(pocs), pocBoxes: JSON.stringify(pocBoxes),
    cellText: pairPx ? "buy × sell" : deltaPx ? "delta" : "none",
  });
}

function writeVolume(g, text, imbalanced, colour, align, at, mid, px) {
  g.textAlign = align;
  g.font = `${imbalanced ? "bold " : ""}${px}px system-ui, sans-serif`;
  g.fillStyle = imbalanced ? css(colour) : css("--text");
  g.fillText(text, at, mid + px * 0.35);
}

// --- market profile (TPO) -------------------------------------------------------------------

function drawTpo(reply) {
  const [g, width, height] = canvas2d("orderflow-canvas");
  const canvas = $("orderflow-canvas");
  const rows = reply.rows;
  const left = 70, labelsW = 150, legendH = 24;
  const plotH = height - legendH;
  const rowH = (plotH - 8) / rows.length;
  const lo = Number(rows[0].price_low), hi = Number(rows[rows.length - 1].price_high);
  const py = (price) => 4 + ((hi - price) / (hi - lo)) * (plotH - 8); // highest price on top
  const columns = Math.max(20, ...rows.map((row) => row.tpo_count));
  const colW = Math.min(22, (width - left - 24 - labelsW) / columns);
  const letterX = left + 24;
  const val = Number(reply.val), vah = Number(reply.vah);
  $("orderflow-title").textContent =
    `market profile (TPO) — ${reply.period} periods, row size ${reply.row_size}: letters by period, ` +
    `POC (yellow), value area (blue), initial balance (purple bar), single prints (orange)`;
  const singles = reply.single_prints.map((run) => [Number(run.price_low), Number(run.price_high)]);
  const letterPx = firstFitting(g, LETTER_FONTS_PX, () => g.measureText("W").width, colW + 6, rowH, "ui-monospace, monospace");
  const drawnLetters = [];
  for (const row of rows) {
    const low = Number(row.price_low), high = Number(row.price_high), top = py(high);
    const inArea = low >= val && high <= vah;
    g.fillStyle = row.price_low === reply.poc_low ? css("--poc-row") : inArea ? css("--va-row") : css("--tpo-row");
    g.fillRect(letterX, top + 0.5, row.tpo_count * colW, Math.max(rowH - 1, 0.5));
    const single = singles.some(([a, b]) => a <= low && low < b);
    if (single) { g.fillStyle = css("--single"); g.fillRect(letterX - 8, top, 4, rowH); }
    if (!letterPx || !row.letters) continue;
    g.font = `${single ? "bold " : ""}${letterPx}px ui-monospace, monospace`;
    g.textAlign = "center";
    g.fillStyle = single ? css("--single") : css("--text");
    [...row.letters].forEach((letter, k) => g.fillText(letter, letterX + (k + 0.5) * colW, top + rowH / 2 + letterPx * 0.35));
    drawnLetters.push(row.letters);
  }
  if (reply.initial_balance) {
    const [ibLow, ibHigh] = [Number(reply.initial_balance.low), Number(reply.initial_balance.high)];
    g.fillStyle = css("--balance");
    g.fillRect(letterX - 16, py(ibHigh), 4, Math.max(py(ibLow) - py(ibHigh), 2));
  }
  const labelEvery = Math.max(1, Math.ceil(rows.length / (plotH / 22)));
  g.font = "11px system-ui, sans-serif";
  g.textAlign = "left";
  g.fillStyle = css("--text");
  rows.forEach((row, i) => { if (i % labelEvery === 0) g.fillText(row.price_low, 4, py(Number(row.price_high)) + rowH / 2 + 4); });
  const pocY = py(Number(reply.poc));
  const labels = [["POC", reply.poc, pocY, "--poc"], ["VAH", reply.vah, py(vah), "--va-line"], ["VAL", reply.val, py(val), "--va-line"]];
  let below = -Infinity; // each label under the one above it, by at least a line
  for (const [name, price, at, colour] of labels.sort((a, b) => a[2] - b[2])) {
    below = Math.max(at + 4, below + 14);
    g.fillStyle = css(colour);
    g.fillText(`${name} ${price}`, width - labelsW + 10, below);
  }
  g.fillStyle = css("--dim");
  const periods = reply.periods.map((p) => `${p.letter} ${new Date(p.start).toISOString().slice(11, 16)}`).join("  ");
  g.fillText(`periods (UTC): ${periods}`, 4, height - 8);
  Object.assign(canvas.dataset, {
    letters: JSON.stringify(drawnLetters), poc: reply.poc, pocY: String(Math.round(pocY * 10) / 10),
    rows: String(rows.length), trades: String(reply.trade_count), letterPx: String(letterPx ?? 0),
    pocLeft: String(letterX), pocWidth: String(rows.find((row) => row.price_low === reply.poc_low).tpo_count * colW),
  });
}
