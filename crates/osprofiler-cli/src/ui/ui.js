// The search page: lists /api/traces with the form's filters. Every string from a trace is
// set as text (textContent), never parsed as HTML.
"use strict";
(function () {
  const PAGE = 50;
  let offset = 0;
  const form = document.getElementById("filters");
  const body = document.querySelector("#traces tbody");
  const status = document.getElementById("status");

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function link(parent, href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    parent.appendChild(a);
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
    return p;
  }

  async function load() {
    status.textContent = "Loading…";
    let res;
    try {
      res = await fetch("/api/traces?" + query().toString(), { credentials: "same-origin" });
    } catch (e) {
      status.textContent = "Cannot reach the server.";
      return;
    }
    const data = await res.json().catch(() => null);
    if (!res.ok || !data) {
      status.textContent = (data && data.error) ? data.error : ("Error " + res.status);
      return;
    }
    body.replaceChildren();
    for (const t of data.traces) {
      const row = document.createElement("tr");
      if (t.error) row.className = "error";
      cell(row, t.started);
      const root = cell(row, "");
      const id = encodeURIComponent(t.base_id);
      link(root, "/trace/" + id, t.root ? t.root.label : t.base_id);
      cell(row, t.duration_ms.toFixed(3) + " ms", "num");
      cell(row, String(t.points), "num");
      cell(row, t.services.join(", "));
      cell(row, t.error ? "yes" : "");
      const dl = cell(row, "");
      link(dl, "/api/traces/" + id + "/html", "HTML").setAttribute("download", t.base_id + ".html");
      link(dl, "/api/traces/" + id + "/json", "JSON").setAttribute("download", t.base_id + ".json");
      link(dl, "/api/traces/" + id + "/dot", "DOT").setAttribute("download", t.base_id + ".dot");
      row.dataset.baseId = t.base_id;
      body.appendChild(row);
    }
    status.textContent = data.traces.length === 0 ? "No traces." :
      ("Traces " + (offset + 1) + "–" + (offset + data.traces.length) + (data.more ? " (more older)" : ""));
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = !data.more;
  }

  // Filters from the address (`/?service=api&errors=1`), so that a search can be shared.
  const initial = new URLSearchParams(location.search);
  for (const el of form.elements) {
    if (!el.name || !initial.has(el.name)) continue;
    if (el.type === "checkbox") el.checked = initial.get(el.name) === "1";
    else el.value = initial.get(el.name);
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load(); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE; load(); });
  load();
})();
