"use strict";
const C = Centralino, el = C.el;
let who = null, snap = null, snapAt = 0, calls = [], sessions = [], refreshing = null;

function metric(attrs, text) { return el("td", { class: "num", ...attrs }, text); }

function renderQueues() {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  const elapsed = (Date.now() - snapAt) / 1000;
  for (const [name, q] of Object.entries(snap.queues)) {
    const a = q.agents || {};
    const m = (k, text) => metric({ "data-queue": name, "data-metric": k }, text);
    body.append(el("tr", { "data-queue": name }, el("td", {}, name),
      m("waiting", q.waiting),
      m("longest_wait", C.fmtSeconds(q.waiting ? q.longest_wait + elapsed : 0)),
      m("offered", q.offered ?? 0), m("answered", q.answered ?? 0),
      m("service_level", C.fmtPercent(q.service_level)), m("abandon_rate", C.fmtPercent(q.abandon_rate)),
      m("asa", C.fmtSeconds(q.asa)), m("aht", C.fmtSeconds(q.aht)),
      m("agents", `${a.available ?? 0} / ${(a["on-call"] ?? 0) + (a.ringing ?? 0)} / ${a.paused ?? 0}`)));
  }
}

function renderAgents() {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  const elapsed = (Date.now() - snapAt) / 1000;
  for (const [ext, a] of Object.entries(snap.agents)) {
    const m = (k, text) => el("td", { "data-agent": ext, "data-metric": k }, text);
    const actions = el("td", {});
    if (a.state !== "logged-out" && a.state !== "paused")
      actions.append(el("button", { "data-agent": ext, "data-action": "pause", onclick: () => act(ext, "pause") }, "Force pause"));
    if (a.state === "paused")
      actions.append(el("button", { "data-agent": ext, "data-action": "ready", onclick: () => act(ext, "ready") }, "Ready"));
    if (a.state === "on-call" && who.extension) {
      const mine = sessions.find((s) => s.supervisor === who.extension && s.agent === ext);
      for (const mode of ["listen", "whisper", "barge"])
        actions.append(el("button", { "data-agent": ext, "data-action": mode, class: mine && mine.mode === mode ? "primary" : "",
                                      title: mine ? `switch to ${mode}` : `ring ${who.extension} and ${mode}`,
                                      onclick: () => monitor(ext, mode, mine) }, mode));
    }
    body.append(el("tr", { "data-agent": ext }, el("td", {}, ext),
      m("state", el("span", { class: `state state-${a.state}` }, a.state + (a.pause_reason ? ` (${a.pause_reason})` : ""))),
      m("time_in_state", C.fmtSeconds(a.since + elapsed)), m("calls", a.calls), m("talk", C.fmtSeconds(a.talk)),
      el("td", {}, a.queues.join(", ")), actions));
  }
}

function renderCalls() {
  const body = document.querySelector("#calls tbody");
  body.replaceChildren();
  for (const c of calls) {
    const hang = el("button", { onclick: () => C.api("POST", `/calls/${encodeURIComponent(c.id)}/hangup`).catch(alert) }, "Hang up");
    const tools = el("td", {}, c.state === "answered" ? hang : "");
    if (c.queue && snap) {  // a caller waiting in a queue: move it to another, keeping its wait
      const others = Object.keys(snap.queues).filter((q) => q !== c.queue);
      if (others.length) {
        const pick = el("select", { "data-call": c.id, "data-action": "move-to" }, ...others.map((q) => el("option", { value: q }, q)));
        tools.append(" ", pick, el("button", { "data-call": c.id, "data-action": "move", onclick: () =>
          C.api("POST", `/calls/${encodeURIComponent(c.id)}/queue`, { queue: pick.value }).then(refresh).catch((e) => alert(e.message)) },
          "Move"));
      }
    }
    body.append(el("tr", { "data-call": c.id }, el("td", {}, c.caller), el("td", {}, c.called),
      el("td", {}, c.queue ? `waiting in ${c.queue}` : c.state),
      el("td", {}, c.extensions.join(", ") || c.destination), el("td", {}, C.fmtSeconds(Date.now() / 1000 - c.started)),
      tools));
  }
}

async function act(ext, action) {
  try { await C.api("POST", `/agents/${encodeURIComponent(ext)}/state`, { action, reason: "supervisor" }); }
  catch (err) { alert(err.message); }
}

async function monitor(ext, mode, session) {  // a running session switches mode; else the phone rings
  try {
    if (session) await C.api("PUT", `/monitor/${encodeURIComponent(who.extension)}`, { mode });
    else await C.api("POST", `/agents/${encodeURIComponent(ext)}/monitor`, { mode });
    await refresh();
  } catch (err) { alert(err.message); }
}

async function refresh() {
  const [q, l, m] = await Promise.all([C.api("GET", "/queues"), C.api("GET", "/calls"), C.api("GET", "/monitor")]);
  snap = q; snapAt = Date.now(); calls = l.calls; sessions = m.sessions;
  renderQueues(); renderAgents(); renderCalls();
  document.body.dataset.updated = String(snapAt);
}

// Many events in a burst make one refresh: at most one in flight, the next no sooner than
// REFRESH_GAP ms after the last began (three requests each: well inside the API's rate limit),
// and one more after it when events came in meanwhile.
const REFRESH_GAP = 200;
let inFlight = false, again = false, lastRefresh = 0;
function soon() {
  if (inFlight) { again = true; return; }
  if (refreshing) return;
  refreshing = setTimeout(async () => {
    refreshing = null; inFlight = true; again = false; lastRefresh = Date.now();
    try { await refresh(); } catch (err) { console.error(err); }
    inFlight = false;
    if (again) soon();
  }, Math.max(20, REFRESH_GAP - (Date.now() - lastRefresh)));
}

let chartTimer = null;  // today's chart changes slowly: redrawn at most every 5 s
function chartSoon() {
  if (!chartTimer) chartTimer = setTimeout(() => { chartTimer = null; chart().catch(console.error); }, 5000);
}

async function chart() {
  const data = await C.api("GET", "/reports/today?by=interval&interval=60");
  const canvas = document.getElementById("chart"), g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const rows = data.rows, max = Math.max(1, ...rows.map((r) => r.offered));
  const w = canvas.width / 24;
  g.font = "11px system-ui";
  for (const r of rows) {
    const hour = Number(String(r.interval).slice(11, 13)) || 0;
    const h = (canvas.height - 20) * r.offered / max, ha = (canvas.height - 20) * r.answered / max;
    g.fillStyle = "#475569"; g.fillRect(hour * w + 4, canvas.height - 16 - h, w - 8, h);
    g.fillStyle = "#22c55e"; g.fillRect(hour * w + 4, canvas.height - 16 - ha, w - 8, ha);
  }
  g.fillStyle = "#94a3b8";
  for (let h = 0; h < 24; h += 2) g.fillText(String(h).padStart(2, "0"), h * w + 4, canvas.height - 3);
}

(async () => {
  who = await C.me();
  if (who.role === "agent") { location.href = "/agent"; return; }
  document.getElementById("who").textContent = `${who.name} (${who.role})`;
  document.getElementById("logout").onclick = C.logout;
  await refresh();
  chart().catch(console.error);
  const link = document.getElementById("link");
  C.stream({ types: "queue.,agent.,call." }, (ev) => {
    link.textContent = "live"; link.className = "live";
    soon();
    if (ev.type.startsWith("queue.")) chartSoon();
  }, () => refresh());
  link.textContent = "live"; link.className = "live";
  setInterval(() => { if (snap) { renderQueues(); renderAgents(); } }, 1000);  // the clocks tick locally
})();
