"use strict";
const C = Centralino, el = C.el;
let who = null, me = null, meAt = 0, lead = null, desk = { scripts: {}, queues: {}, campaigns: {} }, card = {};

function show(next) {
  card = next;
  const dl = document.getElementById("card");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(card)) if (v !== "" && v !== null && v !== undefined)
    dl.append(el("dt", {}, k), el("dd", { "data-field": k }, String(v)));
  const crm = document.getElementById("crm");
  if (who.crm_url && card.caller) {
    crm.href = who.crm_url.replace(/\{(caller|did|queue|call|ivr)\}/g, (_, k) => encodeURIComponent(card[k] || ""));
    crm.hidden = false;
  } else crm.hidden = true;
}

// the call script of the call's queue or campaign, walked by the option buttons
function fill(text) { return text.replace(/\{(\w+)\}/g, (m, k) => (card[k] !== undefined && card[k] !== null ? String(card[k]) : m)); }

function startScript(name) {
  const box = document.getElementById("script"), script = name && desk.scripts[name];
  box.hidden = !script;
  if (!script) return;
  document.getElementById("script-name").textContent = name;
  document.getElementById("script-restart").onclick = () => step(script, script.start);
  step(script, script.start);
}

function step(script, nodeName) {
  const node = script.nodes[nodeName];
  const say = document.getElementById("script-say");
  say.textContent = fill(node.say);
  say.dataset.node = nodeName;
  const options = document.getElementById("script-options");
  options.replaceChildren(...Object.entries(node.options).map(([label, next]) =>
    el("button", { "data-option": label, onclick: () => step(script, next) }, label)));
}

function offerDispositions(choices, callbacks) {
  const list = document.getElementById("disposition-choices");
  list.replaceChildren(...(choices || []).map((d) => el("option", { value: d })));
  document.getElementById("dispositions").value = "";
  document.getElementById("notes").value = "";
  document.getElementById("callback-at-box").hidden = !callbacks;
  document.getElementById("disposition").hidden = false;
  document.getElementById("disposed").textContent = "";
}

async function refresh() {
  const q = await C.api("GET", "/agents");
  me = q.agents[who.extension] || null; meAt = Date.now();
  render();
}

async function refreshCalls() {
  if (!who.extension) return;
  const got = await C.api("GET", `/agents/${encodeURIComponent(who.extension)}/calls`);
  document.getElementById("calls").replaceChildren(...got.calls.map((c) => el("tr", { "data-call": c.call_id },
    el("td", {}, new Date(c.connected * 1000).toLocaleTimeString()), el("td", { "data-field": "caller" }, c.caller),
    el("td", {}, c.queue), el("td", {}, C.fmtSeconds(c.wait)), el("td", {}, C.fmtSeconds(c.talk)),
    el("td", { "data-field": "disposition" }, c.disposition || "—"), el("td", {}, c.notes || ""),
    el("td", {}, ...c.recordings.map((r) => el("audio", { controls: true, preload: "none", src: r.audio, "data-recording": r.id }))))));
}

function render() {
  const state = document.getElementById("state");
  state.textContent = me ? me.state + (me.pause_reason ? ` (${me.pause_reason})` : "") : "not an agent";
  state.className = "state state-" + (me ? me.state : "logged-out");
  document.getElementById("since").textContent = me ? C.fmtSeconds(me.since + (Date.now() - meAt) / 1000) : "—";
  if (me) document.getElementById("today").textContent =
    `${me.calls} calls answered, talk ${C.fmtSeconds(me.talk)}, wrap-up ${C.fmtSeconds(me.wrapup)}, ` +
    `paused ${C.fmtSeconds(me.paused)}, ${me.missed_rings} missed rings`;
}

async function act(action, reason) {
  const error = document.getElementById("error");
  error.textContent = "";
  try { await C.api("POST", `/agents/${encodeURIComponent(who.extension)}/state`, { action, reason: reason || "" }); await refresh(); }
  catch (err) { error.textContent = err.message; }
}

function onEvent(ev) {
  const row = ev.row || {};
  if (ev.type === "queue.agent_rung" && row.event === "RING")
    show({ state: "ringing", caller: row.caller, did: row.did, ivr: row.ivr, queue: row.queue, wait: C.fmtSeconds(row.wait), call: row.call_id });
  else if (ev.type === "queue.connected") {
    const campaignCall = lead && lead.call_id === row.call_id;
    document.getElementById("transfer-box").hidden = false;
    document.getElementById("transferred").textContent = "";
    if (!campaignCall) {
      lead = null;
      show({ state: "talking", caller: row.caller, did: row.did, ivr: row.ivr, queue: row.queue, wait: C.fmtSeconds(row.wait), call: row.call_id });
      const q = desk.queues[row.queue] || {};
      startScript(q.script);
      offerDispositions(q.dispositions, true);
    }
  }
  else if (ev.type === "dialer.connected") {
    lead = ev;
    show({ state: "campaign call", caller: ev.phone || "", campaign: ev.campaign, lead: ev.lead_id, call: ev.call_id, ...(ev.fields || {}) });
    document.getElementById("transfer-box").hidden = false;
    const camp = desk.campaigns[ev.campaign] || {};
    startScript(camp.script);
    offerDispositions(camp.dispositions, true);
  }
  else if (ev.type === "queue.left" || ev.type === "queue.disposition") {
    if (ev.type === "queue.left" && row.call_id === card.call) document.getElementById("transfer-box").hidden = true;
    refreshCalls().catch(console.error);
  }
  refresh().catch(console.error);
}

(async () => {
  who = await C.me();
  document.getElementById("who").textContent = `${who.name} (${who.role}, extension ${who.extension || "—"})`;
  document.getElementById("logout").onclick = C.logout;
  document.getElementById("ready").onclick = () => act("ready");
  document.getElementById("pause").onclick = () => act("pause", document.getElementById("reason").value);
  document.getElementById("logoff").onclick = () => act("logout");
  document.getElementById("dispose").onclick = async () => {
    const at = document.getElementById("callback-at").value;
    try {
      await C.api("POST", "/dispositions", { agent: who.extension, disposition: document.getElementById("dispositions").value,
                                            notes: document.getElementById("notes").value,
                                            lead: lead ? lead.lead_id : null, campaign: lead ? lead.campaign : null,
                                            callback_at: at ? new Date(at).getTime() / 1000 : null });
      document.getElementById("disposed").textContent = "saved";
      refreshCalls().catch(console.error);
    } catch (err) { document.getElementById("disposed").textContent = err.message; }
  };
  document.getElementById("transfer").onclick = async () => {  // a blind transfer of the caller
    const out = document.getElementById("transferred");
    try {
      await C.api("POST", `/calls/${encodeURIComponent(card.call)}/transfer`, { to: document.getElementById("transfer-to").value });
      out.textContent = "ringing";
    } catch (err) { out.textContent = err.message; }
  };
  desk = await C.api("GET", "/desktop");
  await refresh();
  await refreshCalls();
  C.stream({ agent: who.extension || "" }, onEvent, () => { refresh(); refreshCalls(); });
  document.getElementById("link").textContent = "live"; document.getElementById("link").className = "live";
  setInterval(render, 1000);
})();
