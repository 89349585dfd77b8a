// The compare page: /api/compare/{a}/{b} as two trees side by side and a table of the
// biggest differences. Every string from a trace is set as text (textContent).
"use strict";
(function () {
  const parts = location.pathname.split("/");
  // /compare/{a}/{b}
  const a = decodeURIComponent(parts[2] || "");
  const b = decodeURIComponent(parts[3] || "");
  const status = document.getElementById("status");

  // cell() and link(): dom.js.

  function ms(us) { return (us / 1000).toFixed(3) + " ms"; }
  function signed(us) { return (us > 0 ? "+" : us < 0 ? "−" : "±") + ms(Math.abs(us)); }

  function label(r) {
    return [r.service, r.category, r.name].filter((s) => s !== "").join(" · ");
  }

  // Which side a row is on, for the row's class and the tests.
  function kind(r) { return r.a && r.b ? "both" : r.a ? "only-a" : "only-b"; }

  function heads(data) {
    const body = document.querySelector("#heads tbody");
    for (const [name, t] of [["A", data.a], ["B", data.b]]) {
      const row = document.createElement("tr");
      cell(row, name);
      link(cell(row, ""), "/trace/" + encodeURIComponent(t.base_id), t.base_id);
      cell(row, t.started || "");
      cell(row, ms(t.duration_us), "num");
      cell(row, String(t.points), "num");
      body.appendChild(row);
    }
  }

  function tree(data) {
    const body = document.querySelector("#tree tbody");
    data.rows.forEach((r, i) => {
      const row = document.createElement("tr");
      row.className = kind(r);
      row.dataset.match = kind(r);
      row.id = "row-" + i;
      for (const s of [r.a, r.b]) {
        const td = cell(row, "", "point");
        // CSSOM, which the CSP allows (a style attribute it would not).
        td.style.paddingLeft = (0.3 + 1.2 * (r.depth - 1)) + "em";
        if (s) {
          const id = encodeURIComponent(s === r.a ? data.a.base_id : data.b.base_id);
          link(td, "/trace/" + id, label(r)).title = label(r);
          if (s.error) td.classList.add("error");
        }
        cell(row, s ? ms(s.duration_us) : "", "num");
      }
      cell(row, r.a && r.b ? signed(r.diff_us) : "", "num");
      body.appendChild(row);
    });
  }

  function biggest(data) {
    const body = document.querySelector("#biggest tbody");
    // The page shows the first few; the API gives more.
    for (const i of data.biggest.slice(0, 15)) {
      const r = data.rows[i];
      const row = document.createElement("tr");
      row.className = kind(r);
      row.dataset.match = kind(r);
      link(cell(row, ""), "#row-" + i, label(r));
      cell(row, r.a ? ms(r.a.duration_us) : "—", "num");
      cell(row, r.b ? ms(r.b.duration_us) : "—", "num");
      cell(row, signed(r.diff_us), "num");
      body.appendChild(row);
    }
  }

  async function load() {
    status.textContent = "Loading…";
    let res;
    try {
      res = await fetch("/api/compare/" + encodeURIComponent(a) + "/" + encodeURIComponent(b),
        { credentials: "same-origin" });
    } catch (e) {
      status.textContent = "Cannot reach the server.";
      return;
    }
    const data = await res.json().catch(() => null);
    if (!res.ok || !data) {
      status.textContent = (data && data.error) ? data.error : ("Error " + res.status);
      return;
    }
    heads(data);
    biggest(data);
    tree(data);
    status.textContent = data.matched + " points matched, " + data.only_a + " only in A, " +
      data.only_b + " only in B; B − A " + signed(data.b.duration_us - data.a.duration_us) + " in all.";
  }
  load();
})();
