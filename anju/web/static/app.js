// The console: sign-in, live open alarms over Server-Sent Events, actions, history.
// Every value from a device or a site file reaches the page through textContent only:
// nothing is ever parsed as HTML (and the page's CSP allows no inline script anyway).
import { getLang, setLang, t } from "./i18n.js";

const SEV_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const KINDS = ["elevator", "smoke", "water", "camera"];
// rules whose alarms change the device-health view (GET /devices/health): by the id's end
const HEALTH_RULE = /\.(offline|obstructed|battery_low)$/;
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem("anju.token");
let session = null;
let source = null;
let view = "open";
let history = [];
let detailId = null;
let audio = null;
let cues = 0;
const alarms = new Map(); // open alarms by id: the API's rows
const fresh = new Set(); // ids raised while we watched: flashed once

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin",
                                body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error) || `HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

// -- time ------------------------------------------------------------------------------
function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}
function clock(ms) {
  return new Date(ms).toLocaleString(getLang() === "en" ? "en-GB" : "zh-CN", { hour12: false });
}
function tickTimes() {
  const now = Date.now();
  for (const td of document.querySelectorAll("td[data-since]")) {
    td.textContent = duration(now - Number(td.dataset.since));
  }
  for (const td of document.querySelectorAll("td[data-due]")) {
    const left = Number(td.dataset.due) - now;
    td.textContent = left >= 0 ? duration(left) : `${t("overdue")} ${duration(-left)}`;
    td.classList.toggle("overdue", left < 0);
  }
}

// -- sign-in ---------------------------------------------------------------------------
async function signIn(value) {
  const r = await fetch("/session", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: value }) });
  if (!r.ok) {
    const err = new Error(r.status === 429 ? t("signin_limited") : t("signin_failed"));
    err.status = r.status;
    throw err;
  }
  return r.json();
}

function showSignIn(message) {
  $("signin").hidden = false;
  $("console").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin-error").textContent = message || "";
}

async function start(sess) {
  session = sess;
  $("signin").hidden = true;
  $("console").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = session.team;
  fillFilters();
  connect();
}

function unlockAudio() {
  // Browsers start audio only after a gesture: the sign-in click is one.
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch { audio = null; }
}

// -- live ------------------------------------------------------------------------------
function setLive(on) {
  $("live").className = on ? "live on" : "live off";
  $("live").dataset.i18n = on ? "live" : "offline";
  $("live").textContent = t(on ? "live" : "offline");
}

function connect() {
  if (source) source.close();
  // The cookie set at sign-in carries the token: EventSource cannot send headers. On a
  // dropped connection the browser reconnects by itself, sending Last-Event-ID.
  source = new EventSource("/events");
  source.addEventListener("open", () => setLive(true));
  source.addEventListener("error", () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      // refused (the cookie is gone): sign in again with the token of this tab, then resume
      setTimeout(async () => {
        try { await signIn(token); connect(); } catch (e) { showSignIn(e.message); }
      }, 2000);
    }
  });
  source.addEventListener("snapshot", (m) => {
    const data = JSON.parse(m.data);
    alarms.clear();
    for (const row of data.alarms) alarms.set(row.alarm_id, row);
    render();
  });
  source.addEventListener("alarm", (m) => {
    const { event, alarm } = JSON.parse(m.data);
    if (alarm.state === "cleared") alarms.delete(alarm.alarm_id);
    else alarms.set(alarm.alarm_id, alarm);
    if (event.event === "raised") {
      fresh.add(alarm.alarm_id);
      if (event.severity === "critical") cue(alarm);
    }
    if (detailId === alarm.alarm_id) openDetail(detailId);
    if (HEALTH_RULE.test(alarm.rule)) refreshHealthSoon();
    render();
  });
}

function cue(row) {
  cues += 1;
  document.body.dataset.cues = String(cues);
  const banner = $("cue");
  banner.hidden = false;
  banner.textContent = `${t("new_critical")}${row.message} · ${where(row)}`;
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.value = 0.15;
    osc.connect(gain).connect(audio.destination);
    const at = audio.currentTime;
    osc.start(at);
    osc.frequency.setValueAtTime(660, at + 0.25);
    osc.stop(at + 0.6);
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  } catch { /* no audio device: the banner still shows */ }
}

// -- filters ---------------------------------------------------------------------------
function options(select, values, label, anyKey = "any") {
  const keep = select.value;
  select.replaceChildren(el("option", t(anyKey)));
  select.firstChild.value = "";
  for (const v of values) {
    const o = el("option", label ? label(v) : v);
    o.value = v;
    select.append(o);
  }
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function fillFilters() {
  if (!session) return;
  options($("f-estate"), session.estates.map((e) => e.id),
          (id) => { const e = session.estates.find((x) => x.id === id); return e.name ? `${e.name} (${id})` : id; });
  const est = $("f-estate").value;
  const buildings = new Set();
  for (const e of session.estates) {
    if (!est || e.id === est) for (const b of e.buildings) buildings.add(b);
  }
  options($("f-building"), [...buildings].sort());
  options($("f-kind"), KINDS, (k) => t("kinds", k));
  options($("f-severity"), Object.keys(SEV_RANK), (s) => t("sev", s));
  options($("f-state"), ["raised", "acknowledged"], (s) => t("st", s), "open_any");
}

function filters() {
  return { estate: $("f-estate").value, building: $("f-building").value,
           kind: $("f-kind").value, severity: $("f-severity").value,
           state: $("f-state").value };
}

function passes(row, f) {
  return (!f.estate || row.estate === f.estate) && (!f.building || row.building === f.building)
    && (!f.kind || row.kind === f.kind) && (!f.severity || row.severity === f.severity)
    && (!f.state || row.state === f.state);
}

// -- rendering -------------------------------------------------------------------------
function where(row) {
  const parts = [row.estate, row.building];
  if (row.floor !== null && row.floor !== undefined) parts.push(t("floor", row.floor));
  if (row.zone) parts.push(row.zone);
  if (row.device) parts.push(row.device);
  return parts.join(" · ");
}

function sevBadge(sev) { return el("span", t("sev", sev), `sev sev-${sev}`); }

function alarmRow(row, closed) {
  const tr = el("tr");
  tr.dataset.id = row.alarm_id;
  tr.dataset.severity = row.severity;
  if (fresh.has(row.alarm_id)) { tr.classList.add("new"); fresh.delete(row.alarm_id); }
  const sev = el("td");
  sev.append(sevBadge(row.severity));
  const what = el("td");
  what.append(el("div", row.message, "msg"), el("small", `${t("kinds", row.kind)} · ${row.rule}`));
  tr.append(sev, what, el("td", where(row), "where"), el("td", t("st", row.state), "state"));
  if (row.held) {  // recorded, not delivered (issue 18): say why, and by what
    tr.classList.add("held", `held-${row.held}`);
    tr.dataset.held = row.held;
    const why = t("held", row.held);
    what.append(el("div", typeof why === "function" ? why(row.held_by ?? "") : why, "held-why"));
  }
  const raised = row.raised_at ?? row.started_at;
  if (closed) {
    tr.append(el("td", duration((row.cleared_at ?? raised) - raised)),
              el("td", row.cleared_at ? clock(row.cleared_at) : t("none")));
  } else {
    const age = el("td");
    age.dataset.since = String(raised);
    const due = el("td");
    if (row.state === "raised" && row.next_escalation_ms) due.dataset.due = String(row.next_escalation_ms);
    else due.textContent = row.escalations ? t("escalated_n", row.escalations) : t("none");
    tr.append(age, due);
  }
  tr.append(el("td", row.assigned_to || t("none"), "assignee"));
  tr.addEventListener("click", () => openDetail(row.alarm_id));
  return tr;
}

function render() {
  const f = filters();
  const tbody = $("alarms").querySelector("tbody");
  if (view === "health") { renderHealth(); return; }
  let rows;
  if (view === "open") {
    rows = [...alarms.values()].filter((r) => passes(r, f));
    rows.sort((a, b) => (SEV_RANK[a.severity] - SEV_RANK[b.severity])
      || ((a.raised_at ?? a.started_at) - (b.raised_at ?? b.started_at)));
  } else {
    rows = history;
  }
  tbody.replaceChildren(...rows.map((r) => alarmRow(r, view === "history")));
  $("count").textContent = t("count", rows.length);
  tickTimes();
}

// Device health: the server's counts per building and each device's last reading time
// (GET /devices/health), fetched when the view opens, when a filter changes and when an
// offline / obstructed / battery alarm arrives on the stream: no polling.
let healthDoc = null;
let healthPick = null; // "estate/building" whose every device is listed, or null
let healthTimer = null;

async function loadHealth() {
  const f = filters();
  const q = new URLSearchParams({ devices: healthPick ? "all" : "problems", limit: "2000" });
  const [pe, pb] = healthPick ? healthPick.split("/") : [f.estate, f.building];
  if (pe) q.set("estate", pe);
  if (pb) q.set("building", pb);
  try {
    const doc = await api(`/devices/health?${q}`);
    if (healthPick) {
      const all = await api(`/devices/health?${new URLSearchParams({ devices: "none",
        ...(f.estate ? { estate: f.estate } : {}), ...(f.building ? { building: f.building } : {}) })}`);
      doc.buildings = all.buildings;
    }
    healthDoc = doc;
  } catch (e) {
    $("count").textContent = e.message;
    return;
  }
  if (view === "health") render();
}

function refreshHealthSoon() {
  if (view !== "health" || healthTimer) return;
  healthTimer = setTimeout(() => { healthTimer = null; loadHealth(); }, 500);
}

function renderHealth() {
  const doc = healthDoc;
  if (!doc) { loadHealth(); return; }
  const name = (id) => { const e = session.estates.find((x) => x.id === id); return e && e.name ? e.name : id; };
  // buildings that need attention first (offline, obstructed, battery, silent), then in order
  const bad = (h) => (h.offline || h.obstructed || h.battery_low || h.reporting < h.devices ? 0 : 1);
  const buildings = [...doc.buildings].sort((a, b) => bad(a) - bad(b));
  $("health-buildings").querySelector("tbody").replaceChildren(...buildings.map((h) => {
    const tr = el("tr");
    const key = `${h.estate}/${h.building}`;
    tr.dataset.key = key;
    if (key === healthPick) tr.classList.add("picked");
    if (!bad(h)) tr.classList.add("attention");
    const cell = (n, cls) => el("td", n, n ? cls : undefined);
    tr.append(el("td", name(h.estate)), el("td", h.building), el("td", h.devices),
              el("td", h.reporting, h.reporting < h.devices ? "warn" : undefined),
              cell(h.offline, "bad"), cell(h.obstructed, "bad"), cell(h.battery_low, "warn"),
              el("td", h.last_reading_at ? clock(h.last_reading_at) : t("never")));
    tr.addEventListener("click", () => {
      healthPick = healthPick === key ? null : key;
      loadHealth();
    });
    return tr;
  }));
  $("health-devices-title").textContent = healthPick ? t("building_devices", healthPick.replace("/", " · "))
    : t("problem_devices");
  $("health-devices").querySelector("tbody").replaceChildren(...doc.devices.map((d) => {
    const tr = el("tr");
    tr.dataset.device = d.device;
    const flags = ["offline", "obstructed", "battery_low"].filter((k) => d[k]);
    if (d.last_received_at === null) flags.push("never");
    const place = [d.floor !== null ? t("floor", d.floor) : null, d.zone].filter(Boolean).join(" · ");
    tr.append(el("td", d.device), el("td", t("kinds", d.kind)),
              el("td", `${d.estate} · ${d.building}${place ? ` · ${place}` : ""}`),
              el("td", flags.length ? flags.map((k) => t(k === "offline" ? "offline_devices" : k)).join(", ")
                 : t("healthy"), flags.length ? "bad" : undefined),
              el("td", d.last_received_at !== null ? clock(d.last_received_at) : t("never"), "last"),
              el("td", d.last_received_at !== null ? duration(doc.now - d.last_received_at) : t("none")));
    return tr;
  }));
  $("count").textContent = t("count", doc.buildings.length);
}

async function loadHistory() {
  const f = filters();
  const q = new URLSearchParams({ state: "cleared", limit: "500" });
  for (const k of ["estate", "building", "kind", "severity"]) if (f[k]) q.set(k, f[k]);
  if ($("f-since").value) q.set("since", String(Date.parse($("f-since").value)));
  if ($("f-until").value) q.set("until", String(Date.parse($("f-until").value) + 86400000));
  try {
    history = (await api(`/alarms?${q}`)).alarms;
  } catch (e) {
    history = [];
    $("count").textContent = e.message;
    return;
  }
  render();
}

function setView(v) {
  view = v;
  for (const [id, name] of [["tab-open", "open"], ["tab-history", "history"], ["tab-health", "health"]]) {
    $(id).classList.toggle("on", v === name);
  }
  $("alarms").hidden = v === "health";
  $("health").hidden = v !== "health";
  $("f-state-wrap").hidden = v !== "open";
  for (const id of ["f-since-wrap", "f-until-wrap", "f-search"]) $(id).hidden = v !== "history";
  if (v === "history") loadHistory();
  else if (v === "health") loadHealth();
  else render();
}

// -- one alarm -------------------------------------------------------------------------
function eventText(ev) {
  const d = ev.details || {};
  if (ev.event === "acknowledged" && d.ack) return `${d.ack.by}${d.ack.note ? `: ${d.ack.note}` : ""}`;
  if (ev.event === "assigned" && d.assign) return `→ ${d.assign.to} (${d.assign.by})${d.assign.note ? `: ${d.assign.note}` : ""}`;
  if (ev.event === "commented" && d.comment) return `${d.comment.by}: ${d.comment.text}`;
  if (ev.event === "escalated" && d.escalation) return `#${d.escalation.level} → ${ev.teams.join(", ")}`;
  if (ev.event === "raised") return `${ev.message} → ${ev.teams.join(", ")}`;
  return ev.message;
}

