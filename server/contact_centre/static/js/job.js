// Job page: status in words, due date in words, time left, who has it, timeline, photos, map; live.
"use strict";

(async () => {
  const { el, clear } = KS;
  await KS.boot("");
  const ref = KS.param("ref") || "";
  const message = document.getElementById("message");
  const article = document.getElementById("job");
  const $ = (id) => document.getElementById(id);
  let map = null, marker = null, photoUrls = [];

  const EVENT_WORDS = {
    report_received: "Report received", job_opened: "Job opened", snapped: "Matched to the asset",
    triaged: "Sent to a supervisor to check", sla_set: "Target date set", status_changed: "Status changed",
    report_attached: "Another person reported it", photo_added: "Photo added", order_delivered: "Sent to the contractor",
    delivery_failed: "Delivery failed; will retry", delivery_dead: "Delivery failed; gave up",
    delivery_retried: "Delivery sent again", sla_at_risk: "At risk of missing the target",
    sla_breached: "Missed the target", priority_raised: "Priority raised", queued: "Waiting for a supervisor",
    assigned: "Assigned", redispatch_requested: "Dispatch run again", order_cancelled: "Order cancelled",
    dispatched: "Passed to the contractor", order_skipped: "Order not sent (job changed)",
    contractor_update: "Update from the contractor", completion_far_from_asset: "Completed far from the asset",
    citizen_update: "Comment from the reporter (Open311)", note_forwarded: "Comment passed to the contractor",
    note_not_forwarded: "Comment kept here (the contractor's system takes none)",
  };

  function eventWords(e) {
    const base = EVENT_WORDS[e.type] || e.type.replace(/_/g, " ");
    if (e.type === "status_changed" && e.before && e.after) {
      return base + ": " + KS.statusLabel(e.before.status) + " → " + KS.statusLabel(e.after.status);
    }
    if (e.type === "sla_set" && e.after && e.after.due_at) return base + ": " + KS.when(e.after.due_at);
    return base;
  }

  function who(actor) { return String(actor || "").replace(/^(system|supervisor|advisor|crew|contractor|admin|field_worker):/, "$1 "); }

  async function photos(list) {
    photoUrls.forEach((u) => URL.revokeObjectURL(u));
    photoUrls = [];
    const box = clear($("photos"));
    if (!list.length) { box.append(el("p", { class: "note" }, "No photos.")); return; }
    for (const [i, p] of list.entries()) {
      try {
        const r = await KS.api("/api/v1/photos/" + encodeURIComponent(p.id) + "?thumbnail=true", { raw: true });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const url = URL.createObjectURL(await r.blob());
        photoUrls.push(url);
        box.append(el("img", { src: url, alt: "Photo " + (i + 1) + (p.kind ? " (" + p.kind + ")" : "") }));
      } catch (e) { box.append(el("span", { class: "note" }, "Photo " + (i + 1) + " could not be loaded.")); }
    }
  }

  function render(j) {
    document.title = j.reference + " · Kerbside contact centre";
    $("title").textContent = "Job " + j.reference + " · " + (names[j.category] || j.category);
    $("status").textContent = j.status_in_words;
    const sla = j.sla || {};
    const overdue = sla.state === "breached";
    $("due").textContent = KS.dueSentence(sla.due_in_words);
    $("due").classList.toggle("overdue", overdue);
    let left = "";
    if (j.status === "on_hold") left = "The clock is stopped while the job is on hold.";
    else if (sla.state === "stopped") left = j.resolved_at ? "Fixed " + KS.when(j.resolved_at) + "." : "Finished.";
    else if (typeof sla.remaining_seconds === "number") left = KS.timeLeft(sla.remaining_seconds) + (sla.state === "at_risk" ? " (at risk)" : "");
    $("time-left").textContent = left;
    const a = j.assignee;
    $("assignee").textContent = a ? (a.title || a.name) + (a.kind === "contractor" ? " (contractor)" : " (council crew)") : "Nobody yet";
    $("contractor-ref").textContent = j.contractor_ref || "—";
    $("demand").textContent = j.demand_count === 1 ? "1 person" : j.demand_count + " people";
    $("where").textContent = [j.street, j.ward].filter(Boolean).join(", ") || "—";
    $("asset").textContent = j.asset ? (j.asset.layer + " " + j.asset.ref + (j.asset.name ? " (" + j.asset.name + ")" : "")) : "None";
    $("priority").textContent = j.priority;
    $("created").textContent = KS.when(j.created_at);
    const tl = clear($("timeline"));
    for (const e of j.timeline) {
      tl.append(el("li", { dataset: { type: e.type } },
        el("div", { class: "when" }, KS.when(e.at) + " · " + who(e.actor)),
        el("div", {}, eventWords(e)), e.note ? el("div", { class: "note" }, e.note) : null));
    }
    const reps = clear($("reports"));
    for (const r of j.reports) {
      const contactBox = el("div", { class: "contact", "aria-live": "polite" });
      const show = el("button", { type: "button", class: "secondary show-contact", "aria-label": "Show the contact of report " + r.reference },
        "Show contact");
      show.addEventListener("click", () => showContact(r.reference, contactBox, show));
      reps.append(el("li", {}, el("strong", {}, r.reference), " · ", r.channel.replace(/_/g, " "), " · ", KS.when(r.received_at),
        " · ", el("a", { href: "/r/" + encodeURIComponent(r.reference) }, "public page"),
        r.description ? el("div", { class: "note" }, r.description) : null, show, contactBox));
    }
    const first = article.hidden;
    article.hidden = false;
    if (map) {
      if (first) map.invalidateSize();  // the map was laid out while the article was hidden
      const at = j.asset && j.asset.lat ? [j.asset.lat, j.asset.lon] : [j.lat, j.lon];
      if (marker) marker.remove();
      marker = L.circleMarker(at, { radius: 10, className: "job-marker sla-" + (sla.state || "none") }).addTo(map);
      if (first) map.setView(at, 17);
    }
  }

  // The reporter's contact is fetched only on request: each read is recorded on its audit trail.
  async function showContact(reportRef, box, button) {
    button.disabled = true;
    try {
      const out = await KS.api("/api/v1/reports/" + encodeURIComponent(reportRef) + "/contact?reason=" +
        encodeURIComponent("opened from job " + ref));
      const c = out.contact;
      const name = [c.first_name, c.last_name].filter(Boolean).join(" ");
      clear(box).append(c.erased_at ? el("p", { class: "note" }, "The reporter's details were erased (" + c.erase_reason + ").")
        : el("dl", { class: "facts" }, [["Name", name || "—"], ["Email", c.email || "—"], ["Phone", c.phone || "—"],
          ["Updates by", c.unsubscribed_at ? "none (unsubscribed)" : c.notify]].map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
        el("p", { class: "note" }, "This look at the reporter's details has been recorded."));
    } catch (e) {
      button.disabled = false;
      clear(box).append(el("p", { class: "note" }, e.status === 404 ? "No contact was given with this report." : KS.errorText(e)));
    }
  }

  $("chaser").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await KS.api("/api/v1/jobs/" + encodeURIComponent(ref) + "/chasers",
        { method: "POST", body: { channel: $("chaser-channel").value } });
      $("chaser-said").textContent = "Recorded at " + KS.when(new Date().toISOString()) + ".";
    } catch (err) { $("chaser-said").textContent = KS.errorText(err); }
  });

  async function load() {
    try {
      const j = await KS.api("/api/v1/jobs/" + encodeURIComponent(ref));
      message.hidden = true;
      render(j);
      photos(j.photos || []);
    } catch (e) {
      KS.say(message, e.status === 404 ? "There is no job " + ref + "." : KS.errorText(e), "error");
    }
  }

  if (!ref) { KS.say(message, "No job reference given.", "error"); return; }
  const names = Object.fromEntries((await KS.options()).categories.map((c) => [c.code, c.name]));
  map = await KSMap.create($("map"), { note: $("map-note"), zoom: 16 });
  await load();
  KS.live({
    onReady: load,
    onJob: (ev) => { if (ev.job.reference === ref) load(); },
    onState: KS.liveBadge($("live-state")),
  });
})();
