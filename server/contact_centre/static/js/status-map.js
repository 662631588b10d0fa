// The public status page's map: an enhancement over the place in words (the page works without it).
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || typeof L === "undefined") { return; }
  var lat = parseFloat(el.dataset.lat), lon = parseFloat(el.dataset.lon);
  var map = L.map(el, { scrollWheelZoom: false }).setView([lat, lon], 17);
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 19, attribution: el.dataset.attribution || "" }).addTo(map);
  }
  L.circleMarker([lat, lon], { radius: 9, color: "#d4351c", weight: 3 }).addTo(map);
})();
