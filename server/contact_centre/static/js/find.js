// Find: one box for a job or report reference, an asset number, a contractor's reference or a street.
"use strict";

(async () => {
  const { el, clear } = KS;
  await KS.boot("index.html");
  const form = document.getElementById("find-form");
  const input = document.getElementById("q");
  const message = document.getElementById("message");
  const results = document.getElementById("results");
  const assets = document.getElementById("assets");
  const map = await KSMap.create(document.getElementById("map"), { note: document.getElementById("map-note") });
  const markers = map ? L.featureGroup().addTo(map) : null;

  function jobItem(j) {
    return el("li", { class: "sla-" + j.sla_state },
      el("a", { href: "job.html?ref=" + encodeURIComponent(j.reference), class: "job-link" }, j.reference),
      " · ", j.category, " · ", el("strong", {}, j.status_in_words),
      el("div", { class: "note" }, [j.asset ? "Asset " + j.asset.ref : null, j.street, j.ward].filter(Boolean).join(" · ")),
      el("div", {}, KS.dueSentence(j.due_in_words), " ",
        j.sla_state && KS.slaLabel(j.sla_state) ? el("span", { class: "pill sla-" + j.sla_state }, KS.slaLabel(j.sla_state)) : null));
  }

  function assetItem(a) {
    const link = "log.html?" + new URLSearchParams({ layer: a.layer, ref: a.ref, lat: a.lat, lon: a.lon });
    return el("li", { class: "asset" },
      el("strong", {}, (a.layer_title || a.layer) + " " + a.ref), " · ", [a.street, a.ward].filter(Boolean).join(" · "),
      el("div", {}, a.open_jobs ? a.open_jobs + " open job(s) on it (listed below)" : "No open job on it. ",
        el("a", { href: link }, "Log a fault on this asset")));
  }

  async function search(q) {
    clear(results); clear(assets);
    if (markers) markers.clearLayers();
    if (!q.trim()) return;
    KS.say(message, "Searching…");
    let data;
    try {
      data = await KS.api("/api/v1/contact-centre/find?q=" + encodeURIComponent(q));
    } catch (e) { KS.say(message, KS.errorText(e), "error"); return; }
    const n = data.jobs.length;
    KS.say(message, (n ? n + (n === 1 ? " job" : " jobs") : "No jobs") + " found for “" + data.query + "”" +
      (data.assets.length ? " and " + data.assets.length + " asset(s) with that number." : "."), n || data.assets.length ? "info" : "error");
    data.assets.forEach((a) => assets.append(assetItem(a)));
    data.jobs.forEach((j) => results.append(jobItem(j)));
    if (markers) {
      data.jobs.forEach((j) => markers.addLayer(KSMap.jobMarker(j, () => { location.href = "job.html?ref=" + encodeURIComponent(j.reference); })));
      data.assets.forEach((a) => markers.addLayer(L.circleMarker([a.lat, a.lon], { radius: 9, className: "asset-marker" })));
      if (markers.getLayers().length) map.fitBounds(markers.getBounds().pad(0.3), { maxZoom: 17 });
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = input.value;
    history.replaceState(null, "", "?q=" + encodeURIComponent(q));
    search(q);
  });
  const initial = KS.param("q");
  if (initial) { input.value = initial; search(initial); }
  input.focus();
})();
