"use strict";
// Today's tables from /api/v1/reports/today (the `centralino report` figures), with two charts.
const C = Centralino, el = C.el;

const COLUMNS = {
  queue: [["queue", "Queue"], ["offered", "Offered"], ["answered", "Answered"], ["abandoned", "Abandoned"],
          ["service_level", "SL", C.fmtPercent], ["abandon_rate", "Abandon", C.fmtPercent],
          ["asa", "ASA", C.fmtSeconds], ["aht", "AHT", C.fmtSeconds], ["callbacks", "Callbacks"]],
  agent: [["agent", "Agent"], ["answered", "Calls"], ["talk", "Talk", C.fmtSeconds], ["wrapup", "Wrap-up", C.fmtSeconds],
          ["paused", "Paused", C.fmtSeconds], ["ready", "Ready", C.fmtSeconds], ["missed_rings", "Missed rings"]],
};

function table(id, by, rows) {
  const t = document.getElementById(id);
  const cols = COLUMNS[by];
  t.replaceChildren(el("tr", {}, ...cols.map(([, title]) => el("th", {}, title))));
  for (const r of rows) {
    t.append(el("tr", { [`data-${by}`]: r[by] }, ...cols.map(([k, , fmt]) =>
      el("td", { [`data-${by}`]: r[by], "data-metric": k }, fmt ? fmt(r[k]) : (r[k] ?? "—")))));
  }
  if (!rows.length) t.append(el("tr", {}, el("td", { colSpan: cols.length }, "no calls today yet")));
}

function bars(id, rows, series, max) {
  const canvas = document.getElementById(id), g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const w = canvas.width / 24, h = canvas.height - 18;
  g.font = "11px system-ui";
  for (const r of rows) {
    const hour = Number(String(r.interval).slice(11, 13)) || 0;
    series.forEach(([key, colour], i) => {
      const v = r[key] ?? 0, bh = h * v / max;
      g.fillStyle = colour;
      g.fillRect(hour * w + 3 + i * (w - 6) / series.length, h - bh, (w - 6) / series.length - 1, bh);
    });
  }
  g.fillStyle = "#94a3b8";
  for (let hr = 0; hr < 24; hr += 2) g.fillText(String(hr).padStart(2, "0"), hr * w + 4, canvas.height - 3);
}

async function load() {
  const [q, a, i] = await Promise.all(["queue", "agent", "interval"].map((by) => C.api("GET", `/reports/today?by=${by}`)));
  table("by-queue", "queue", q.rows);
  table("by-agent", "agent", a.rows.filter((r) => r.agent));
  const max = Math.max(1, ...i.rows.map((r) => r.offered));
  bars("calls", i.rows, [["offered", "#475569"], ["answered", "#22c55e"]], max);
  bars("sl", i.rows.map((r) => ({ ...r, sl: r.service_level ?? 0 })), [["sl", "#38bdf8"]], 1);
  document.body.dataset.loaded = String(Date.now());
}

(async () => {
  const who = await C.me();
  if (who.role === "agent") { location.href = "/agent"; return; }
  document.getElementById("who").textContent = `${who.name} (${who.role})`;
  document.getElementById("logout").onclick = C.logout;
  for (const by of ["queue", "agent"])
    document.getElementById(`csv-${by}`).href = `/api/v1/reports/today?by=${by}&format=csv`;
  await load();
  C.stream({ types: "queue." }, () => { clearTimeout(window.reloadSoon); window.reloadSoon = setTimeout(load, 500); }, load);
})();
