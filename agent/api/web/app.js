/* HackSky Edge dashboard: plain JavaScript over the central API (no build step), charts by uPlot.
 * Every figure on a page comes from the API request shown under it ("Query"). */
"use strict";

const REFRESH_MS = 5000;
const RANGES = [["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000], ["365d", 31536000]];
const ROLE_ORDER = ["power", "voltage", "current", "energy", "frequency", "power_factor", "temperature", "humidity"];
const ROLE_TITLE = {power: "Power", voltage: "Voltage", current: "Current", energy: "Energy", frequency: "Frequency",
  power_factor: "Power factor", temperature: "Temperature", humidity: "Humidity"};
const COLORS = ["#0b5cad", "#cf6a00", "#1a7f37", "#8250df", "#bf3989", "#0a7e8c", "#6e7781", "#9a6700"];
const LEVEL_COLOR = {low: "#1a7f37", medium: "#9a6700", high: "#cf222e", critical: "#8b0000"};

/* state the tests read (window.dash): charts by name, loads done, time of the first chart */
const dash = {charts: {}, drawn: new Set(), loads: 0, loaded: null, firstChartMs: null, interactiveMs: null,
  page: null, now: null, errors: 0, paused: ""};
window.dash = dash;

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
};

/* ---- token, API ---- */
const session = {
  get token() { return sessionStorage.getItem("hacksky.token"); },
  set token(v) { v ? sessionStorage.setItem("hacksky.token", v) : sessionStorage.removeItem("hacksky.token"); },
  get user() { return sessionStorage.getItem("hacksky.user") || ""; },
  set user(v) { sessionStorage.setItem("hacksky.user", v); },
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, {method = "GET", body} = {}) {
  const headers = {Accept: "application/json"};
  if (session.token) headers.Authorization = "Bearer " + session.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || response.statusText);
  return data;
}

const query = (path, params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
};

function showMessage(text) {
  const m = $("#message");
  m.textContent = text || "";
  m.hidden = !text;
}

let tokenResolve = null;
function askToken(why) {
  $("#token-why").textContent = (why ? why + " " : "") +
    "The token is kept in this tab only (session storage), never in a URL.";
  $("#token-input").value = "";
  $("#user-input").value = session.user;
  const dialog = $("#token-dialog");
  if (!dialog.open) dialog.showModal();
  $("#token-input").focus();
  return new Promise(resolve => { tokenResolve = resolve; });
}
function closeToken(saved) {
  $("#token-dialog").close();
  if (tokenResolve) { tokenResolve(saved); tokenResolve = null; }
}

/* lists that change rarely (devices, points): fetched again after a minute, or at once while empty */
const lists = {};
async function cachedItems(path, maxAgeMs = 60000) {
  const hit = lists[path];
  if (hit && hit.items.length && performance.now() - hit.at < maxAgeMs) return hit.items;
  const items = (await api(path)).items;
  lists[path] = {items, at: performance.now()};
  return items;
}

