// Safe DOM helpers: every server string goes through textContent or setAttribute, never parsed as markup.

/**
 * Build an element. `attrs` keys: `class`, `text`, `on<Event>` (listener), `dataset` (object),
 * boolean `true` sets an empty attribute, `false`/`null`/`undefined` skips it.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Format a [0, 1] number as a percentage, or an em dash when absent. */
export function pct(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(digits)} %` : "—";
}

export function num(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** Announce a message to screen readers through the page's polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (region) {
    region.textContent = "";
    setTimeout(() => { region.textContent = message; }, 30);
  }
}

/** Make a drop zone: drag-and-drop plus keyboard/click opening the hidden file input. */
export function dropZone(zone, input, onFiles) {
  zone.addEventListener("click", (event) => {
    if (event.target !== input) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) onFiles(files);
  });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    if (files.length) onFiles(files);
  });
}

/** Save a Blob as a file through a temporary object URL. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The updater of a progress row `#<name>-progress` (bar `#<name>-progress-bar`, text
 * `#<name>-progress-text`): a fraction 0..1, `null` for indeterminate (the server is working),
 * `false` to hide it.
 */
export function progressRow(name) {
  return (fraction, text) => {
    const bar = $(`#${name}-progress-bar`);
    $(`#${name}-progress`).hidden = fraction === false;
    if (fraction === null) bar.removeAttribute("value");
    else if (typeof fraction === "number") bar.value = Math.round(fraction * 100);
    $(`#${name}-progress-text`).textContent = text || "";
  };
}
