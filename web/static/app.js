// Shared by the pages: the API with the session cookie and its CSRF token, and the event stream
// with resume (?since=) after a reconnect. Nothing is fetched from outside the switch.
"use strict";

const Centralino = (() => {
  let csrf = sessionStorage.getItem("centralino.csrf") || "";

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    const res = await fetch("/api/v1" + path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (res.status === 401 && !path.startsWith("/auth/login")) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("not logged in");
    }
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }

  async function me() {
    const who = await api("GET", "/auth/me");
    csrf = who.csrf;
    sessionStorage.setItem("centralino.csrf", csrf);
    return who;
  }

  async function login(user, password) {
    const got = await api("POST", "/auth/login", { user, password });
    csrf = got.csrf;
    sessionStorage.setItem("centralino.csrf", csrf);
    return got;
  }

  async function logout() {
    try { await api("POST", "/auth/logout"); } finally { location.href = "/login"; }
  }

  // onEvent(event) for every event; onResync() when the replay is gone (read the state again)
  function stream(query, onEvent, onResync) {
    let since = null, backoff = 500, socket = null;
    function connect() {
      const q = new URLSearchParams(query);
      if (since !== null) q.set("since", since);
      socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
                             "/api/v1/events?" + q.toString());
      socket.onmessage = (m) => {
        const ev = JSON.parse(m.data);
        if (ev.type === "hello") { if (since === null) since = ev.seq; backoff = 500; return; }
        if (ev.type === "gone") { since = null; onResync(); return; }
        since = ev.seq;
        onEvent(ev);
      };
      socket.onclose = () => { setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000); };
    }
    connect();
    return () => socket && socket.close();
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, Math.round(s));
    const m = Math.floor(s / 60), r = s % 60;
    return m ? `${m}:${String(r).padStart(2, "0")}` : `${r}s`;
  }

  function fmtPercent(x) { return x === null || x === undefined ? "—" : `${Math.round(100 * x)}%`; }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("data-") || k === "class" || k === "id" || k === "title") node.setAttribute(k, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  return { api, me, login, logout, stream, fmtSeconds, fmtPercent, el };
})();
