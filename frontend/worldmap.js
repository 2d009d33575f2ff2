// An offline map of sighting positions: an SVG equirectangular projection (x scaled by the cosine of the
// middle latitude) over Natural Earth's 1:110m land outline (coastline.js); no tiles, no network.
import { h } from "./dom.js";
import { LAND } from "./coastline.js";

const WIDTH_PX = 960; // nominal width: marker sizes and strokes are set for it
const MIN_SPAN = 12; // degrees: a single sighting still shows its coast
const ASPECT = 2; // width / height of the map, widened (or heightened) around the sightings
let clipIds = 0;

function bounds(points) {
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  let [s, n, w, e] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const padLat = Math.max((n - s) * 0.2, (MIN_SPAN - (n - s)) / 2, 1);
  const padLon = Math.max((e - w) * 0.2, (MIN_SPAN - (e - w)) / 2, 1);
  s = Math.max(-90, s - padLat); n = Math.min(90, n + padLat);
  w -= padLon; e += padLon;
  const k = Math.cos(((s + n) / 2) * Math.PI / 180);
  const extraLon = (ASPECT * (n - s)) / k - (e - w); // widen to the map's shape ...
  if (extraLon > 0) { w -= extraLon / 2; e += extraLon / 2; }
  const extraLat = ((e - w) * k) / ASPECT - (n - s); // ... or heighten
  if (extraLat > 0) { s = Math.max(-90, s - extraLat / 2); n = Math.min(90, n + extraLat / 2); }
  return { s, n, w: Math.max(-180, w), e: Math.min(180, e) };
}

function step(span) {
  return [1, 2, 5, 10, 20, 30, 45].find((d) => span / d <= 8) || 60;
}

/**
 * The map.
 * @param {{lat: number, lon: number, label: string, cell: number|null}[]} points in time order;
 *   `cell` is the grid size (degrees) a generalised position stands for, drawn as a square.
 * @param {string} label the map's accessible name
 */
export function sightingMap(points, label) {
  const b = bounds(points);
  const k = Math.cos(((b.s + b.n) / 2) * Math.PI / 180);
  const x = (lon) => (lon - b.w) * k;
  const y = (lat) => b.n - lat;
  const width = (b.e - b.w) * k;
  const height = b.n - b.s;
  const unit = width / WIDTH_PX; // one nominal pixel in map units
  const land = LAND.map((ring) => {
    let d = "";
    for (let i = 0; i < ring.length; i += 2) d += `${i ? "L" : "M"}${x(ring[i] / 10).toFixed(2)} ${y(ring[i + 1] / 10).toFixed(2)}`;
    return d + "Z";
  }).join("");
  const g = step(Math.max(b.e - b.w, b.n - b.s));
  const grid = [];
  for (let lon = Math.ceil(b.w / g) * g; lon <= b.e; lon += g) {
    grid.push(h("svg:line", { x1: x(lon), y1: 0, x2: x(lon), y2: height, class: "graticule" }),
      h("svg:text", { x: x(lon) + 3 * unit, y: height - 4 * unit, "font-size": 11 * unit, class: "grid-label", text: `${Math.abs(lon)}°${lon < 0 ? "W" : lon > 0 ? "E" : ""}` }));
  }
  for (let lat = Math.ceil(b.s / g) * g; lat <= b.n; lat += g) {
    grid.push(h("svg:line", { x1: 0, y1: y(lat), x2: width, y2: y(lat), class: "graticule" }),
      h("svg:text", { x: 3 * unit, y: y(lat) - 3 * unit, "font-size": 11 * unit, class: "grid-label", text: `${Math.abs(lat)}°${lat < 0 ? "S" : lat > 0 ? "N" : ""}` }));
  }
  const track = points.length > 1
    ? h("svg:polyline", { class: "track", points: points.map((p) => `${x(p.lon)},${y(p.lat)}`).join(" "), "stroke-width": 1.5 * unit, "stroke-dasharray": `${4 * unit} ${3 * unit}` })
    : null;
  const marks = points.map((p, i) => h("svg:g", { class: "sighting-point", "data-testid": "map-point" },
    h("svg:title", { text: p.label }),
    p.cell ? h("svg:rect", { x: x(p.lon - p.cell / 2), y: y(p.lat + p.cell / 2), width: p.cell * k, height: p.cell, class: "cell" }) : null,
    h("svg:circle", { cx: x(p.lon), cy: y(p.lat), r: 7 * unit, "stroke-width": 2 * unit }),
    h("svg:text", { x: x(p.lon), y: y(p.lat) + 3.5 * unit, "font-size": 10 * unit, "text-anchor": "middle", text: String(i + 1) })));
  const clip = `map-clip-${++clipIds}`; // land outside the box must not show where the SVG is letterboxed
  return h("svg:svg", { class: "sighting-map", viewBox: `0 0 ${width.toFixed(3)} ${height.toFixed(3)}`, role: "img",
    "aria-label": label, "data-testid": "sighting-map" },
  h("svg:title", { text: label }),
  h("svg:defs", {}, h("svg:clipPath", { id: clip }, h("svg:rect", { x: 0, y: 0, width, height }))),
  h("svg:g", { "clip-path": `url(#${clip})` },
    h("svg:rect", { x: 0, y: 0, width, height, class: "sea" }),
    h("svg:path", { d: land, class: "land" }),
    grid, track, marks));
}