/* ---- time ---- */
const utc = () => $("#tz").value === "utc";
const pad = n => String(n).padStart(2, "0");
function fmtTime(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (utc()) return `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())} ` +
    `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())} UTC`;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
    `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}
const fmtAge = s => s === null || s === undefined ? "" : s < 90 ? `${s.toFixed(0)} s ago` :
  s < 5400 ? `${(s / 60).toFixed(0)} min ago` : s < 172800 ? `${(s / 3600).toFixed(1)} h ago` : `${(s / 86400).toFixed(0)} d ago`;
function fmtNum(v, digits = 5) {
  /* a number with up to ``digits`` significant digits (integers and large values as they are) */
  if (v === null || v === undefined) return "";
  if (typeof v !== "number" || Number.isInteger(v) || Math.abs(v) >= 10 ** digits) return String(v);
  const text = v.toPrecision(digits);
  return text.includes(".") && !text.includes("e") ? text.replace(/\.?0+$/, "") : text;
}
const iso = ms => new Date(ms).toISOString().replace(".000Z", "Z");

async function serverNow() {  /* the API's clock, not the browser's: a range is the API's last hour */
  const h = await api("/api/health");
  dash.now = Date.parse(h.now);
  return dash.now;
}

/* ---- pieces ---- */
const badge = (status, text) => el("span", {class: `badge s-${status}`, text: text || status});

function table(columns, rows, {empty = "nothing here", caption} = {}) {
  const t = el("table", {class: "data"}, caption ? el("caption", {class: "note", text: caption}) : null,
    el("thead", {}, el("tr", {}, columns.map(c => el("th", {scope: "col", class: c.num ? "num" : null, text: c.title})))));
  const body = el("tbody");
  if (!rows.length) body.append(el("tr", {}, el("td", {colspan: columns.length, class: "empty", text: empty})));
  for (const row of rows) {
    body.append(el("tr", {}, columns.map(c => {
      const v = c.cell(row);
      return el("td", {class: c.num ? "num" : null}, v instanceof Node ? v : v === undefined || v === null ? "" : String(v));
    })));
  }
  t.append(body);
  return t;
}

const queryNote = (...paths) => el("details", {class: "query"}, el("summary", {text: "Query"}),
  ...paths.map(p => el("div", {}, el("code", {text: "GET " + p}))));

function rangeButtons(current, onPick) {
  return el("div", {class: "ranges", role: "group", "aria-label": "Time range"}, RANGES.map(([name]) =>
    el("button", {type: "button", "aria-pressed": String(name === current), onclick: () => onPick(name), text: name})));
}
const rangeSeconds = name => (RANGES.find(r => r[0] === name) || RANGES[0])[1];

/* ---- charts ---- */
function chartWidth(box) { return Math.max(300, box.clientWidth - 4); }

function tickLabels(u, splits) {
  /* 24-hour times; the date at midnight (and on the first tick) when the axis spans days */
  const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
  return splits.map((v, i) => {
    const text = fmtTime(new Date(v * 1e3).toISOString()).replace(" UTC", "");
    if (span >= 86400 && (i === 0 || text.endsWith("00:00:00"))) return text.slice(5, 10);
    return span > 600 ? text.slice(11, 16) : text.slice(11, 19);
  });
}

function drawChart(name, box, series, data, {height = 220, points = false, xRange = null, yRange = {}} = {}) {
  /* a uPlot chart kept in dash.charts[name]; a refresh with the same series only sets its data.
   * Each unit has its own y scale: the first on the left axis, the second on the right. */
  const key = JSON.stringify(series.map(s => [s.label, s.unit]));
  const old = dash.charts[name];
  dash.drawn.add(name);
  if (old && old.key === key) {  /* a refresh: the same chart moves into the page's new box */
    box.replaceChildren(old.root);
    old.xRange = xRange;
    old.setData(data);
    return old;
  }
  if (old) old.destroy();
  box.textContent = "";
  const units = [...new Set(series.map(s => s.unit || ""))];
  const axes = [{values: tickLabels, space: 60}];
  units.slice(0, 2).forEach((unit, i) => axes.push({scale: `u:${unit}`, label: unit, size: 60, side: i ? 1 : 3,
    grid: {show: i === 0}}));
  const opts = {
    width: chartWidth(box), height,
    tzDate: ts => utc() ? uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC") : new Date(ts * 1e3),
    scales: {x: {time: true, range: (u, min, max) => u.xRange || [min, max]},
      ...Object.fromEntries(units.map(u => [`u:${u}`, yRange[u] ? {range: () => yRange[u]} : {}]))},
    axes,
    series: [{label: "time", value: (u, v) => v === null ? "" : fmtTime(new Date(v * 1e3).toISOString())},
      ...series.map((s, i) => ({label: s.label + (s.unit ? ` (${s.unit})` : ""), scale: `u:${s.unit || ""}`,
        stroke: s.color || COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
        points: s.points || {show: points}, paths: s.paths,
        value: (u, v) => v === null || v === undefined ? "–" : fmtNum(v)}))],
    legend: {live: true},
  };
  const chart = new uPlot({...opts, hooks: {init: [u => { u.xRange = xRange; }]}}, data, box);
  chart.key = key;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `chart of ${series.map(s => s.label).join(", ")}; values in the legend below it`);
  dash.charts[name] = chart;
  if (dash.firstChartMs === null) {
    dash.firstChartMs = performance.now();
    performance.mark("hacksky-first-chart");
  }
  return chart;
}

function dropCharts() {
  for (const c of Object.values(dash.charts)) c.destroy();
  dash.charts = {};
}

/* one point's answer from /api/series?format=columns as [times (s), values]: raw values (those whose
 * quality is not good as gaps), or bucket means */
function seriesColumns(answer) {
  if (answer.resolution !== "raw") return [answer.t, answer.mean];
  const ys = answer.value.slice();
  for (const [i] of answer.not_good) ys[i] = null;
  return [answer.t, ys];
}

/* samples of good and of other quality, from raw readings or bucket counts */
function qualityCounts(answer) {
  if (answer.resolution === "raw") return {good: answer.t.length - answer.not_good.length, bad: answer.not_good.length};
  const sum = xs => xs.reduce((a, b) => a + b, 0);
  const good = sum(answer.good_count);
  return {good, bad: sum(answer.count) - good};
}

/* the newest value and its quality ("good" unless the API says otherwise) */
function latest(answer) {
  const n = answer.t.length;
  if (!n) return null;
  if (answer.resolution !== "raw") return {value: answer.mean[n - 1], quality: null};
  const bad = answer.not_good.length && answer.not_good[answer.not_good.length - 1][0] === n - 1;
  return {value: answer.value[n - 1], quality: bad ? answer.not_good[answer.not_good.length - 1][1] : "good"};
}

/* several [xs, ys] on one time axis (uPlot.join): the missing samples of one are spanned, its nulls are gaps */
function joined(columns) {
  if (!columns.length) return [[]];
  return uPlot.join(columns);
}

/* ---- pages ---- */
const pages = {};

pages.fleet = {
  title: "Fleet",
  async load(main) {
    const [fleet, devices] = await Promise.all([api("/api/gateways"), api("/api/devices")]);
    const byGateway = {};
    for (const d of devices.items) (byGateway[d.gateway_id] = byGateway[d.gateway_id] || []).push(d);
    const counts = {online: 0, stale: 0, offline: 0};
    for (const g of fleet.items) counts[g.status]++;
    const parts = [el("h2", {text: "Gateways"}),
      el("div", {class: "summary"}, ["online", "stale", "offline"].map(s =>
        el("div", {}, el("b", {text: String(counts[s])}), badge(s)))),
      table([
        {title: "Gateway", cell: g => g.gateway_id},
        {title: "Status", cell: g => badge(g.status)},
        {title: "Last heartbeat", cell: g => `${fmtTime(g.last_seen)} (${fmtAge(g.last_seen_age_s)})`},
        {title: "Version", cell: g => g.agent_version},
        {title: "Host", cell: g => g.host},
        {title: "Clock offset", num: true, cell: g => g.clock_offset === null ? "" : `${g.clock_offset.toFixed(3)} s`},
        {title: "Buffered", num: true, cell: g => g.buffer_readings},
        {title: "Devices up / degraded / down", cell: g => `${g.devices_up} / ${g.devices_degraded} / ${g.devices_down}`},
        {title: "Last reload", cell: g => g.last_reload_at ? `${fmtTime(g.last_reload_at)}: ${g.last_reload_result || ""}` : ""},
      ], fleet.items, {empty: "no gateway has sent a heartbeat yet (gateways table empty)"}),
      queryNote("/api/gateways", "/api/devices")];
    const gatewayIds = [...new Set([...fleet.items.map(g => g.gateway_id), ...Object.keys(byGateway)])].sort();
    for (const gateway of gatewayIds) {
      const list = byGateway[gateway] || [];
      parts.push(el("h2", {text: `Devices of ${gateway}`}), table([
        {title: "Device", cell: d => d.device},
        {title: "Name", cell: d => d.name},
        {title: "Type", cell: d => d.type},
        {title: "Protocol", cell: d => d.protocol},
        {title: "Address", cell: d => d.address},
        {title: "Status", cell: d => badge(d.status)},
        {title: "Reason", cell: d => d.status_reason},
        {title: "Last seen", cell: d => fmtTime(d.last_seen)},
      ], list, {empty: "no devices registered"}));
    }
    main.replaceChildren(...parts);
  },
};

/* the resolution /api/series answers a range with (as agent/api/series.py decides) */
const resolutionOf = seconds => seconds <= 6 * 3600 ? "raw" : seconds <= 14 * 86400 ? "1m" : "1h";
const resolutionText = level => level === "raw" ? "raw readings" : `${level} means`;

/* On the first load of a view, each chart is drawn as soon as its data is in (the page's frame
 * first); a live refresh of the same view swaps the whole page at once, so nothing flickers. */
const firstLoad = () => dash.loaded !== location.hash;

pages.power = {
  title: "Power",
  async load(main, params) {
    this.meters = (await cachedItems("/api/devices")).filter(d => d.type === "power_meter");
    const now = dash.now;
    const range = params.get("range") || "24h";
    const meter = this.meters.find(m => `${m.gateway_id}/${m.device}` === params.get("meter")) || this.meters[0];
    if (!meter) {
      main.replaceChildren(el("p", {class: "empty", text: "no power meters registered (devices of type power_meter)"}));
      return;
    }
    const since = iso(now - rangeSeconds(range) * 1e3), until = iso(now);
    const base = {gateway: meter.gateway_id, device: meter.device};
    const pointsPath = query("/api/points", base);
    const statsPath = query("/api/statistics", {...base, since, until});
    const anomaliesPath = query("/api/power-data", {...base, since, until, anomalies_only: true, limit: 1000});
    const statsP = api(statsPath), anomaliesP = api(anomaliesPath);
    const points = await cachedItems(pointsPath);
    const byRole = {};
    for (const p of points) if (p.role && p.kind === "number") (byRole[p.role] = byRole[p.role] || []).push(p);
    const roles = [...ROLE_ORDER.filter(r => byRole[r]), ...Object.keys(byRole).filter(r => !ROLE_ORDER.includes(r))];
    const paths = roles.map(role => byRole[role].map(p =>
      query("/api/series", {...base, point: p.point, since, until, format: "columns"})));
    const answersP = roles.map((role, i) => Promise.all(paths[i].map(path => api(path))));

    const select = el("select", {id: "meter", onchange: e => go("power", {meter: e.target.value, range})},
      this.meters.map(m => el("option", {value: `${m.gateway_id}/${m.device}`, selected: m === meter,
        text: `${m.name || m.device} (${m.gateway_id}/${m.device})`})));
    const figure = (label) => { const b = el("b", {text: "…"}); return [b, el("div", {}, b, label)]; };
    const [avg, avgBox] = figure("average kW"), [peak, peakBox] = figure("peak kW");
    const [rowsN, rowsBox] = figure("power rows"), [anomaliesN, anomaliesBox] = figure("anomalies");
    const capped = el("div", {class: "note"});
    const head = [
      el("div", {class: "controls"}, el("label", {}, "Meter", select),
        rangeButtons(range, r => go("power", {meter: `${meter.gateway_id}/${meter.device}`, range: r}))),
      el("div", {class: "summary"}, avgBox, peakBox, rowsBox, anomaliesBox, capped),
      queryNote(statsPath, anomaliesPath, pointsPath)];
    const grid = el("div", {class: "charts"});
    const level = resolutionOf(rangeSeconds(range));
    const boxes = roles.map((role, i) => {
      const box = el("div", {class: "chart", id: `chart-${role}`});
      const unit = byRole[role][0].unit || "";
      grid.append(el("section", {class: "panel" + (role === "power" ? " wide" : ""), "aria-label": ROLE_TITLE[role] || role},
        el("h3", {text: `${ROLE_TITLE[role] || role}${unit ? " (" + unit + ")" : ""} · ${resolutionText(level)}`}),
        box, queryNote(...paths[i])));
      return box;
    });
    if (!roles.length) grid.append(el("p", {class: "empty", text: "this meter's points declare no role (role: power, voltage, ... in the device map)"}));
    const draw = (i, answers, anomalies) => {
      const role = roles[i];
      const columns = answers.map(seriesColumns);
      const series = byRole[role].map(p => ({label: p.point, unit: p.unit}));
      if (anomalies && anomalies.items.length) {  /* anomalies: red points on the power curve */
        columns.push([anomalies.items.map(r => Date.parse(r.timestamp) / 1e3).reverse(),
          anomalies.items.map(r => r.power_consumption).reverse()]);
        series.push({label: "anomaly", unit: byRole[role][0].unit, color: "#cf222e",
          points: {show: true, size: 8, fill: "#cf222e"}, paths: () => null});
      }
      drawChart(`power:${role}`, boxes[i], series, joined(columns), {xRange: [Date.parse(since) / 1e3, now / 1e3]});
    };
    const fill = (stats, anomalies) => {
      const summary = stats.power[0];
      avg.textContent = summary ? fmtNum(summary.avg_kw) : "–";
      peak.textContent = summary ? fmtNum(summary.max_kw) : "–";
      rowsN.textContent = summary ? String(summary.samples) : "0";
      anomaliesN.textContent = String(anomalies.total);
      capped.textContent = anomalies.total > anomalies.items.length ?
        `the newest ${anomalies.items.length} anomalies are marked` : "";
    };
    if (firstLoad()) {
      main.replaceChildren(...head, grid);
      await Promise.all([
        ...roles.map(async (role, i) => draw(i, await answersP[i], role === "power" ? await anomaliesP : null)),
        Promise.all([statsP, anomaliesP]).then(([stats, anomalies]) => fill(stats, anomalies))]);
      return;
    }
    const [stats, anomalies, ...answers] = await Promise.all([statsP, anomaliesP, ...answersP]);
    main.replaceChildren(...head, grid);
    fill(stats, anomalies);
    roles.forEach((role, i) => draw(i, answers[i], role === "power" ? anomalies : null));
  },
};

pages.signals = {
  title: "Signals",
  async load(main, params) {
    this.points = (await cachedItems("/api/points")).filter(p => p.kind !== "text");
    const now = dash.now;
    const selected = (params.get("sel") || "").split(",").filter(Boolean);
    const range = params.get("range") || "1h";
    const until = params.get("until") || iso(now);
    const since = params.get("since") || iso(Date.parse(until) - rangeSeconds(range) * 1e3);
    const known = new Map(this.points.map(p => [`${p.gateway_id}/${p.device}/${p.point}`, p]));
    const chosen = selected.filter(s => known.has(s)).map(s => known.get(s));
    const pathOf = (p, extra = {}) => query("/api/series", {gateway: p.gateway_id, device: p.device, point: p.point,
      since, until, format: "columns", ...extra});
    const paths = chosen.map(p => pathOf(p));
    const answersP = Promise.all(paths.map(path => api(path)));
    /* a long raw range: its 1-minute means drawn first, while the raw readings come */
    const span = (Date.parse(until) - Date.parse(since)) / 1e3;
    const preview = firstLoad() && chosen.length && resolutionOf(span) === "raw" && span > 1800 ?
      Promise.all(chosen.map(p => api(pathOf(p, {step: "1m"})))) : null;
    const keep = extra => ({sel: selected.join(","), range, ...(params.get("since") ? {since, until} : {}), ...extra});
    const picker = el("select", {id: "point-picker"},
      el("option", {value: "", text: "add a point…"}),
      this.points.map(p => {
        const k = `${p.gateway_id}/${p.device}/${p.point}`;
        return el("option", {value: k, disabled: selected.includes(k), text: `${p.device} · ${p.point}${p.unit ? " (" + p.unit + ")" : ""}`});
      }));
    picker.addEventListener("change", () => picker.value && go("signals", keep({sel: [...selected, picker.value].join(",")})));
    const chips = el("div", {class: "chips", "aria-label": "Points on the chart"}, chosen.map(p => {
      const k = `${p.gateway_id}/${p.device}/${p.point}`;
      return el("span", {class: "chip"}, `${p.device} · ${p.point}`,
        el("button", {type: "button", "aria-label": `remove ${p.device} ${p.point}`, text: "×",
          onclick: () => go("signals", keep({sel: selected.filter(s => s !== k).join(",")}))}));
    }));
    const fixed = params.get("since") ? el("span", {class: "note", text: `${fmtTime(since)} – ${fmtTime(until)}`}) : null;
    const box = el("div", {class: "chart", id: "chart-signals"});
    const status = el("div", {class: "quality"}, chosen.length ? el("p", {class: "note", text: "loading…"}) :
      el("p", {class: "empty", text: "choose points to chart"}));
    const draw = answers => drawChart("signals", box, chosen.map(p => ({label: `${p.device}·${p.point}`, unit: p.unit})),
      joined(answers.map(seriesColumns)), {height: 320, xRange: [Date.parse(since) / 1e3, Date.parse(until) / 1e3]});
    const frame = [
      el("div", {class: "controls"}, el("label", {}, "Points", picker), chips),
      el("div", {class: "controls"}, rangeButtons(params.get("since") ? "" : range,
        r => go("signals", {sel: selected.join(","), range: r})), fixed),
      el("section", {class: "panel"}, box, status, queryNote(...paths))];
    if (preview) {
      main.replaceChildren(...frame);
      const first = await Promise.race([preview, answersP.then(() => null)]);
      if (first) draw(first);
    }
    const answers = await answersP;
    if (!preview) main.replaceChildren(...frame);
    if (chosen.length) draw(answers);
    const rows = answers.map((answer, i) => ({point: chosen[i], answer, q: qualityCounts(answer), last: latest(answer)}));
    status.replaceChildren(table([
      {title: "Point", cell: r => `${r.point.device} · ${r.point.point}`},
      {title: "Unit", cell: r => r.point.unit},
      {title: "Resolution", cell: r => r.answer.resolution + (r.answer.truncated ? " (the newest 100,000)" : "")},
      {title: "Samples good", num: true, cell: r => r.q.good},
      {title: "Not good", num: true, cell: r => r.q.bad ? badge("bad", String(r.q.bad)) : "0"},
      {title: "Latest", num: true, cell: r => r.last ? fmtNum(r.last.value) : ""},
      {title: "Latest quality", cell: r => r.last && r.last.quality ? badge(r.last.quality === "good" ? "good" : "bad", r.last.quality) : ""},
    ], rows, {empty: "no points chosen"}));
  },
};

pages.alerts = {
  title: "Alerts",
  async load(main, params) {
    const state = params.get("state") || "open";
    const severity = params.get("severity") || "";
    const gateway = params.get("gateway") || "";
    const offset = Number(params.get("offset") || 0);
    const gateways = [...new Set((await cachedItems("/api/devices")).map(d => d.gateway_id))].sort();
    const filters = {gateway, severity, offset, limit: 50,
      resolved: state === "open" ? false : state === "resolved" ? true : undefined,
      acknowledged: state === "unacknowledged" ? false : undefined};
    if (state === "unacknowledged") filters.resolved = false;
    const path = query("/api/alerts", filters);
    const alerts = await api(path);
    const keep = extra => go("alerts", {state, severity, gateway, ...extra});
    const controls = el("div", {class: "controls"},
      el("label", {}, "Show", el("select", {id: "alert-state", onchange: e => keep({state: e.target.value})},
        [["open", "open"], ["unacknowledged", "open, not acknowledged"], ["resolved", "resolved"], ["all", "all"]].map(([v, t]) =>
          el("option", {value: v, selected: v === state, text: t})))),
      el("label", {}, "Severity", el("select", {id: "alert-severity", onchange: e => keep({severity: e.target.value})},
        ["", "critical", "high", "medium", "low"].map(v => el("option", {value: v, selected: v === severity, text: v || "any"})))),
      el("label", {}, "Gateway", el("select", {id: "alert-gateway", onchange: e => keep({gateway: e.target.value, offset: 0})},
        ["", ...gateways].map(v => el("option", {value: v, selected: v === gateway, text: v || "every gateway"})))),
      el("span", {class: "note", text: `${alerts.total} alert(s)`}),
      el("button", {type: "button", disabled: offset === 0, text: "Newer", onclick: () => keep({offset: Math.max(0, offset - 50)})}),
      el("button", {type: "button", disabled: offset + 50 >= alerts.total, text: "Older", onclick: () => keep({offset: offset + 50})}));
    main.replaceChildren(controls, table([
      {title: "Raised", cell: a => fmtTime(a.created_at)},
      {title: "Severity", cell: a => badge(a.severity)},
      {title: "Alert", cell: a => el("span", {}, el("b", {text: a.title}), a.message ? el("div", {class: "note", text: a.message}) : null)},
      {title: "Where", cell: a => {
        const where = [a.gateway_id, a.device, a.point].filter(Boolean).join(" · ");
        if (!a.device || !a.point || !a.gateway_id) return where;
        const t = Date.parse(a.created_at);
        const href = query("#/signals", {sel: `${a.gateway_id}/${a.device}/${a.point}`,
          since: iso(t - 3600e3), until: iso(t + 900e3)});
        return el("a", {href, title: "the point's chart around the alert", text: where});
      }},
      {title: "Value", num: true, cell: a => fmtNum(a.last_value)},
      {title: "State", cell: a => a.resolved ? badge("resolved", `resolved ${fmtTime(a.resolved_at)}`) :
        a.acknowledged ? badge("acknowledged", `acknowledged by ${a.acknowledged_by}`) : badge("open")},
      {title: "Actions", cell: a => el("span", {class: "actions"},
        a.acknowledged || a.resolved ? null : el("button", {type: "button", "data-alert": a.id, "data-action": "acknowledge",
          "aria-label": `Acknowledge: ${a.title}`, text: "Acknowledge", onclick: () => workflow(a.id, "acknowledge")}),
        a.resolved ? null : el("button", {type: "button", "data-alert": a.id, "data-action": "resolve",
          "aria-label": `Resolve: ${a.title}`, text: "Resolve", onclick: () => workflow(a.id, "resolve")}))},
    ], alerts.items, {empty: `no ${state === "all" ? "" : state + " "}alerts`}), queryNote(path));
  },
};

async function workflow(id, action) {
  /* acknowledge or resolve: needs the API's (write) token, asked for once per tab */
  if (!session.token || (action === "acknowledge" && !session.user)) {
    if (!await askToken(`To ${action} an alert the API asks for its token${action === "acknowledge" ? " and your name" : ""}.`)) return;
  }
  try {
    await api(`/api/alerts/${id}/${action}`, {method: "POST", body: action === "acknowledge" ? {by: session.user} : {}});
    showMessage("");
  } catch (e) {
    showMessage(e.status === 401 ? `${action} refused: the token is wrong (${e.message})` :
      e.status === 403 ? `${action} refused: ${e.message}` : `${action} failed: ${e.message}`);
    if (e.status === 401) session.token = null;
    return;
  }
  refresh();
}

pages.attacks = {
  title: "Attacks",
  async load(main, params) {
    this.points = await cachedItems("/api/points");
    const now = dash.now;
    const range = params.get("range") || "7d";
    const since = iso(now - rangeSeconds(range) * 1e3);
    const path = query("/api/attack-analysis", {since, limit: 500});
    const result = await api(path);
    const items = result.items;
    const levels = ["low", "medium", "high", "critical"];
    const box = el("div", {class: "chart", id: "chart-attacks"});
    const summary = el("div", {class: "summary"},
      result.summary.by_attack_type.map(t => el("div", {}, el("b", {text: String(t.count)}),
        `${t.attack_type} (${t.open} open, max ${fmtNum(t.max_confidence)}%)`)));
    main.replaceChildren(
      el("div", {class: "controls"}, rangeButtons(range, r => go("attacks", {range: r})),
        el("span", {class: "note", text: `${result.total} detection(s)`})),
      summary,
      el("section", {class: "panel", "aria-label": "Detections over time"},
        el("h3", {text: "Detections over time (confidence %)"}), box),
      table([
        {title: "Detected", cell: x => fmtTime(x.detected_at)},
        {title: "Until", cell: x => x.ended_at ? fmtTime(x.ended_at) : badge("open", "ongoing")},
        {title: "Type", cell: x => x.attack_type},
        {title: "Confidence", num: true, cell: x => `${fmtNum(x.confidence)}%`},
        {title: "Threat", cell: x => badge(x.threat_level)},
        {title: "Target", cell: x => [x.target_system, x.gateway_id].filter(Boolean).join(" · ")},
        {title: "Indicators", cell: x => indicatorList(x)},
        {title: "Signals", cell: x => signalsLink(x, this.points)},
      ], items, {empty: "no attack detections in this range"}),
      queryNote(path));
    const x0 = Date.parse(since) / 1e3, x1 = now / 1e3;
    const columns = levels.map(level => {
      const mine = items.filter(x => x.threat_level === level).reverse();
      return [mine.map(x => Date.parse(x.detected_at) / 1e3), mine.map(x => x.confidence)];
    });
    drawChart("attacks", box, [...levels.map(level => ({label: level, unit: "%", color: LEVEL_COLOR[level],
      points: {show: true, size: 9, fill: LEVEL_COLOR[level]}, paths: () => null}))],
    joined(columns), {height: 180, xRange: [x0, x1], yRange: {"%": [0, 100]}});
  },
};

function indicatorList(x) {
  const ind = x.indicators || {};
  const findings = Array.isArray(ind.findings) ? ind.findings : [];
  const list = el("ul", {class: "ind"}, findings.slice(0, 6).map(f =>
    el("li", {}, `${f.check || ""} ${f.name || ""}`.trim(), f.signals && f.signals.length ? ` on ${f.signals.join(", ")}` : "",
      f.score !== undefined ? ` (score ${f.score})` : "")));
  if (!findings.length && ind.signals) list.append(el("li", {text: `signals ${ind.signals.join(", ")}`}));
  if (!findings.length && !ind.signals) list.append(el("li", {text: x.description || JSON.stringify(ind)}));
  return list;
}

function signalsOf(x, points) {
  /* the detection's signals as device points of its gateway: by point name or device.point */
  const names = (x.indicators && x.indicators.signals) || [];
  const mine = points.filter(p => !x.gateway_id || p.gateway_id === x.gateway_id)
    .sort((a, b) => (b.device === x.device) - (a.device === x.device));  /* the detection's own device first */
  const found = [];
  for (const name of names) {
    const p = mine.find(q => q.point === name || `${q.device}.${q.point}` === name || `${q.device}/${q.point}` === name);
    if (p) found.push(`${p.gateway_id}/${p.device}/${p.point}`);
  }
  return [...new Set(found)];
}

function signalsLink(x, points) {
  const sel = signalsOf(x, points);
  if (!sel.length) return "";
  const start = Date.parse(x.detected_at), end = x.ended_at ? Date.parse(x.ended_at) : dash.now;
  const pad = Math.max(15 * 60e3, (end - start) / 2);
  const href = query("#/signals", {sel: sel.join(","), since: iso(start - pad), until: iso(end + pad)});
  return el("a", {href, text: `${sel.length} signal(s) around it`});
}

/* ---- routing, refresh ---- */
function route() {
  const [name, qs] = location.hash.replace(/^#\/?/, "").split("?");
  return {name: pages[name] ? name : "fleet", params: new URLSearchParams(qs || "")};
}

function go(name, params) {
  location.hash = query(`#/${name}`, params || {});
}

