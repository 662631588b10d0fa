// Log a fault for a caller: category, the exact asset picked on the map, the category's questions, then
// POST /api/v1/reports with the adviser's token (channel: contact centre) and read back the answer.
"use strict";

(async () => {
  const { el, clear } = KS;
  await KS.boot("log.html");
  const $ = (id) => document.getElementById(id);
  const form = $("log-form"), select = $("category"), message = $("message"), picked = $("picked");
  const assetList = $("asset-list"), questions = $("questions");
  const categories = await KS.api("/api/v1/categories");
  const byCode = Object.fromEntries(categories.map((c) => [c.code, c]));
  const map = await KSMap.create($("map"), { note: $("map-note") });
  let layer = null, place = null, pointMarker = null, clientId = newId(), visible = [];

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const groups = {};
  for (const c of categories) (groups[c.group] = groups[c.group] || []).push(c);
  for (const [g, list] of Object.entries(groups)) {
    select.append(el("optgroup", { label: g }, list.map((c) => el("option", { value: c.code }, c.name))));
  }

  function pick(p) {
    place = p;
    picked.textContent = p.ref ? "Picked: " + p.ref + (p.props && p.props.street ? " on " + p.props.street : "")
                               : "Picked a point at " + p.lat.toFixed(5) + ", " + p.lon.toFixed(5);
    if (p.ref) assetList.value = p.ref;
  }

  function listAssets(feats) {
    visible = feats;
    clear(assetList);
    assetList.disabled = !feats.length;
    assetList.append(el("option", { value: "" }, feats.length ? "Choose an asset in view…" : "Zoom the map in first"));
    for (const f of feats.slice(0, 200)) {
      assetList.append(el("option", { value: f.properties.ref }, f.properties.ref + (f.properties.street ? " · " + f.properties.street : "")));
    }
    if (place && place.ref) assetList.value = place.ref;
  }

  assetList.addEventListener("change", () => {
    const f = visible.find((x) => x.properties.ref === assetList.value);
    if (!f) return;
    const [lon, lat] = f.geometry.coordinates;
    pick({ ref: f.properties.ref, lat, lon, props: f.properties });
    if (layer) layer.select(f.properties.ref);
  });

  function questionField(q) {
    const id = "q-" + q.code;
    const label = q.prompt + (q.required ? " (required)" : "");
    if (q.datatype === "singlevaluelist") {
      return el("div", {}, el("label", { for: id }, label),
        el("select", { id, name: q.code, required: q.required || null },
          el("option", { value: "" }, "Choose…"), q.values.map((v) => el("option", { value: v.key }, v.name))));
    }
    if (q.datatype === "multivaluelist") {
      return el("fieldset", { class: "checks" }, el("legend", {}, label),
        q.values.map((v) => el("label", {}, el("input", { type: "checkbox", name: q.code, value: v.key }), v.name)));
    }
    const type = { number: "number", datetime: "datetime-local", text: null }[q.datatype];
    const input = q.datatype === "text" ? el("textarea", { id, name: q.code, required: q.required || null })
      : el("input", { id, name: q.code, type: type || "text", required: q.required || null, maxlength: 500 });
    return el("div", {}, el("label", { for: id }, label), input);
  }

  function answers(cat) {
    const out = {};
    for (const q of cat.questions) {
      if (q.datatype === "multivaluelist") {
        const v = [...form.querySelectorAll(`input[name="${CSS.escape(q.code)}"]:checked`)].map((x) => x.value);
        if (v.length) out[q.code] = v;
        continue;
      }
      const node = form.elements.namedItem(q.code);
      const v = node ? node.value.trim() : "";
      if (!v) continue;
      if (q.datatype === "number") out[q.code] = Number(v);
      else if (q.datatype === "datetime") out[q.code] = new Date(v).toISOString();
      else out[q.code] = v;
    }
    return out;
  }

  function chooseCategory(code) {
    const cat = byCode[code];
    clear(questions).append(el("legend", {}, "Questions about this fault"));
    questions.hidden = !cat || !cat.questions.length;
    if (cat) cat.questions.forEach((q) => questions.append(questionField(q)));
    if (layer) { layer.remove(); layer = null; }
    place = null;
    picked.textContent = "Nothing picked yet: click " + (cat && cat.layer ? "the asset" : "the place") + " on the map.";
    listAssets([]);
    if (map && cat && cat.layer) layer = KSMap.assetLayer(map, cat.layer, { onPick: pick, onList: listAssets, note: $("map-note") });
    else if (map) $("map-note").textContent = "Click the map where the problem is.";
  }
  select.addEventListener("change", () => chooseCategory(select.value));

  if (map) {
    map.on("click", (e) => {
      const cat = byCode[select.value];
      if (!cat || cat.layer) return;  // assets are picked by clicking them
      if (pointMarker) pointMarker.remove();
      pointMarker = L.circleMarker(e.latlng, { radius: 9, className: "asset-marker selected" }).addTo(map);
      pick({ ref: null, lat: e.latlng.lat, lon: e.latlng.lng });
    });
  }

  async function goTo() {
    const q = $("goto").value.trim();
    if (!q) return;
    try {
      const data = await KS.api("/api/v1/contact-centre/find?q=" + encodeURIComponent(q));
      const target = data.assets[0] || data.jobs[0];
      if (!target) { KS.say(message, "Nothing found for “" + q + "”.", "error"); return; }
      message.hidden = true;
      if (map) map.setView([target.lat, target.lon], 18);
    } catch (e) { KS.say(message, KS.errorText(e), "error"); }
  }
  $("goto-button").addEventListener("click", goTo);
  $("goto").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); goTo(); } });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const cat = byCode[select.value];
    if (!cat) { KS.say(message, "Choose what the problem is.", "error"); select.focus(); return; }
    if (!place) { KS.say(message, "Pick " + (cat.layer ? "the asset" : "the place") + " on the map first.", "error"); return; }
    const body = { client_id: clientId, category: cat.code, lat: place.lat, lon: place.lon, accuracy_m: 5,
                   observed_at: new Date().toISOString(), location_provider: "map",
                   answers: answers(cat), description: $("description").value.trim() };
    if (place.ref) body.asset_ref = place.ref;
    const caller = { first_name: $("caller-first").value.trim(), last_name: $("caller-last").value.trim(),
                     email: $("caller-email").value.trim(), phone: $("caller-phone").value.trim() };
    if (Object.values(caller).some(Boolean)) {
      body.contact = { ...Object.fromEntries(Object.entries(caller).filter(([, v]) => v)),
                       notify: $("caller-notify").value, consent: $("caller-consent").checked };
    }
    $("submit").disabled = true;
    KS.say(message, "Logging…");
    try {
      const out = await KS.api("/api/v1/reports", { method: "POST", body });
      message.hidden = true;
      $("result-reference").textContent = out.reference;
      $("result-due").textContent = KS.dueSentence(out.job.due_in_words);
      $("result-more").textContent = "Job " + out.job.reference +
        (out.job.attached ? ": this joins a report already logged (" + out.job.demand_count + " people have reported it)." : ".") +
        (out.job.asset ? " Asset " + out.job.asset.ref + "." : "") + (out.warnings.length ? " Note: " + out.warnings.join("; ") : "");
      $("result-job").setAttribute("href", "job.html?ref=" + encodeURIComponent(out.job.reference));
      $("result").hidden = false;
      $("result-reference").focus && $("result").scrollIntoView({ block: "nearest" });
    } catch (err) {
      KS.say(message, KS.errorText(err), "error");
    } finally {
      $("submit").disabled = false;
    }
  });

  $("again").addEventListener("click", () => {
    clientId = newId();
    $("result").hidden = true;
    $("description").value = "";
    for (const id of ["caller-first", "caller-last", "caller-email", "caller-phone"]) $(id).value = "";
    $("caller-notify").value = "none";
    $("caller-consent").checked = false;
    chooseCategory(select.value);
  });

  // From Find's "Log a fault on this asset": preselect a category on that layer and the asset.
  const pLayer = KS.param("layer"), pRef = KS.param("ref");
  if (pLayer) {
    const cat = categories.find((c) => c.layer === pLayer);
    if (cat) { select.value = cat.code; chooseCategory(cat.code); }
    const lat = Number(KS.param("lat")), lon = Number(KS.param("lon"));
    if (map && isFinite(lat) && isFinite(lon)) map.setView([lat, lon], 18);
    if (pRef && cat && isFinite(lat)) { pick({ ref: pRef, lat, lon, props: {} }); if (layer) layer.select(pRef); }
  }
})();
