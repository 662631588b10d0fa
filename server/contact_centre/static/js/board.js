// Live board: open jobs in a list and on a map, filtered; rows change in place as events arrive (SSE).
"use strict";

(async () => {
  const { el, clear } = KS;
  await KS.boot("board.html");
  const $ = (id) => document.getElementById(id);
  const form = $("filters"), tbody = $("rows"), message = $("message");
  const opts = await KS.options();
  const names = Object.fromEntries(opts.categories.map((c) => [c.code, c.name]));
  for (const c of opts.categories) $("f-category").append(el("option", { value: c.code }, c.name));
  for (const w of opts.wards) $("f-ward").append(el("option", { value: w }, w));
  for (const s of opts.statuses) $("f-status").append(el("option", { value: s.code }, KS.statusLabel(s.code)));
  for (const a of opts.assignees) $("f-assignee").append(el("option", { value: a.name }, a.title));
  const map = await KSMap.create($("map"), { note: $("map-note") });
  const markers = map ? L.layerGroup().addTo(map) : null;
  const byRef = new Map();  // reference → {row, marker}
  const OPEN = new Set(opts.statuses.map((s) => s.code));

  function filters() {
    return Object.fromEntries([...new FormData(form).entries()].filter(([, v]) => v));
  }

  function matches(j, f) {
    if (!OPEN.has(j.status)) return false;
    if (f.category && j.category !== f.category) return false;
    if (f.ward && j.ward !== f.ward) return false;
    if (f.assignee === "none" && j.assignee) return false;
    if (f.assignee && f.assignee !== "none" && (!j.assignee || j.assignee.name !== f.assignee)) return false;
    if (f.status === "overdue") return j.sla_state === "breached";
    if (f.status === "at_risk") return j.sla_state === "at_risk";
    if (f.status && j.status !== f.status) return false;
    return true;
  }

  function row(j) {
    return el("tr", { id: "row-" + KSMap.safeClass(j.reference), class: "sla-" + j.sla_state, dataset: { ref: j.reference } },
      el("td", {}, el("a", { href: "job.html?ref=" + encodeURIComponent(j.reference) }, j.reference)),
      el("td", {}, names[j.category] || j.category, j.asset ? el("div", { class: "note" }, j.asset.ref) : null),
      el("td", { class: "status" }, j.status_in_words),
      el("td", {}, [j.street, j.ward].filter(Boolean).join(", ")),
      el("td", {}, j.assignee ? j.assignee.title || j.assignee.name : "Nobody yet"),
      el("td", {}, KS.when(j.due_at), " ", KS.slaLabel(j.sla_state) && j.sla_state !== "ok"
        ? el("span", { class: "pill sla-" + j.sla_state }, KS.slaLabel(j.sla_state)) : null));
  }

  function open(j) { location.href = "job.html?ref=" + encodeURIComponent(j.reference); }

  function upsert(j, { flash = false, top = false } = {}) {
    const old = byRef.get(j.reference);
    const tr = row(j);
    if (flash) tr.classList.add("changed");
    if (old) { old.row.replaceWith(tr); if (old.marker) old.marker.remove(); }
    else if (top) tbody.prepend(tr);
    else tbody.append(tr);
    const marker = markers ? KSMap.jobMarker(j, open).addTo(markers) : null;
    byRef.set(j.reference, { row: tr, marker });
  }

  function drop(ref) {
    const old = byRef.get(ref);
    if (!old) return;
    old.row.remove();
    if (old.marker) old.marker.remove();
    byRef.delete(ref);
  }

  function count() { $("count").textContent = "(" + byRef.size + " shown)"; }

  let loading = 0;
  async function load() {
    const n = ++loading;
    const f = filters();
    try {
      const data = await KS.api("/api/v1/contact-centre/board?" + new URLSearchParams(f));
      if (n !== loading) return;
      clear(tbody);
      if (markers) markers.clearLayers();
      byRef.clear();
      data.items.forEach((j) => upsert(j));
      if (map && data.items.length) map.fitBounds(L.latLngBounds(data.items.map((j) => [j.lat, j.lon])).pad(0.2), { maxZoom: 16 });
      message.hidden = data.total <= data.items.length;
      if (data.total > data.items.length) KS.say(message, "Showing the " + data.items.length + " due soonest of " + data.total + ": narrow the filters.");
      count();
    } catch (e) { KS.say(message, KS.errorText(e), "error"); }
  }

  form.addEventListener("change", load);
  KS.live({
    onReady: load,  // after every (re)connect: the list is then exact, and events carry on from there
    onJob: (ev) => {
      const j = ev.job;
      if (matches(j, filters())) upsert(j, { flash: true, top: !byRef.has(j.reference) });
      else drop(j.reference);
      count();
    },
    onState: KS.liveBadge($("live-state")),
  });
})();