let loading = false, again = false;
async function refresh() {
  if (loading) { again = true; return; }
  loading = true;
  const {name, params} = route();
  const main = $("#main");
  if (dash.page !== name) {
    dropCharts();
    main.replaceChildren(el("p", {class: "note", text: "loading…"}));
    dash.page = name;
    document.title = `${pages[name].title} · HackSky Edge`;
    for (const a of document.querySelectorAll("nav a")) a.setAttribute("aria-current", a.dataset.page === name ? "page" : "false");
  }
  const hash = location.hash;
  dash.drawn = new Set();
  try {
    await serverNow();  /* the API's clock: ranges and the "updated" time are the API's */
    await pages[name].load(main, params);
    for (const [chartName, chart] of Object.entries(dash.charts)) {
      if (!dash.drawn.has(chartName)) { chart.destroy(); delete dash.charts[chartName]; }
    }
    dash.loaded = hash;
    dash.loads++;
    if (dash.interactiveMs === null) dash.interactiveMs = performance.now();  /* the first page, all drawn */
    $("#updated").textContent = `updated ${fmtTime(iso(dash.now))}`;
    $("#updated").title = "the page refreshes every 5 s while nothing in it has the focus";
    if (!$("#message").textContent.includes("refused")) showMessage("");
  } catch (e) {
    dash.errors++;
    if (e.status === 401) {
      session.token = null;
      dash.paused = "paused: a token is needed";  /* no dialog every 5 s: the Token button asks again */
      showMessage("This API asks for a token to read: give it with the Token button.");
      if (!$("#token-dialog").open) askToken("This API asks for a read token.").then(ok => {
        if (ok) { dash.paused = ""; refresh(); }
      });
    } else showMessage(`could not load ${pages[name].title}: ${e.message}`);
  } finally {
    loading = false;
    if (again) { again = false; refresh(); }
  }
}

