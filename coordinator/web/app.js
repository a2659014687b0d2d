// ringtrain dashboard: polls api/snapshot every second and renders it.
// Plain DOM and inline SVG; every value from the server goes through
// textContent or setAttribute, never innerHTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;
const MAX_CURVE_POINTS = 1200; // per series, after even thinning

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fmt(v, digits) {
  if (v === undefined || v === null || !isFinite(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function fmtAge(seconds) {
  if (!isFinite(seconds)) return "";
  seconds = Math.max(0, seconds);
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function fmtClock(t) {
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleTimeString("en-GB", { hour12: false });
}

function validTime(t) { return t && !t.startsWith("0001-"); }

// ---------- charts ----------

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
}

function ticks(lo, hi, count) {
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function thinPoints(pts, max) {
  if (pts.length <= max) return pts;
  const stride = pts.length / max;
  const out = [];
  for (let i = 0; i < max - 1; i++) out.push(pts[Math.floor(i * stride)]);
  out.push(pts[pts.length - 1]);
  return out;
}

// chart draws series [{name, cls, points: [[x, y]...]}] into an SVG with
// axes, grid, tick labels and a legend. opts: {yLabel, xMin, xMax, yMin,
// yMax}; a bound left out follows the data.
function chart(node, series, opts) {
  clear(node);
  const vb = node.viewBox.baseVal;
  const W = vb.width, H = vb.height;
  const m = { l: 56, r: 14, t: 14, b: 38 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const all = series.flatMap(s => s.points);
  if (all.length === 0) {
    node.append(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "no data yet"));
    return;
  }
  let x0 = opts.xMin !== undefined ? opts.xMin : Math.min(...all.map(p => p[0]));
  let x1 = opts.xMax !== undefined ? opts.xMax : Math.max(...all.map(p => p[0]));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = opts.yMin !== undefined ? opts.yMin : Math.min(...all.map(p => p[1]));
  let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(...all.map(p => p[1]));
  if (opts.yMin === undefined || opts.yMax === undefined) {
    const pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1;
    if (opts.yMin === undefined) y0 -= pad;
    if (opts.yMax === undefined) y1 += pad;
  }
  const sx = x => m.l + (x - x0) / (x1 - x0) * pw;
  const sy = y => m.t + ph - (y - y0) / (y1 - y0) * ph;

  const grid = svg("g", { class: "grid" });
  const labels = svg("g", { class: "ticks" });
  for (const v of ticks(y0, y1, 5)) {
    grid.append(svg("line", { x1: m.l, x2: m.l + pw, y1: sy(v), y2: sy(v) }));
    labels.append(svg("text", { x: m.l - 6, y: sy(v) + 4, "text-anchor": "end" }, fmt(v, 3)));
  }
  for (const v of ticks(x0, x1, 6)) {
    if (v < x0 || v > x1) continue;
    grid.append(svg("line", { x1: sx(v), x2: sx(v), y1: m.t, y2: m.t + ph }));
    labels.append(svg("text", { x: sx(v), y: m.t + ph + 16, "text-anchor": "middle" }, fmt(v, 0)));
  }
  node.append(grid, labels);
  node.append(svg("rect", { class: "frame", x: m.l, y: m.t, width: pw, height: ph }));
  node.append(svg("text", { class: "axis-label", x: m.l + pw / 2, y: H - 4, "text-anchor": "middle" }, "step"));
  node.append(svg("text", {
    class: "axis-label", x: 14, y: m.t + ph / 2, "text-anchor": "middle",
    transform: `rotate(-90 14 ${m.t + ph / 2})`,
  }, opts.yLabel));

  let ly = m.t + 14;
  for (const s of series) {
    if (s.points.length === 0) continue;
    const pts = thinPoints(s.points, MAX_CURVE_POINTS);
    const attr = pts.map(p => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    node.append(svg("polyline", { class: "series " + s.cls, "data-series": s.cls, points: attr }));
    if (pts.length <= 40) {
      const dots = svg("g", { class: "dots " + s.cls });
      for (const p of pts) dots.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5 }));
      node.append(dots);
    }
    const lx = m.l + pw - 120;
    node.append(svg("line", { class: "series " + s.cls, x1: lx, x2: lx + 18, y1: ly - 4, y2: ly - 4 }));
    node.append(svg("text", { class: "legend", x: lx + 24, y: ly }, s.name));
    ly += 16;
  }
}

// ---------- ring ----------

function renderRing(node, members) {
  clear(node);
  const ring = members.filter(m => m.rank >= 0);
  const W = node.viewBox.baseVal.width, H = node.viewBox.baseVal.height;
  const cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2 - 34;
  if (ring.length === 0) {
    node.append(svg("text", { x: cx, y: cy, class: "empty", "text-anchor": "middle" }, "no ring: waiting for workers"));
    return;
  }
  node.append(svg("circle", { class: "ring-path", cx, cy, r: R }));
  const pos = i => {
    const a = -Math.PI / 2 + 2 * Math.PI * i / ring.length;
    return [cx + R * Math.cos(a), cy + R * Math.sin(a)];
  };
  if (ring.length > 1) {
    // An arrowhead on the ring between each rank and the next.
    for (let i = 0; i < ring.length; i++) {
      const a = -Math.PI / 2 + 2 * Math.PI * (i + 0.5) / ring.length;
      const x = cx + R * Math.cos(a), y = cy + R * Math.sin(a);
      const deg = a * 180 / Math.PI + 90;
      node.append(svg("path", { class: "ring-arrow", d: "M -5 -5 L 5 0 L -5 5 z", transform: `translate(${x} ${y}) rotate(${deg})` }));
    }
  }
  ring.forEach((m, i) => {
    const [x, y] = pos(i);
    const g = svg("g", { class: "node " + m.state, "data-id": m.id });
    g.append(svg("circle", { cx: x, cy: y, r: 15 }));
    g.append(svg("text", { x, y: y + 4, "text-anchor": "middle", class: "rank" }, String(m.rank)));
    const below = y >= cy;
    g.append(svg("text", { x, y: below ? y + 30 : y - 21, "text-anchor": "middle", class: "id" }, m.id));
    node.append(g);
  });
}

function renderMembers(ul, members, computeMs) {
  clear(ul);
  if (members.length === 0) {
    ul.append(el("li", { class: "empty" }, "no workers registered"));
    return;
  }
  for (const m of members) {
    const li = el("li", { "data-id": m.id, "data-state": m.state, "data-rank": String(m.rank), class: m.state });
    li.append(el("span", { class: "rank" }, m.rank >= 0 ? "#" + m.rank : "–"));
    li.append(el("span", { class: "id" }, m.id));
    li.append(el("span", { class: "state " + m.state }, m.state === "ring" ? "in ring" : m.state));
    li.append(el("span", { class: "addr" }, m.addr || ""));
    // Each rank's compute time in the last step: when it arrived at the
    // all-reduce. The slowest rank is the one every other rank waits for.
    if (computeMs && m.rank >= 0 && m.rank < computeMs.length) {
      const slowest = Math.max(...computeMs);
      li.append(el("span", { class: "compute" + (computeMs[m.rank] === slowest && computeMs.length > 1 ? " slowest" : ""),
        "data-compute-ms": String(computeMs[m.rank]), title: "compute time of the last step (arrival at the all-reduce)" },
        fmt(computeMs[m.rank], 1) + " ms"));
    }
    ul.append(li);
  }
}

// ---------- page ----------

function render(s) {
  document.title = `ringtrain · ${s.run}`;
  $("run").textContent = s.run;
  const state = $("state");
  state.textContent = s.stale ? "stale" : s.state;
  state.dataset.state = s.stale ? "stale" : s.state;
  state.title = s.error || "";
  $("leader").textContent = (s.leader || "none") + (s.is_leader ? " (this process)" : "");
  $("updated").textContent = validTime(s.time) ? "read " + fmtClock(s.time) + (s.stale ? " — " + (s.error || "") : "") : (s.error || "");

  const g = s.generation || {};
  $("generation").textContent = g.gen ? String(g.gen) : "–";
  $("generation-reason").textContent = g.reason || "";
  const ids = (g.members || []).map(m => m.id);
  $("ring-order").textContent = ids.length ? ids.join(" → ") + " → " + ids[0] : "";

  const p = s.progress;
  const total = (p && p.total_steps) || (s.spec && s.spec.config && s.spec.config.steps) || 0;
  const step = s.done ? s.done.step : p ? p.step : 0;
  $("step").textContent = (p || s.done) ? fmt(step, 0) + (total ? " / " + fmt(total, 0) : "") : "–";
  $("progress-bar").style.width = total ? Math.min(100, 100 * step / total).toFixed(1) + "%" : "0%";
  $("epoch").textContent = s.done ? fmt(s.done.epoch, 0) : p ? fmt(p.epoch, 0) : "–";
  $("throughput").textContent = s.done ? "–" : p ? fmt(p.samples_per_sec, 0) : "–";
  $("loss").textContent = s.done ? fmt(s.done.train_loss, 4) : p ? fmt(p.loss, 4) : "–";
  const acc = s.done ? s.done.test_accuracy : p && p.test_accuracy;
  $("accuracy").textContent = acc ? fmt(100 * acc, 2) + " %" : "–";

  const done = $("done");
  if (s.done) {
    done.hidden = false;
    done.textContent = `Done: ${fmt(s.done.step, 0)} steps in ${fmt(s.done.seconds, 1)} s on ${s.done.workers} workers; ` +
      `test loss ${fmt(s.done.test_loss, 4)}, test accuracy ${fmt(100 * s.done.test_accuracy, 2)} %` +
      (s.done.checkpoint ? `; checkpoint ${s.done.checkpoint}` : "");
  } else {
    done.hidden = true;
  }

  renderRing($("ring"), s.members || []);
  renderMembers($("members"), s.members || [], !s.done && p ? p.compute_ms : null);

  const h = s.history || [];
  // Both charts span the same steps, so they line up.
  const steps = h.length ? { xMin: h[0].step, xMax: h[h.length - 1].step } : {};
  chart($("loss-curve"), [
    { name: "training loss", cls: "train", points: h.filter(q => isFinite(q.loss)).map(q => [q.step, q.loss]) },
    { name: "test loss", cls: "test", points: h.filter(q => q.test_loss > 0).map(q => [q.step, q.test_loss]) },
  ], { ...steps, yLabel: "loss", yMin: 0 });
  const accPts = h.filter(q => q.test_accuracy > 0).map(q => [q.step, q.test_accuracy]);
  const pct = accPts.some(q => q[1] > 1);
  chart($("accuracy-curve"), [
    { name: "test accuracy", cls: "acc", points: accPts },
  ], { ...steps, yLabel: "accuracy", yMin: 0, yMax: pct ? 100 : 1 });

  const ck = $("checkpoint");
  clear(ck);
  if (s.checkpoint) {
    const c = s.checkpoint;
    const age = validTime(c.time) && validTime(s.time) ? fmtAge((Date.parse(s.time) - Date.parse(c.time)) / 1000) : "";
    for (const [k, v] of [["step", fmt(c.step, 0)], ["dir", s.checkpoint_path || c.dir], ["generation", String(c.gen)], ["age", age], ["params_sha256", c.params_sha256 || "—"]]) {
      ck.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
    }
  } else {
    ck.append(el("dt", {}, "none yet"));
  }

  const co = $("coordinators");
  clear(co);
  for (const c of s.coordinators || []) {
    co.append(el("li", { "data-id": c.id }, c.id + (c.id === s.leader ? " (leader)" : "") + (c.http ? " · " + c.http : "")));
  }
  if (!(s.coordinators || []).length) co.append(el("li", { class: "empty" }, "none registered"));

  const tb = $("events").tBodies[0];
  clear(tb);
  for (const ev of s.events || []) {
    tb.append(el("tr", { "data-kind": ev.kind },
      el("td", {}, fmtClock(ev.time)), el("td", { class: "kind " + ev.kind }, ev.kind),
      el("td", {}, ev.who || ""), el("td", {}, ev.gen ? String(ev.gen) : ""), el("td", {}, ev.detail || "")));
  }
  if (!(s.events || []).length) tb.append(el("tr", {}, el("td", { colspan: "5", class: "empty" }, "no events yet")));
}

async function poll() {
  try {
    const r = await fetch("api/snapshot", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.body.classList.remove("disconnected");
  } catch (e) {
    document.body.classList.add("disconnected");
    const st = $("state");
    st.textContent = "disconnected";
    st.dataset.state = "stale";
    st.title = String(e);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