async function openDetail(id) {
  detailId = id;
  let doc;
  try { doc = await api(`/alarms/${encodeURIComponent(id)}`); } catch (e) {
    $("action-error").textContent = e.message;
    return;
  }
  if (detailId !== id) return;
  const a = doc.alarm;
  $("detail").hidden = false;
  $("detail").dataset.id = id;
  $("d-title").replaceChildren(sevBadge(a.severity), document.createTextNode(` ${a.message}`));
  const facts = [["rule", a.rule], ["kind", t("kinds", a.kind)], ["where", where(a)],
                 ["state", t("st", a.state)], ["started", clock(a.started_at)],
                 ["value", a.value ?? t("none")], ["assignee", a.assigned_to || t("none")]];
  $("d-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", t(k)), el("dd", v)]));
  $("ack-form").hidden = a.state !== "raised";
  $("assign-form").hidden = a.state === "cleared";
  $("d-timeline").replaceChildren(...doc.events.map((ev) => {
    const li = el("li");
    li.dataset.event = ev.event;
    const time = el("time", clock(ev.ts));
    li.append(time, el("span", t("ev", ev.event), "ev"), el("span", eventText(ev), "text"));
    return li;
  }));
  $("d-deliveries").querySelector("tbody").replaceChildren(...doc.deliveries.map((d) => {
    const seq = Number(d.event_id.split(":")[1]);
    const ev = doc.events.find((e) => e.seq === seq);
    const tr = el("tr");
    tr.append(el("td", ev ? t("ev", ev.event) : d.event_id), el("td", d.team),
              el("td", `${t("out", d.state)}${d.last_status ? ` (${d.last_status})` : ""}`),
              el("td", d.attempts));
    return tr;
  }));
}

