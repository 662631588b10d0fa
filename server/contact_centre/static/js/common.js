// Kerbside dashboard: sign-in token, JSON API calls, safe DOM building, navigation, the live stream.
// User text only ever reaches the page through textContent (el() below): never innerHTML.
"use strict";

const KS = (() => {
  const TOKEN_KEY = "kerbside.token";
  const TZ = "Europe/London";

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function setToken(t) { sessionStorage.setItem(TOKEN_KEY, t); }

  function signInUrl() {
    return "signin.html?next=" + encodeURIComponent(location.pathname + location.search);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    location.href = "signin.html";
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || ("HTTP " + status));
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(path, { method = "GET", body, signal, raw = false } = {}) {
    const headers = { Authorization: "Bearer " + token(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, signal, cache: "no-store",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && !raw) {
      sessionStorage.removeItem(TOKEN_KEY);
      location.replace(signInUrl());
      throw new ApiError(401, null);
    }
    if (raw) return r;
    const type = r.headers.get("content-type") || "";
    const data = type.includes("json") ? await r.json() : null;
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  // el("a", {href: "job.html?ref=" + encodeURIComponent(ref), class: "ref"}, ref): text children only.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "href" && !/^(?:[a-z]+\.html|\/|#|\?)/i.test(String(v))) throw new Error("unsafe link");
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function say(node, text, kind = "info") {
    clear(node).append(text);
    node.className = "message " + kind;
    node.hidden = !text;
  }

  function errorText(e) {
    if (e instanceof ApiError) {
      const fields = (e.problem.fields || []).join(", ");
      return e.message + (fields ? " (" + fields + ")" : "");
    }
    return "Something went wrong: " + (e && e.message ? e.message : String(e));
  }

  const dtFormat = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, weekday: "short", day: "numeric",
    month: "short", hour: "2-digit", minute: "2-digit" });
  function when(iso) { return iso ? dtFormat.format(new Date(iso)) : ""; }

  function duration(seconds) {
    const s = Math.abs(Math.round(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    const parts = [];
    if (d) parts.push(d + (d === 1 ? " day" : " days"));
    if (h) parts.push(h + (h === 1 ? " hour" : " hours"));
    if (!d && m) parts.push(m + (m === 1 ? " minute" : " minutes"));
    return parts.slice(0, 2).join(" ") || "less than a minute";
  }

  function timeLeft(seconds) {
    return seconds >= 0 ? duration(seconds) + " left" : "Overdue by " + duration(seconds);
  }

  function dueSentence(words) {
    if (!words) return "No target date";
    if (words.startsWith("overdue: ")) return "Overdue: " + words.slice(9);
    return "Should be fixed " + words;
  }

  const STATUS_LABELS = { triage: "Triage", new: "Logged", assigned: "With a crew", sent: "Sent to contractor",
    accepted: "Accepted", scheduled: "Booked in", in_progress: "In progress", on_hold: "On hold",
    completed: "Fixed", closed: "Closed", cancelled: "Cancelled", duplicate: "Duplicate" };
  function statusLabel(s) { return STATUS_LABELS[s] || s; }

  function slaLabel(state) {
    return { breached: "Overdue", at_risk: "At risk", ok: "On track", paused: "On hold", stopped: "Finished",
             none: "" }[state] || "";
  }

  let whoPromise = null;
  function me() {
    whoPromise = whoPromise || api("/api/v1/contact-centre/me");
    return whoPromise;
  }

  const LINKS = [["index.html", "Find"], ["log.html", "Log a fault"], ["board.html", "Live board"],
                 ["figures.html", "Figures"], ["supervisor.html", "Supervisor", true], ["plan.html", "Day plan", true]];

  function nav(active, who) {
    const header = document.getElementById("nav");
    const list = el("ul", {});
    for (const [href, label, supervisorOnly] of LINKS) {
      if (supervisorOnly && !who.can_supervise) continue;  // the API refuses them anyway
      list.append(el("li", {}, el("a", { href, "aria-current": href === active ? "page" : null }, label)));
    }
    clear(header).append(
      el("a", { href: "index.html", class: "brand" }, "Kerbside contact centre"),
      el("nav", { "aria-label": "Main" }, list),
      el("span", { class: "who", id: "who" }, who.name + " (" + who.role + ")"),
      el("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
  }

  // Every page: a token or the sign-in page, then the navigation for this role.
  async function boot(active) {
    if (!token()) {
      location.replace(signInUrl());
      return new Promise(() => {});
    }
    try {
      const who = await me();
      nav(active, who);
      return who;
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        location.replace(signInUrl() + "&refused=1");
      }
      throw e;
    }
  }

  let optionsPromise = null;
  function options() {
    optionsPromise = optionsPromise || api("/api/v1/contact-centre/options");
    return optionsPromise;
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  // Server-sent events over fetch (so the token goes in a header, not the URL): reconnects with
  // Last-Event-ID and calls onReady after every (re)connect, when the page should reload its list.
  function live({ onJob, onReady, onState }) {
    let last = null, stopped = false, delay = 1000, ctrl = null;

    function dispatch(ev) {
      if (!ev.data.length) return;
      const data = JSON.parse(ev.data.join("\n"));
      if (ev.id) last = Number(ev.id);
      if (ev.event === "ready" || ev.event === "reset") {
        if (ev.event === "reset" || last === null || data.last_event_id > last) last = data.last_event_id;
        if (onReady) onReady(data);
      } else if (ev.event === "job" && onJob) {
        onJob(data);
      }
    }

    async function once() {
      ctrl = new AbortController();
      const headers = { Authorization: "Bearer " + token(), Accept: "text/event-stream" };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const r = await fetch("/api/v1/events", { headers, signal: ctrl.signal, cache: "no-store" });
      if (r.status === 401) { location.replace(signInUrl()); stopped = true; return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      if (onState) onState("live");
      delay = 1000;
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "", ev = { id: null, event: "message", data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          let line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") { dispatch(ev); ev = { id: null, event: "message", data: [] }; continue; }
          if (line.startsWith(":")) continue;
          const c = line.indexOf(":");
          const name = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? "" : line.slice(c + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (name === "id") ev.id = v;
          else if (name === "event") ev.event = v;
          else if (name === "data") ev.data.push(v);
        }
      }
    }

    (async () => {
      while (!stopped) {
        try { await once(); } catch (e) { if (stopped) return; }
        if (stopped) return;
        if (onState) onState("reconnecting");
        await sleep(delay);
        delay = Math.min(delay * 2, 15000);
      }
    })();
    return { stop() { stopped = true; if (ctrl) ctrl.abort(); } };
  }

  function liveBadge(node) {
    return (state) => {
      node.textContent = state === "live" ? "Live" : "Reconnecting…";
      node.className = "live-state " + state;
    };
  }

  function param(name) { return new URLSearchParams(location.search).get(name); }

  return { token, setToken, signOut, api, ApiError, el, clear, say, errorText, when, duration, timeLeft,
           dueSentence, statusLabel, slaLabel, me, boot, options, live, liveBadge, param, sleep };
})();
