// Supervisor views: triage/dispatch queue, failed deliveries with "send again", overdue jobs.
"use strict";

(async () => {
  const { el, clear } = KS;
  const who = await KS.boot("supervisor.html");
  const $ = (id) => document.getElementById(id);
  const message = $("message");
  if (!who.can_supervise) {
    KS.say(message, "This page is for supervisors.", "error");
    return;
  }
  $("supervisor").hidden = false;
  const jobLink = (ref) => ref ? el("a", { href: "job.html?ref=" + encodeURIComponent(ref) }, ref) : "—";

  async function queue() {
    const data = await KS.api("/api/v1/dispatch/queue?limit=200");
    const body = clear($("queue"));
    if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "Nothing waiting.")));
    for (const j of data.items) {
      body.append(el("tr", {}, el("td", {}, jobLink(j.reference)), el("td", {}, j.category),
        el("td", {}, j.queue_reason || j.triage_reason || (j.status === "triage" ? "In triage" : "")),
        el("td", {}, [j.street, j.ward].filter(Boolean).join(", ")), el("td", {}, KS.when(j.due_at))));
    }
  }

  async function sendAgain(m, button, cell) {
    button.disabled = true;
    try {
      const out = await KS.api("/api/v1/outbox/" + encodeURIComponent(m.id) + "/retry", { method: "POST" });
      clear(cell).append(el("span", { class: "pill sla-ok", dataset: { state: out.state } }, "Queued to send again"));
    } catch (e) {
      button.disabled = false;
      KS.say(message, KS.errorText(e), "error");
    }
  }

  async function dead() {
    const data = await KS.api("/api/v1/outbox?state=dead&limit=200");
    const body = clear($("dead"));
    if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "No failed deliveries.")));
    for (const m of data.items) {
      const cell = el("td", {});
      const button = el("button", { type: "button", class: "secondary send-again", "aria-label": "Send delivery " + m.id + " again",
        dataset: { id: m.id } }, "Send again");
      button.addEventListener("click", () => sendAgain(m, button, cell));
      cell.append(button);
      body.append(el("tr", { id: "dead-" + m.id }, el("td", {}, String(m.id)), el("td", {}, m.destination),
        el("td", {}, jobLink(m.job)), el("td", {}, String(m.attempts)), el("td", { class: "note" }, m.last_error || ""), cell));
    }
  }

  async function undelivered() {
    const data = await KS.api("/api/v1/notifications/failures?limit=200");
    const body = clear($("undelivered"));
    if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "Every message arrived.")));
    for (const n of data.items) {
      body.append(el("tr", {}, el("td", {}, n.report), el("td", {}, jobLink(n.job)), el("td", {}, n.template.replace(/_/g, " ")),
        el("td", {}, n.kind === "sms" ? "text" : "email"), el("td", {}, n.status.replace(/-/g, " ")), el("td", {}, KS.when(n.at))));
    }
  }

  async function overdue() {
    const data = await KS.api("/api/v1/jobs/overdue?limit=200");
    const body = clear($("overdue"));
    if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "Nothing overdue.")));
    for (const j of data.items) {
      body.append(el("tr", { class: "sla-breached" }, el("td", {}, jobLink(j.reference)), el("td", {}, j.category),
        el("td", {}, j.assignee ? j.assignee.title || j.assignee.name : "Nobody yet"),
        el("td", {}, KS.duration(j.overdue_seconds)), el("td", {}, KS.when(j.due_at))));
    }
  }

  for (const part of [queue, dead, undelivered, overdue]) {
    part().catch((e) => KS.say(message, KS.errorText(e), "error"));
  }
})();