async function act(path, body, form) {
  $("action-error").textContent = "";
  try {
    await api(`/alarms/${encodeURIComponent(detailId)}/${path}`, { method: "POST", body });
    form.reset();
    rememberName();
    await openDetail(detailId);
  } catch (e) {
    $("action-error").textContent = e.message;
  }
}

function rememberName() {
  const name = localStorage.getItem("anju.name");
  if (name) for (const id of ["ack-by", "assign-by", "comment-by"]) if (!$(id).value) $(id).value = name;
}

// -- wiring ----------------------------------------------------------------------------
function wire() {
  $("lang").addEventListener("click", () => {
    setLang(getLang() === "zh" ? "en" : "zh");
    $("lang").textContent = getLang() === "zh" ? "English" : "中文";
    fillFilters();
    render();
    if (detailId && !$("detail").hidden) openDetail(detailId);
  });
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    unlockAudio();
    const value = $("token").value.trim();
    try {
      const sess = await signIn(value);
      token = value;
      sessionStorage.setItem("anju.token", token);
      $("token").value = "";
      await start(sess);
    } catch (err) {
      showSignIn(err.message);
    }
  });
  $("signout").addEventListener("click", async () => {
    if (source) source.close();
    await fetch("/session", { method: "DELETE", credentials: "same-origin" });
    sessionStorage.removeItem("anju.token");
    token = null;
    alarms.clear();
    showSignIn("");
  });
  for (const id of ["f-estate", "f-building", "f-kind", "f-severity", "f-state"]) {
    $(id).addEventListener("change", () => {
      if (id === "f-estate") fillFilters();
      if (view === "history") loadHistory();
      else if (view === "health") { healthPick = null; loadHealth(); }
      else render();
    });
  }
  $("f-search").addEventListener("click", loadHistory);
  $("tab-open").addEventListener("click", () => setView("open"));
  $("tab-history").addEventListener("click", () => setView("history"));
  $("tab-health").addEventListener("click", () => setView("health"));
  $("cue").addEventListener("click", () => { $("cue").hidden = true; });
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; detailId = null; });
  const keepName = (input) => { if (input.value) localStorage.setItem("anju.name", input.value); };
  $("ack-form").addEventListener("submit", (e) => {
    e.preventDefault();
    keepName($("ack-by"));
    act("ack", { by: $("ack-by").value, note: $("ack-note").value }, e.target);
  });
  $("assign-form").addEventListener("submit", (e) => {
    e.preventDefault();
    keepName($("assign-by"));
    act("assign", { to: $("assign-to").value, by: $("assign-by").value }, e.target);
  });
  $("comment-form").addEventListener("submit", (e) => {
    e.preventDefault();
    keepName($("comment-by"));
    act("comments", { by: $("comment-by").value, text: $("comment-text").value }, e.target);
  });
  setInterval(tickTimes, 1000); // the clocks on the page, not the server: no polling
}

async function main() {
  setLang(getLang());
  $("lang").textContent = getLang() === "zh" ? "English" : "中文";
  wire();
  rememberName();
  if (token) {
    try { await start(await signIn(token)); return; } catch { sessionStorage.removeItem("anju.token"); }
  }
  showSignIn("");
}

main();
