// Helpers shared by the search page (ui.js) and the compare page (compare.js): each is
// served with this file in front of it (ui/mod.rs), so both build cells and links alike.
// Text always goes in as textContent, never parsed as HTML.
"use strict";

// A <td> with `text` (and class `cls`) appended to `row`.
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// An <a href> with `text` appended to `parent`.
function link(parent, href, text) {
  const el = document.createElement("a");
  el.href = href;
  el.textContent = text;
  parent.appendChild(el);
  return el;
}
