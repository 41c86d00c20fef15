// Helpers every file of the dashboard page uses, so this file loads first: elements built with textContent
// only (never innerHTML with data), and relative times as a person reads them.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

// An HTML element holding `text` (as text, never markup), of class `cls`.
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

// An SVG element with `attrs`, holding `text`.
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// How long before `at` (ms since the epoch) the time `iso` was: "12 s ago", "3 min ago", "2 h ago". A time
// a little ahead of `at` (two clocks never agree exactly) is "0 s ago".
function agoText(iso, at) {
  const s = Math.max(0, Math.round((at - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

// How long after `at` the time `iso` comes: "in 40 s" ("in 0 s" once it has passed).
function untilText(iso, at) { return "in " + Math.max(0, Math.round((Date.parse(iso) - at) / 1000)) + " s"; }
