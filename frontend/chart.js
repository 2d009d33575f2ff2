// A horizontal bar chart drawn as inline SVG (no chart library, no CDN).
import { h } from "./dom.js";

/**
 * @param {{label: string, value: number}[]} rows sorted as they should appear
 * @param {string} title accessible name of the chart
 * @param {number} width drawing width in CSS pixels (the container's)
 */
export function barChart(rows, title, width = 600) {
  const barH = 22, gap = 8, valueW = 44;
  const labelW = Math.round(Math.min(230, width * 0.5)); // user units = CSS pixels, so text stays legible
  const height = Math.max(1, rows.length) * (barH + gap) + gap;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title,
    class: "bar-chart", preserveAspectRatio: "xMinYMin meet" });
  svg.append(h("svg:title", { text: `${title}: ${rows.map((r) => `${r.label} ${r.value}`).join(", ")}` }));
  rows.forEach((row, i) => {
    const y = gap + i * (barH + gap);
    const w = Math.max(2, ((width - labelW - valueW) * row.value) / max);
    const maxChars = Math.floor(labelW / 8.2);
    const label = row.label.length > maxChars ? `${row.label.slice(0, maxChars - 1)}…` : row.label;
    svg.append(
      h("svg:text", { x: labelW - 8, y: y + barH / 2, "text-anchor": "end", "dominant-baseline": "central", class: "bar-label", text: label }),
      h("svg:rect", { x: labelW, y, width: w, height: barH, rx: 4, class: `bar ${row.cls || ""}` }),
      h("svg:text", { x: labelW + w + 6, y: y + barH / 2, "dominant-baseline": "central", class: "bar-value", text: row.value }),
    );
  });
  return svg;
}
