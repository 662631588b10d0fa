// Crew day plan: each crew's route on the map (the roads it drives, numbered stops) with totals, and the
// jobs left out with their reasons. Supervisors can plan a day and re-plan the rest of it.
"use strict";

(async () => {
  const { el, clear } = KS;
  const who = await KS.boot("plan.html");
  const $ = (id) => document.getElementById(id);
  const message = $("message");
  if (!who.can_supervise) {
    KS.say(message, "This page is for supervisors.", "error");
    return;
  }
  $("plan").hidden = false;
  const COLOURS = ["#1d4f91", "#b3401a", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#f9a825",
                   "#283593", "#558b2f"];
  const today = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/London" }).format(new Date());
  const dayInput = $("day");
  dayInput.value = KS.param("day") || today;
  const map = await KSMap.create($("map"), { note: $("map-note") });
  const layer = map ? L.layerGroup().addTo(map) : null;
  const jobLink = (ref) => el("a", { href: "job.html?ref=" + encodeURIComponent(ref) }, ref);
  const hm = (s) => KS.duration(s);
  const clock = (iso) => iso ? new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/London", hour: "2-digit",
                                                                    minute: "2-digit" }).format(new Date(iso)) : "";

  function draw(plan) {
    const routes = clear($("routes"));
    const left = clear($("left"));
    if (layer) layer.clearLayers();
    const bounds = [];
    plan.routes.forEach((r, i) => {
      const colour = COLOURS[i % COLOURS.length];
      routes.append(el("tr", { class: "route", dataset: { crew: r.crew } },
        el("td", {}, el("span", { class: "swatch", style: "background:" + colour }), " ", r.title || r.crew),
        el("td", { class: "stops" }, String(r.stops.length)), el("td", {}, hm(r.travel_s)),
        el("td", {}, hm(r.service_s)), el("td", {}, clock(r.start_at)), el("td", {}, clock(r.end_at))));
      if (!layer) return;
      if (r.path) {
        L.geoJSON(r.path, { interactive: false, style: { color: colour, weight: 4, opacity: 0.75,
                                                        className: "route-line crew-" + KSMap.safeClass(r.crew) } })
          .addTo(layer);
      }
      L.circleMarker([r.depot.lat, r.depot.lon], { radius: 9, color: "#000", weight: 2, fillOpacity: 0.9,
                                                  className: "depot-marker" }).addTo(layer);
      bounds.push([r.depot.lat, r.depot.lon]);
      for (const s of r.stops) {
        const tip = document.createElement("span");
        tip.textContent = s.seq + ". " + s.job + " · " + s.category + " · " + clock(s.arrive_at) +
          (s.late ? " (late)" : "") + (s.street ? " · " + s.street : "");
        L.circleMarker([s.lat, s.lon], { radius: 7, color: colour, weight: 2, fillOpacity: s.done ? 0.2 : 0.85,
                                         className: "stop-marker crew-" + KSMap.safeClass(r.crew) })
          .bindTooltip(tip).addTo(layer);
        bounds.push([s.lat, s.lon]);
      }
    });
    if (map && bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
    if (!plan.unassigned.length) left.append(el("tr", {}, el("td", { colspan: 3 }, "Every job is in a route.")));
    for (const u of plan.unassigned) {
      left.append(el("tr", { class: "left-out" }, el("td", {}, jobLink(u.job)), el("td", {}, u.category),
                     el("td", {}, u.reason)));
    }
    const t = plan.totals;
    $("summary").textContent = "Version " + plan.version + " (" + plan.reason + ", " + KS.when(plan.created_at) +
      "): " + t.crews + " crews, " + t.stops + " stops, " + hm(t.travel_s) + " driving, " + hm(t.service_s) +
      " on site, " + t.unassigned + " not placed" + (t.late ? ", " + t.late + " late" : "") + ".";
  }

  async function show() {
    try {
      const plan = await KS.api("/api/v1/plans/" + encodeURIComponent(dayInput.value) + "?paths=true");
      KS.say(message, "");
      draw(plan);
    } catch (e) {
      clear($("routes")); clear($("left")); if (layer) layer.clearLayers();
      $("summary").textContent = "";
      KS.say(message, e.status === 404 ? "No plan for this day yet." : KS.errorText(e), e.status === 404 ? "info" : "error");
    }
  }

  async function act(path, body) {
    try {
      await KS.api(path, { method: "POST", body });
      await show();
    } catch (e) { KS.say(message, KS.errorText(e), "error"); }
  }

  $("pick").addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  $("make").addEventListener("click", () => act("/api/v1/plans", { day: dayInput.value }));
  $("replan").addEventListener("click", () => act("/api/v1/plans/" + encodeURIComponent(dayInput.value) + "/replan",
                                                 { reason: "re-planned from the dashboard" }));
  show();
})();
