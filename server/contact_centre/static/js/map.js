// Map helpers on Leaflet (served from node_modules): a base map only when tiles are reachable, the ward
// and asset layers from our OGC API Features, job markers coloured by SLA state. Tooltips get DOM
// nodes built with textContent (Leaflet would treat a string as HTML).
"use strict";

const KSMap = (() => {
  const ASSET_MIN_ZOOM = 16;

  function safeClass(ref) { return String(ref).replace(/[^A-Za-z0-9_-]/g, "_"); }

  function text(s) { const span = document.createElement("span"); span.textContent = s; return span; }

  async function ogc(path) {
    const r = await KS.api(path, { raw: true });
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }

  // Try one tile; add the base layer only if it loads (offline machines keep the vector layers).
  function addBase(map, settings, note) {
    if (!settings.tiles_url) { if (note) note.textContent = "No base map configured: wards and assets only."; return; }
    const probe = new Image();
    const timer = setTimeout(() => { probe.src = ""; fail(); }, 4000);
    let settled = false;
    function fail() {
      if (settled) return;
      settled = true;
      if (note) note.textContent = "Base map unavailable: showing wards and assets only.";
    }
    probe.onload = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const attribution = document.createElement("span");
      attribution.textContent = settings.attribution || "";
      L.tileLayer(settings.tiles_url, { maxZoom: 19, attribution: attribution.innerHTML }).addTo(map);
    };
    probe.onerror = () => { clearTimeout(timer); fail(); };
    probe.src = settings.tiles_url.replace("{z}", "13").replace("{x}", "4036").replace("{y}", "2732")
      .replace("{s}", "a");
  }

  async function addWards(map) {
    try {
      const data = await ogc("/ogc/collections/wards/items?limit=200");
      L.geoJSON(data, { interactive: false, style: { color: "#4a7a5a", weight: 1, fillOpacity: 0.03 } }).addTo(map);
    } catch (e) { /* wards are decoration; the map still works */ }
  }

  // A map in `div`, or null with a message when Leaflet is missing.
  async function create(div, { note, zoom } = {}) {
    if (typeof L === "undefined") {
      div.classList.add("map-missing");
      div.textContent = "The map is not available (Leaflet is not installed: run `npm ci`). Search still works.";
      return null;
    }
    const opts = await KS.options();
    const map = L.map(div, { zoomControl: true, keyboard: true });
    map.setView([opts.map.center.lat, opts.map.center.lon], zoom || opts.map.zoom);
    map.attributionControl.setPrefix(false);
    addBase(map, opts.map, note);
    addWards(map);
    return map;
  }

  function jobMarker(job, onClick) {
    const m = L.circleMarker([job.lat, job.lon], {
      radius: 7, weight: 2, fillOpacity: 0.8,
      className: "job-marker sla-" + (job.sla_state || "none") + " job-ref-" + safeClass(job.reference),
    });
    m.bindTooltip(text(job.reference + " · " + (job.status_in_words || job.status)));
    if (onClick) m.on("click", () => onClick(job));
    return m;
  }

  // Assets of one layer inside the view, redrawn as the map moves (only when zoomed in).
  function assetLayer(map, layer, { onPick, onList, note } = {}) {
    const group = L.layerGroup().addTo(map);
    let seq = 0, selected = null;
    async function load() {
      const n = ++seq;
      if (map.getZoom() < ASSET_MIN_ZOOM) {
        group.clearLayers();
        if (note) note.textContent = "Zoom in to see the assets and pick one.";
        if (onList) onList([]);
        return;
      }
      const b = map.getBounds();
      const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6)).join(",");
      let data;
      try {
        data = await ogc("/ogc/collections/" + encodeURIComponent(layer) + "/items?limit=1000&bbox=" + bbox);
      } catch (e) {
        if (note) note.textContent = "Could not load the assets: " + e.message;
        return;
      }
      if (n !== seq) return;  // a newer move won
      group.clearLayers();
      const feats = data.features.filter((f) => f.geometry && f.geometry.type === "Point");
      for (const f of feats) {
        const [lon, lat] = f.geometry.coordinates;
        const ref = f.properties.ref;
        const isSel = selected === ref;
        const m = L.circleMarker([lat, lon], {
          radius: isSel ? 10 : 8, weight: 2, color: isSel ? "#b00" : "#1d4f91", fillOpacity: 0.7,
          className: "asset-marker asset-ref-" + safeClass(ref) + (isSel ? " selected" : ""),
        });
        m.bindTooltip(text(ref + (f.properties.street ? " · " + f.properties.street : "")));
        m.on("click", () => { selected = ref; onPick({ ref, lat, lon, props: f.properties }); load(); });
        group.addLayer(m);
      }
      if (note) note.textContent = feats.length ? feats.length + " assets in view: click the one the caller means."
                                                : "No assets of this kind in view.";
      if (onList) onList(feats);
    }
    map.on("moveend", load);
    load();
    return {
      select(ref) { selected = ref; load(); },
      remove() { map.off("moveend", load); group.remove(); },
    };
  }

  return { create, jobMarker, assetLayer, safeClass, ASSET_MIN_ZOOM };
})();
