// Sign-in: the bearer token is checked against /me and kept in sessionStorage (this tab only).
"use strict";

(() => {
  const form = document.getElementById("signin");
  const input = document.getElementById("token");
  const message = document.getElementById("message");
  if (KS.param("refused")) KS.say(message, "That token may not use the dashboard (advisers and supervisors only).", "error");

  function next() {
    const n = KS.param("next") || "";
    // Only our own pages: never an open redirect.
    return /^\/dashboard\/[a-z]+\.html(\?[^#]*)?$/.test(n) ? n : "index.html";
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) { KS.say(message, "Enter your access token.", "error"); input.focus(); return; }
    const r = await fetch("/api/v1/contact-centre/me", { headers: { Authorization: "Bearer " + t } });
    if (r.status === 401) { KS.say(message, "That token is not recognised (or has expired).", "error"); return; }
    if (r.status === 403) { KS.say(message, "That token may not use the dashboard (advisers and supervisors only).", "error"); return; }
    if (!r.ok) { KS.say(message, "Could not sign in (HTTP " + r.status + ").", "error"); return; }
    KS.setToken(t);
    location.href = next();
  });
  input.focus();
})();