function busyWith() {
  /* why the live refresh waits: a token to give, or the user at work in the page (a control with
   * the keyboard focus, an open Query panel): rebuilding the page would take it away */
  if (dash.paused) return dash.paused;
  const active = document.activeElement;
  if (active && active !== $("#main") && $("#main").contains(active)) return "paused while you use the page";
  if ($("#main details[open]")) return "paused while a query is open";
  return "";
}

function start() {
  $("#tz").value = localStorage.getItem("hacksky.tz") || "local";
  $("#tz").addEventListener("change", e => { localStorage.setItem("hacksky.tz", e.target.value); dropCharts(); dash.page = null; refresh(); });
  $("#token-button").addEventListener("click", () => askToken("").then(ok => {
    if (ok) { dash.paused = ""; refresh(); }
  }));
  $("#token-save").addEventListener("click", () => {
    const token = $("#token-input").value.trim(), user = $("#user-input").value.trim();
    if (user) session.user = user;
    if (token) session.token = token;
    closeToken(Boolean(session.token));
  });
  for (const input of ["#token-input", "#user-input"]) {
    $(input).addEventListener("keydown", e => { if (e.key === "Enter") { e.preventDefault(); $("#token-save").click(); } });
  }
  $("#token-forget").addEventListener("click", () => { session.token = null; closeToken(false); });
  $("#token-cancel").addEventListener("click", () => closeToken(false));
  $("#token-dialog").addEventListener("cancel", () => closeToken(false));
  window.addEventListener("hashchange", () => {
    const {name} = route();
    if (dash.page !== name) dash.page = null;
    refresh().then(() => $("#main").focus({preventScroll: true}));
  });
  window.addEventListener("resize", () => {
    for (const c of Object.values(dash.charts)) c.setSize({width: chartWidth(c.root.parentElement), height: c.height});
  });
  setInterval(() => {
    const busy = busyWith();
    if (busy && $("#live").checked) $("#updated").textContent = `live refresh ${busy}`;
    if ($("#live").checked && document.visibilityState === "visible" && !$("#token-dialog").open && !busy) refresh();
  }, REFRESH_MS);
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
