// @ts-check
// DOM and formatting helpers of the dashboard page.

/**
 * h("div", {class: "x"}, child, "text"): text is always set as text, never parsed as HTML.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs] on* keys are listeners; false/null/undefined values are left out
 * @param {...(Node | string | undefined | null | false | Array<Node | string | undefined | null | false>)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter(/** @returns {c is Node | string} */ (c) => c !== undefined && c !== null && c !== false));
  return el;
}

/**
 * An element of the page by id; the page's HTML has them all.
 * @template {HTMLElement} [E=HTMLElement]
 * @param {string} id
 * @returns {E}
 */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return /** @type {E} */ (el);
}

/** @param {unknown} value */
export const pretty = (value) => JSON.stringify(value, null, 2);

/** @param {number} n @param {string} word */
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** @param {Record<string, string> | null | undefined} map */
export function keyValueChips(map) {
  const entries = Object.entries(map ?? {});
  if (entries.length === 0) return h("span", { class: "muted" }, "–");
  return h("span", { class: "chips" }, entries.map(([k, v]) => h("span", { class: "chip" }, h("b", {}, k), `=${v}`)));
}

/** Per-second rates: "0", "0.25", "12.5", "140". @param {number} n */
export function formatRate(n) {
  if (n === 0) return "0";
  return n >= 100 ? String(Math.round(n)) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** Seconds as milliseconds, "–" when unknown. @param {number | null} seconds */
export function formatLatency(seconds) {
  if (seconds === null) return "–";
  const ms = seconds * 1000;
  return `${ms >= 100 ? Math.round(ms) : ms >= 1 ? ms.toFixed(1) : ms.toFixed(2)} ms`;
}

/** @param {number} ratio 0..1 */
export const formatPercent = (ratio) => `${ratio === 0 ? 0 : Math.max(ratio * 100, 0.1).toFixed(ratio >= 0.1 ? 0 : 1)}%`;

const SVG = "http://www.w3.org/2000/svg";

/**
 * A small line of values, scaled to its own maximum.
 * @param {number[]} values oldest first
 * @param {string} label what the line shows, for screen readers
 */
export function sparkline(values, label) {
  const width = 72;
  const height = 22;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const max = Math.max(...values, 0);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (max > 0 ? (v / max) * (height - 4) : 0)).toFixed(1)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.length === 1 ? `0,${points[0]?.split(",")[1]} ${width},${points[0]?.split(",")[1]}` : points.join(" "));
  svg.append(line);
  return svg;
}
