// The search page: lists /api/traces with the form's filters, plots them, and polls for
// new ones. Every string from a trace is set as text (textContent), never parsed as HTML.
"use strict";
(function () {
  const PAGE = 50;
  // How often the list is refreshed; `?refresh=SECONDS` changes it (0: never).
  const initial = new URLSearchParams(location.search);
  const REFRESH_MS = 1000 * (initial.has("refresh") ? Number(initial.get("refresh")) : 5);
  const SVG = "http://www.w3.org/2000/svg";
  let offset = 0;
  let current = null; // the filters of the last search, as a query string
  let shown = "";     // the last answer drawn, to skip identical polls
  let busy = false;
  const selected = new Set(); // ticked base ids, kept across refreshes
  const drawn = new Map();    // base id → the summary its row shows, as JSON
  const form = document.getElementById("filters");
  const body = document.querySelector("#traces tbody");
  const status = document.getElementById("status");
  const scatter = document.getElementById("scatter");
  const compareSelected = document.getElementById("compare-selected");

  // cell() and link(): dom.js. Links side by side in a cell are kept apart by a space.
  function spacedLink(parent, href, text) {
    const a = link(parent, href, text);
    parent.appendChild(document.createTextNode(" "));
    return a;
  }

  function query() {
    const p = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "checkbox") { if (el.checked) p.set(el.name, "1"); }
      else if (el.value.trim() !== "") p.set(el.name, el.value.trim());
    }
    p.set("offset", String(offset));
    p.set("limit", String(PAGE));
    return p.toString();
  }

  // Ticks stay across pages and refreshes: the count says how many, seen or not.
  function updateCompare() {
    compareSelected.disabled = selected.size !== 2;
    compareSelected.textContent = "Compare the two ticked" +
      (selected.size > 0 ? " (" + selected.size + " ticked)" : "");
  }

  function makeRow(t) {
    const row = document.createElement("tr");
    if (t.error) row.className = "error";
    row.dataset.baseId = t.base_id;
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.title = "Tick two traces to compare them";
    tick.checked = selected.has(t.base_id);
    tick.addEventListener("change", () => {
      if (tick.checked) selected.add(t.base_id); else selected.delete(t.base_id);
      updateCompare();
    });
    cell(row, "").appendChild(tick);
    cell(row, t.started);
    const root = cell(row, "");
    const id = encodeURIComponent(t.base_id);
    spacedLink(root, "/trace/" + id, t.root ? t.root.label : t.base_id);
    cell(row, t.duration_ms.toFixed(3) + " ms", "num");
    cell(row, String(t.points), "num");
    cell(row, t.services.join(", "));
    cell(row, t.error ? "yes" : "");
    const dl = cell(row, "");
    spacedLink(dl, "/api/traces/" + id + "/html", "HTML").setAttribute("download", t.base_id + ".html");
    spacedLink(dl, "/api/traces/" + id + "/json", "JSON").setAttribute("download", t.base_id + ".json");
    spacedLink(dl, "/api/traces/" + id + "/dot", "DOT").setAttribute("download", t.base_id + ".dot");
    return row;
  }

  // Puts the rows in the answer's order, reusing the rows of traces that did not change
  // and moving none of them needlessly, so that a refresh keeps the ticks, the focus and
  // (with the browser's scroll anchoring) the scroll.
  function drawRows(traces) {
    const old = new Map();
    for (const row of body.rows) old.set(row.dataset.baseId, row);
    const rows = traces.map((t) => {
      const sig = JSON.stringify(t);
      const row = old.get(t.base_id);
      const same = row && drawn.get(t.base_id) === sig;
      drawn.set(t.base_id, sig);
      return same ? row : makeRow(t);
    });
    const kept = new Set(rows);
    for (const [id, row] of old) {
      if (kept.has(row)) continue;
      body.removeChild(row);
      if (!traces.some((t) => t.base_id === id)) drawn.delete(id);
    }
    let cursor = body.firstChild;
    for (const row of rows) {
      if (row === cursor) cursor = cursor.nextSibling;
      else body.insertBefore(row, cursor);
    }
  }

  function svg(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    parent.appendChild(el);
    return el;
  }

  // Duration against start time, one dot per listed trace, each a link to it.
  function drawScatter(traces) {
    scatter.replaceChildren();
    const W = 900, H = 220, L = 70, R = 20, T = 10, B = 30;
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, scatter);
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, scatter);
    if (traces.length === 0) return;
    const t0 = Math.min(...traces.map((t) => t.started_us));
    const t1 = Math.max(...traces.map((t) => t.started_us));
    // The axis tops out a tenth above the longest, and dots keep off the axes.
    const dmax = 1.1 * Math.max(...traces.map((t) => t.duration_ms)) || 1;
    const P = 12;
    const x = (us) => L + P + (t1 === t0 ? 0.5 : (us - t0) / (t1 - t0)) * (W - L - R - 2 * P);
    const y = (ms) => H - B - (ms / dmax) * (H - T - B);
    const text = (s, attrs) => { svg("text", attrs, scatter).textContent = s; };
    text(dmax.toFixed(1) + " ms", { x: L - 6, y: T + 10, class: "tick end" });
    text("0", { x: L - 6, y: H - B, class: "tick end" });
    const first = traces.find((t) => t.started_us === t0);
    const last = traces.find((t) => t.started_us === t1);
    text(first.started.slice(0, 19), { x: L + P, y: H - 8, class: "tick" });
    if (t1 !== t0) text(last.started.slice(0, 19), { x: W - R - P, y: H - 8, class: "tick end" });
    for (const t of traces) {
      const a = svg("a", { href: "/trace/" + encodeURIComponent(t.base_id), class: "dot" }, scatter);
      a.dataset.baseId = t.base_id;
      const c = svg("circle", { cx: x(t.started_us).toFixed(1), cy: y(t.duration_ms).toFixed(1), r: 5,
        class: t.error ? "error" : "ok" }, a);
      const title = document.createElementNS(SVG, "title");
      title.textContent = (t.root ? t.root.label : t.base_id) + " — " + t.duration_ms.toFixed(3) +
        " ms at " + t.started + (t.error ? " (error)" : "");
      c.appendChild(title);
    }
  }

  // `quiet`: a refresh, which says nothing while it waits and keeps the page on failure.
  async function load(quiet) {
    if (busy) return;
    busy = true;
    try {
      if (!quiet) { current = query(); status.textContent = "Loading…"; }
      const q = current;
      let res;
      try {
        res = await fetch("/api/traces?" + q, { credentials: "same-origin" });
      } catch (e) {
        if (!quiet) status.textContent = "Cannot reach the server.";
        return;
      }
      const data = await res.json().catch(() => null);
      if (q !== current) return; // a new search started meanwhile
      if (!res.ok || !data) {
        if (!quiet) status.textContent = (data && data.error) ? data.error : ("Error " + res.status);
        return;
      }
      const text = JSON.stringify(data);
      if (quiet && text === shown) return;
      shown = text;
      drawRows(data.traces);
      drawScatter(data.traces);
      status.textContent = data.traces.length === 0 ? "No traces." :
        ("Traces " + (offset + 1) + "–" + (offset + data.traces.length) + (data.more ? " (more older)" : ""));
      document.getElementById("prev").disabled = offset === 0;
      document.getElementById("next").disabled = !data.more;
    } finally {
      busy = false;
    }
  }

  // Filters from the address (`/?service=api&errors=1`), so that a search can be shared.
  for (const el of form.elements) {
    if (!el.name || !initial.has(el.name)) continue;
    if (el.type === "checkbox") el.checked = initial.get(el.name) === "1";
    else el.value = initial.get(el.name);
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(false); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(false); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE; load(false); });
  compareSelected.addEventListener("click", () => {
    const [a, b] = [...selected];
    location.href = "/compare/" + encodeURIComponent(a) + "/" + encodeURIComponent(b);
  });
  load(false);
  if (REFRESH_MS > 0) {
    setInterval(() => { if (!document.hidden) load(true); }, REFRESH_MS);
  }
})();
