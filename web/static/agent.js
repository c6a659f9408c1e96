"use strict";
const C = Centralino, el = C.el;
let who = null, me = null, meAt = 0, lead = null;

function show(card) {
  const dl = document.getElementById("card");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(card)) if (v !== "" && v !== null && v !== undefined)
    dl.append(el("dt", {}, k), el("dd", { "data-field": k }, String(v)));
  const crm = document.getElementById("crm");
  if (who.crm_url && card.caller) {
    crm.href = who.crm_url.replace(/\{(caller|did|queue|call)\}/g, (_, k) => encodeURIComponent(card[k] || ""));
    crm.hidden = false;
  } else crm.hidden = true;
}

async function refresh() {
  const q = await C.api("GET", "/agents");
  me = q.agents[who.extension] || null; meAt = Date.now();
  render();
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
    show({ state: "ringing", caller: row.caller, did: row.did, queue: row.queue, wait: C.fmtSeconds(row.wait), call: row.call_id });
  else if (ev.type === "queue.connected") {
    lead = null;
    show({ state: "talking", caller: row.caller, did: row.did, queue: row.queue, wait: C.fmtSeconds(row.wait), call: row.call_id });
    document.getElementById("disposition").hidden = false;
    document.getElementById("disposed").textContent = "";
  }
  else if (ev.type === "dialer.connected") {
    lead = ev;
    show({ state: "campaign call", caller: ev.phone || "", campaign: ev.campaign, lead: ev.lead_id, ...(ev.fields || {}) });
    document.getElementById("disposition").hidden = false;
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
    try {
      await C.api("POST", "/dispositions", { agent: who.extension, disposition: document.getElementById("dispositions").value,
                                            notes: document.getElementById("notes").value,
                                            lead: lead ? lead.lead_id : null, campaign: lead ? lead.campaign : null });
      document.getElementById("disposed").textContent = "saved";
    } catch (err) { document.getElementById("disposed").textContent = err.message; }
  };
  await refresh();
  C.stream({ agent: who.extension || "" }, onEvent, refresh);
  document.getElementById("link").textContent = "live"; document.getElementById("link").className = "live";
  setInterval(render, 1000);
})();
