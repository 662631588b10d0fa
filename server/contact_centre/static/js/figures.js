// Figures councils report, for a chosen period (definitions come from the server with the numbers).
"use strict";

(async () => {
  const { el, clear } = KS;
  await KS.boot("figures.html");
  const $ = (id) => document.getElementById(id);
  const form = $("period"), out = $("figures"), message = $("message");
  const opts = await KS.options();
  const names = Object.fromEntries(opts.categories.map((c) => [c.code, c.name]));
  const pct = (v) => (v === null || v === undefined ? "—" : v + "%");
  const num = (v) => (v === null || v === undefined ? "—" : String(v));

  function slaTable(caption, rows, label) {
    return el("table", { class: "card" }, el("caption", {}, caption),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, label), el("th", { scope: "col" }, "Fixed"),
        el("th", { scope: "col" }, "On time"), el("th", { scope: "col" }, "SLA met"),
        el("th", { scope: "col" }, "Median time to fix (hours)"))),
      el("tbody", {}, rows.length ? rows.map((r) => el("tr", {}, el("th", { scope: "row" }, names[r.name] || r.name),
        el("td", {}, num(r.fixed)), el("td", {}, num(r.on_time)), el("td", {}, pct(r.sla_percent)),
        el("td", {}, num(r.median_hours_to_fix))))
        : el("tr", {}, el("td", { colspan: 5 }, "No jobs fixed in this period."))));
  }

  function facts(title, pairs) {
    return el("section", { class: "card" }, el("h2", {}, title),
      el("dl", { class: "facts" }, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }

  // A bar chart as a figure: each row a label, a bar scaled to the largest value, and the number in words,
  // so a screen reader reads the same figures the bars show.
  function bars(title, rows, unit) {
    const top = Math.max(1, ...rows.flatMap((r) => r.values.map((v) => v.value || 0)));
    return el("figure", { class: "card chart" }, el("figcaption", {}, el("h2", {}, title)),
      rows.length ? el("ul", { class: "bars" }, rows.map((r) => el("li", {},
        el("span", { class: "bar-label" }, r.label),
        r.values.map((v) => el("span", { class: "bar-row" },
          el("span", { class: "bar " + (v.kind || ""), style: "width:" + Math.round(100 * (v.value || 0) / top) + "%",
                       "aria-hidden": "true" }),
          el("span", { class: "bar-value" }, (v.name ? v.name + ": " : "") + num(v.value) + (unit || "")))))))
        : el("p", {}, "No jobs in this period."));
  }

  function avoidable(a) {
    const o = a.overall;
    return [
      facts("Avoidable contact: chasers", [["Jobs opened", num(o.jobs)], ["Chasers", num(o.chasers)],
        ["Chasers per 100 jobs", num(o.chasers_per_100_jobs)],
        ["Before a notification was sent", num(o.before_notification)], ["After", num(o.after_notification)],
        ["Per 100 jobs whose reporters were notified", num(o.per_100_notified_jobs)],
        ["Per 100 jobs not notified", num(o.per_100_jobs_not_notified)]]),
      bars("Chasers per 100 jobs, by category", a.by_category.map((c) => ({ label: names[c.category] || c.category,
        values: [{ value: c.chasers_per_100_jobs }] }))),
      bars("Chasers before and after the reporter was sent a notification", a.by_category.map((c) => ({
        label: names[c.category] || c.category,
        values: [{ name: "before", value: c.before_notification, kind: "before" },
                 { name: "after", value: c.after_notification, kind: "after" }] }))),
      bars("Chasers by channel", a.by_channel.map((c) => ({ label: c.channel.replace(/_/g, " "),
        values: [{ value: c.n }] }))),
    ];
  }

  async function show() {
    const q = new URLSearchParams({ from: $("from").value, to: $("to").value });
    history.replaceState(null, "", "?" + q);
    try {
      const f = await KS.api("/api/v1/contact-centre/figures?" + q);
      message.hidden = true;
      const r = f.repeat_reports, c = f.first_contact, o = f.sla.overall;
      clear(out).append(
        facts("SLA compliance", [["All jobs fixed", num(o.fixed)], ["Fixed on time", pct(o.sla_percent)],
          ["Median time to fix", o.median_hours_to_fix === null ? "—" : o.median_hours_to_fix + " hours"]]),
        slaTable("By category", f.sla.by_category, "Category"),
        slaTable("By contractor or crew", f.sla.by_assignee, "Who had it"),
        facts("Repeat reports (avoidable contact)", [["Reports received", num(r.reports)], ["Jobs they went to", num(r.jobs)],
          ["Reports per job", num(r.reports_per_job)], ["Repeat reports", num(r.repeat_reports) + " (" + pct(r.repeat_percent) + ")"]]),
        facts("Resolved at first contact", [["Contact-centre contacts", num(c.contacts)],
          ["Resolved at first contact", num(c.resolved_at_first_contact) + " (" + pct(c.percent) + ")"]]),
        ...avoidable(f.avoidable_contact),
        el("section", { class: "card" }, el("h2", {}, "How these are worked out"),
          el("dl", { class: "facts" }, Object.entries({ ...f.definitions, avoidable_contact: f.avoidable_contact.definition }).map(([k, v]) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, v)]))));
    } catch (e) { KS.say(message, KS.errorText(e), "error"); }
  }

  const today = new Date();
  const iso = (d) => d.toISOString().slice(0, 10);
  $("from").value = KS.param("from") || iso(new Date(today.getTime() - 27 * 86400000));
  $("to").value = KS.param("to") || iso(today);
  form.addEventListener("submit", (e) => { e.preventDefault(); show(); });
  show();
})();
