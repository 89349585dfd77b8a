// osprofiler trace report: draws the trace embedded in #trace-data.
//
// Rules this script keeps:
// - Every string from the trace is inserted as text (textContent, title, dataset), never
//   parsed as HTML; styles only ever get numbers and our own palette.
// - Only the rows in view (plus an overscan) are in the document: the flat list of rows is
//   built once, collapsing and filtering recompute the visible list in one pass, and
//   scrolling redraws the window.
'use strict';
(function () {
  const T_BEGIN = performance.now();
  const ROW_H = 24;
  const OVERSCAN = 12;
  // Deeper levels all sit at the last indent, with their depth written out.
  const MAX_INDENT_LEVELS = 16;
  const INDENT = 13;
  // Reserved: red is for errors, near-black for the critical path.
  const PALETTE = [
    '#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#5b8ff9',
    '#8cd17d', '#f1a2c0', '#499894', '#d4a6c8', '#86bcb6', '#e49444', '#79706e', '#a0cbe8',
  ];
  // Column of each field in a point's tuple (see html.rs, write_data).
  const F_DEPTH = 0, F_CAT = 1, F_SVC = 2, F_HOST = 3, F_PROJ = 4, F_START = 5, F_DUR = 6,
    F_ID = 7, F_PID = 8, F_ERR = 9, F_BEGIN_EV = 10, F_END_EV = 11;

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fatal(message) {
    const app = $('app');
    if (app) app.hidden = true;
    document.body.appendChild(el('div', 'fatal', message));
  }

  let D;
  try {
    D = JSON.parse($('trace-data').textContent);
  } catch (e) {
    fatal('The trace data embedded in this file could not be read: ' + e.message);
    return;
  }
  if (!D || typeof D !== 'object') D = {};
  const T_PARSED = performance.now();

  const arr = (v) => (Array.isArray(v) ? v : []);
  const pts = arr(D.pt);
  const n = pts.length;
  const svcNames = arr(D.svc).map(String);
  const catNames = arr(D.cat).map(String);
  const hostNames = arr(D.hosts).map(String);
  const projNames = arr(D.proj).map(String);
  const total = Math.max(1, Number(D.dur) || 0);

  // ---- The tree, as flat arrays in preorder --------------------------------------------
  const depth = new Int32Array(n);
  const parent = new Int32Array(n);
  const end = new Int32Array(n); // one past the last descendant
  const nkids = new Int32Array(n);
  const startUs = new Float64Array(n);
  const durUs = new Float64Array(n);
  const svcOf = new Int32Array(n);
  const catOf = new Int32Array(n);
  const isErr = new Uint8Array(n);
  const onCp = new Uint8Array(n);
  const collapsed = new Uint8Array(n);
  const errors = [];
  const idIndex = new Map();
  {
    const stack = [];
    for (let i = 0; i < n; i++) {
      let p = pts[i];
      if (!Array.isArray(p)) p = pts[i] = [1, -1, -1, -1, -1, 0, 0, '', null, null, null, null];
      let d = Math.trunc(Number(p[F_DEPTH])) || 1;
      if (d < 1) d = 1;
      if (d > stack.length + 1) d = stack.length + 1;
      stack.length = d - 1;
      depth[i] = d;
      parent[i] = d > 1 ? stack[d - 2] : -1;
      stack.push(i);
      startUs[i] = Number(p[F_START]) || 0;
      durUs[i] = Math.max(0, Number(p[F_DUR]) || 0);
      svcOf[i] = Number.isInteger(p[F_SVC]) ? p[F_SVC] : -1;
      catOf[i] = Number.isInteger(p[F_CAT]) ? p[F_CAT] : -1;
      if (p[F_ERR] !== null && p[F_ERR] !== undefined) {
        isErr[i] = 1;
        errors.push(i);
      }
      end[i] = i + 1;
      if (parent[i] >= 0) nkids[parent[i]]++;
      if (!idIndex.has(String(p[F_ID]))) idIndex.set(String(p[F_ID]), i);
    }
    for (let i = n - 1; i >= 0; i--) {
      const q = parent[i];
      if (q >= 0 && end[i] > end[q]) end[q] = end[i];
    }
    for (const i of arr(D.cp)) if (Number.isInteger(i) && i >= 0 && i < n) onCp[i] = 1;
  }

  const nameOf = (table, k, none) => (k >= 0 && k < table.length ? table[k] : none);
  const svcName = (i) => nameOf(svcNames, svcOf[i], '') || '(no service)';
  const catName = (i) => nameOf(catNames, catOf[i], '') || '(unnamed)';
  const idOf = (i) => String(pts[i][F_ID]);
  function parentIdOf(i) {
    const pid = pts[i][F_PID];
    if (pid === 0) return parent[i] >= 0 ? idOf(parent[i]) : null;
    return pid === null || pid === undefined ? null : String(pid);
  }
  const eventOf = (i, k) => {
    const e = pts[i][k];
    return e && typeof e === 'object' ? e : null;
  };
  const infoOf = (ev) => (ev && ev.info && typeof ev.info === 'object' ? ev.info : null);
  const text = (v) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  const oneLine = (s) => s.replace(/\s+/g, ' ').trim();

  // ---- Colours: a fixed palette, assigned by name -----------------------------------------
  function hash(s) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
  }
  // Each name takes its hashed slot, or the next free one: the same set of names always
  // gets the same colours, and up to PALETTE.length names never share one.
  function colours(names) {
    const used = new Set();
    const byName = new Map();
    for (const name of [...new Set(names)].sort()) {
      let k = hash(name) % PALETTE.length;
      for (let t = 0; t < PALETTE.length && used.has(k); t++) k = (k + 1) % PALETTE.length;
      used.add(k);
      byName.set(name, PALETTE[k]);
    }
    return names.map((name) => byName.get(name));
  }
  const svcColour = colours(svcNames);
  const catColour = colours(catNames);
  let colourBy = 'service';
  const barColour = (i) =>
    (colourBy === 'service' ? svcColour[svcOf[i]] : catColour[catOf[i]]) || '#999999';

  // ---- Formatting -------------------------------------------------------------------------
  function num3(x) {
    return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  }
  function fmtUs(us) {
    const a = Math.abs(us);
    if (a < 1000) return Math.round(us) + ' µs';
    if (a < 1e6) return num3(us / 1000) + ' ms';
    if (a < 6e7) return num3(us / 1e6) + ' s';
    const m = Math.floor(us / 6e7);
    return m + ' min ' + Math.round((us - m * 6e7) / 1e6) + ' s';
  }
  const group = (x) => String(Math.round(x)).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
  function fmtExact(us) {
    return us < 1000 ? group(us) + ' µs' : fmtUs(us) + ' (' + group(us) + ' µs)';
  }
  function fmtAbs(relUs) {
    const t0 = D.t0; // null for an empty trace
    if (typeof t0 !== 'number' || !Number.isFinite(t0)) return '';
    const us = t0 + relUs;
    const ms = Math.floor(us / 1000);
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return '';
    const micro = String(Math.round(us - ms * 1000)).padStart(3, '0');
    return d.toISOString().replace('T', ' ').replace('Z', '') + micro;
  }
  const pct = (x) => (x >= 10 ? x.toFixed(0) : x.toFixed(1)) + '%';

  // ---- Row labels and the filter's text, made on demand -----------------------------------
  const labels = new Array(n);
  function labelOf(i) {
    let s = labels[i];
    if (s === undefined) s = labels[i] = computeLabel(i);
    return s;
  }
  function computeLabel(i) {
    const info = infoOf(eventOf(i, F_BEGIN_EV)) || infoOf(eventOf(i, F_END_EV)) || {};
    const r = info.request;
    if (r && typeof r === 'object') {
      let s = text(r.method) + ' ' + text(r.path);
      if (r.query) s += '?' + text(r.query);
      return oneLine(s);
    }
    const h = info.requests;
    if (h && typeof h === 'object') {
      let where = text(h.hostname);
      if (h.port) where += ':' + text(h.port);
      return oneLine(text(h.method) + ' ' + where + text(h.path));
    }
    const db = info.db;
    if (db && typeof db === 'object' && db.statement) return oneLine(text(db.statement)).slice(0, 400);
    const f = info.function;
    if (f && typeof f === 'object' && f.name) return oneLine(text(f.name));
    return '';
  }

  let haystacks = null;
  function collect(v, out, d) {
    if (v === null || v === undefined || d > 8 || out.length > 400) return;
    if (typeof v === 'string') out.push(v);
    else if (typeof v === 'number' || typeof v === 'boolean') out.push(String(v));
    else if (Array.isArray(v)) for (const x of v) collect(x, out, d + 1);
    else if (typeof v === 'object') for (const k of Object.keys(v)) collect(v[k], out, d + 1);
  }
  // Name, service, host, project, ids, exception, and every value in the events' info
  // (function name and arguments, SQL, path, message…), lowercased once.
  function ensureHaystacks() {
    if (haystacks) return;
    haystacks = new Array(n);
    for (let i = 0; i < n; i++) {
      const p = pts[i];
      const parts = [catName(i), svcName(i), nameOf(hostNames, p[F_HOST], ''),
        nameOf(projNames, p[F_PROJ], ''), idOf(i), text(p[F_ERR])];
      collect(infoOf(eventOf(i, F_BEGIN_EV)), parts, 0);
      collect(infoOf(eventOf(i, F_END_EV)), parts, 0);
      haystacks[i] = parts.join('\n').toLowerCase();
    }
  }

  // ---- The visible list ---------------------------------------------------------------------
  const visible = new Int32Array(n);
  const posOf = new Int32Array(n);
  let vn = 0;
  let query = '';
  let errorsOnly = false;
  let criticalOnly = false;
  let keep = null; // when filtering: matches and their ancestors
  let matched = null; // when filtering: matches
  let matchCount = 0;
  let selected = -1;

  const filtering = () => query !== '' || errorsOnly || criticalOnly;

  // One pass: a hidden or collapsed point skips its whole subtree.
  function rebuild() {
    posOf.fill(-1);
    vn = 0;
    let i = 0;
    while (i < n) {
      if (keep && !keep[i]) {
        i = end[i];
        continue;
      }
      posOf[i] = vn;
      visible[vn++] = i;
      i = collapsed[i] ? end[i] : i + 1;
    }
    canvas.style.height = vn * ROW_H + 'px';
  }

  // Matches, then their ancestors (children come after parents in preorder, so one reverse
  // pass reaches every ancestor); ancestors of matches are expanded to show them.
  function applyFilter() {
    if (!filtering()) {
      keep = matched = null;
      matchCount = 0;
    } else {
      if (query) ensureHaystacks();
      keep = new Uint8Array(n);
      matched = new Uint8Array(n);
      matchCount = 0;
      for (let i = 0; i < n; i++) {
        if ((query === '' || haystacks[i].includes(query)) &&
          (!errorsOnly || isErr[i]) && (!criticalOnly || onCp[i])) {
          keep[i] = matched[i] = 1;
          matchCount++;
        }
      }
      for (let i = n - 1; i >= 0; i--) {
        const q = parent[i];
        if (keep[i] && q >= 0) {
          keep[q] = 1;
          collapsed[q] = 0;
        }
      }
    }
    rebuild();
    updateCounts();
    paint(true);
  }

  // ---- Drawing ------------------------------------------------------------------------------
  const scroller = $('scroller');
  const canvas = $('canvas');
  const grid = $('grid');
  let drawn = [-1, -1];

  const indentOf = (i) => 4 + Math.min(depth[i] - 1, MAX_INDENT_LEVELS) * INDENT;

  function catPill(i) {
    const cat = el('span', 'cat');
    const dot = el('i');
    dot.style.setProperty('--c', catColour[catOf[i]] || '#999999');
    cat.appendChild(dot);
    cat.appendChild(el('span', null, catName(i)));
    return cat;
  }

  function makeRow(i, pos) {
    const p = pts[i];
    const row = el('div', 'row');
    row.id = 'row-' + i;
    row.dataset.row = '';
    row.dataset.id = idOf(i);
    row.dataset.index = String(i);
    row.setAttribute('role', 'treeitem');
    row.setAttribute('aria-level', String(depth[i]));
    row.setAttribute('aria-selected', i === selected ? 'true' : 'false');
    if (nkids[i]) row.setAttribute('aria-expanded', collapsed[i] ? 'false' : 'true');
    row.style.top = pos * ROW_H + 'px';
    if (isErr[i]) row.classList.add('error');
    if (onCp[i]) row.classList.add('critical');
    if (i === selected) row.classList.add('selected');
    if (matched && matched[i] && query) row.classList.add('match');
    if (matched && !matched[i]) row.classList.add('dim');

    const name = el('div', 'name');
    name.style.paddingLeft = indentOf(i) + 'px';
    const caret = el('span', nkids[i] ? 'caret' : 'caret leaf', nkids[i] ? (collapsed[i] ? '▶' : '▼') : '');
    if (nkids[i]) caret.title = collapsed[i] ? 'Expand' : 'Collapse';
    if (depth[i] - 1 > MAX_INDENT_LEVELS) name.appendChild(el('span', 'deep', 'L' + depth[i]));
    name.appendChild(caret);
    if (isErr[i]) {
      const icon = el('span', 'err-icon', '!');
      icon.title = 'Error: ' + text(p[F_ERR]);
      name.appendChild(icon);
    }
    const svc = el('span', 'svc', svcName(i));
    svc.style.setProperty('--c', svcColour[svcOf[i]] || '#999999');
    name.appendChild(svc);
    name.appendChild(catPill(i));
    const label = labelOf(i);
    if (label) name.appendChild(el('span', 'lbl', label));
    if (nkids[i] && collapsed[i]) name.appendChild(el('span', 'kids', '+' + (end[i] - i - 1)));
    row.title = svcName(i) + ' · ' + catName(i) + (label ? ' · ' + label : '') + ' · ' + fmtUs(durUs[i]);

    const tl = el('div', 'tl');
    const left = (startUs[i] / total) * 100;
    const width = (durUs[i] / total) * 100;
    const bar = el('div', 'bar');
    bar.style.left = left + '%';
    bar.style.width = width + '%';
    bar.style.setProperty('--c', barColour(i));
    tl.appendChild(bar);
    const dur = el('span', 'dur', fmtUs(durUs[i]));
    // The duration goes right of the bar; left of it when the bar ends near the edge; inside
    // it when the bar fills the axis.
    if (left + width <= 80) dur.style.left = left + width + '%';
    else if (left >= 14) dur.style.right = 100 - left + '%';
    else {
      dur.classList.add('inside');
      dur.style.right = 100 - left - width + '%';
    }
    tl.appendChild(dur);

    row.appendChild(name);
    row.appendChild(tl);
    return row;
  }

  function viewHeight() {
    return scroller.clientHeight || 600;
  }

  // Draws the rows in view; `force` redraws even when the window did not move.
  function paint(force) {
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(vn, Math.ceil((top + viewHeight()) / ROW_H) + OVERSCAN);
    if (!force && first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    for (const old of canvas.querySelectorAll('.row')) old.remove();
    const frag = document.createDocumentFragment();
    for (let pos = first; pos < last; pos++) frag.appendChild(makeRow(visible[pos], pos));
    canvas.appendChild(frag);
    if (selected >= 0 && posOf[selected] >= first && posOf[selected] < last) {
      scroller.setAttribute('aria-activedescendant', 'row-' + selected);
    } else {
      scroller.removeAttribute('aria-activedescendant');
    }
    document.body.dataset.rows = String(last - first);
  }

  let framePending = false;
  scroller.addEventListener('scroll', () => {
    if (framePending) return;
    framePending = true;
    requestAnimationFrame(() => {
      framePending = false;
      paint(false);
    });
  }, { passive: true });
  window.addEventListener('resize', () => paint(true));

  function scrollToPos(pos) {
    const h = viewHeight();
    const y = pos * ROW_H;
    if (y < scroller.scrollTop) scroller.scrollTop = y;
    else if (y + ROW_H > scroller.scrollTop + h) scroller.scrollTop = y + ROW_H - h;
  }
  function centreOnPos(pos) {
    const y = pos * ROW_H;
    if (y < scroller.scrollTop || y + ROW_H > scroller.scrollTop + viewHeight()) {
      scroller.scrollTop = Math.max(0, y - viewHeight() / 2);
    }
  }

  // ---- Axis -------------------------------------------------------------------------------
  function drawAxis() {
    const raw = total / 8;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const axis = $('axis');
    const unit = total < 1000 ? ['µs', 1] : total < 1e6 ? ['ms', 1000] : ['s', 1e6];
    for (let k = 0; k * step <= total + 1e-9; k++) {
      const t = k * step;
      const x = (t / total) * 100;
      const tick = el('div', 'tick');
      tick.style.left = x + '%';
      // A label this close to the right edge would not fit: the line alone says enough.
      if (x <= 93) tick.appendChild(el('span', null, +(t / unit[1]).toFixed(3) + ' ' + unit[0]));
      axis.appendChild(tick);
      if (t > 0) {
        const line = el('i');
        line.style.left = x + '%';
        grid.appendChild(line);
      }
    }
  }

  // ---- Selection, expansion -----------------------------------------------------------------
  function setCollapsed(i, value) {
    if (i < 0 || !nkids[i] || collapsed[i] === value) return;
    collapsed[i] = value;
    rebuild();
    updateCounts();
    if (selected >= 0 && posOf[selected] >= 0) scrollToPos(posOf[selected]);
    paint(true);
  }

  function expandAll() {
    collapsed.fill(0);
    rebuild();
    updateCounts();
    paint(true);
  }

  function collapseAll() {
    for (let i = 0; i < n; i++) collapsed[i] = nkids[i] ? 1 : 0;
    rebuild();
    // The selection moves to its top-level ancestor, which stays visible.
    if (selected >= 0) {
      let a = selected;
      while (parent[a] >= 0) a = parent[a];
      if (a !== selected) select(a, false);
    }
    scroller.scrollTop = 0;
    updateCounts();
    paint(true);
  }

  // Makes a point visible: expands its ancestors, and drops the filter if it hides it.
  function reveal(i) {
    let changed = false;
    for (let a = parent[i]; a >= 0; a = parent[a]) {
      if (collapsed[a]) {
        collapsed[a] = 0;
        changed = true;
      }
    }
    if (keep && !keep[i]) {
      query = '';
      $('filter').value = '';
      setToggle('errors-only', (errorsOnly = false));
      setToggle('critical-only', (criticalOnly = false));
      applyFilter();
    } else if (changed) {
      rebuild();
      updateCounts();
    }
  }

  function select(i, centre) {
    if (i < 0 || i >= n) return;
    selected = i;
    reveal(i);
    const pos = posOf[i];
    if (pos >= 0) {
      if (centre) centreOnPos(pos);
      else scrollToPos(pos);
    }
    paint(true);
    showDetails(i);
  }

  function selectPos(pos) {
    if (vn === 0) return;
    select(visible[Math.max(0, Math.min(vn - 1, pos))], false);
  }

  canvas.addEventListener('click', (e) => {
    const row = e.target.closest('.row');
    if (!row) return;
    const i = Number(row.dataset.index);
    if (e.target.closest('.caret')) {
      setCollapsed(i, collapsed[i] ? 0 : 1);
      return;
    }
    select(i, false);
  });
  canvas.addEventListener('dblclick', (e) => {
    const row = e.target.closest('.row');
    if (row && !e.target.closest('.caret')) {
      const i = Number(row.dataset.index);
      setCollapsed(i, collapsed[i] ? 0 : 1);
    }
  });

  scroller.addEventListener('keydown', (e) => {
    if (vn === 0 || e.altKey || e.ctrlKey || e.metaKey) return;
    const pos = selected >= 0 ? posOf[selected] : -1;
    const page = Math.max(1, Math.floor(viewHeight() / ROW_H) - 1);
    switch (e.key) {
      case 'ArrowDown': selectPos(pos + 1); break;
      case 'ArrowUp': selectPos(pos < 0 ? 0 : pos - 1); break;
      case 'PageDown': selectPos(pos + page); break;
      case 'PageUp': selectPos(pos - page); break;
      case 'Home': selectPos(0); break;
      case 'End': selectPos(vn - 1); break;
      case 'ArrowRight':
        if (selected < 0) selectPos(0);
        else if (nkids[selected] && collapsed[selected]) setCollapsed(selected, 0);
        else if (nkids[selected]) selectPos(pos + 1);
        break;
      case 'ArrowLeft':
        if (selected < 0) selectPos(0);
        else if (nkids[selected] && !collapsed[selected]) setCollapsed(selected, 1);
        else if (parent[selected] >= 0) select(parent[selected], false);
        break;
      case 'Enter':
      case ' ':
        if (selected >= 0) setCollapsed(selected, collapsed[selected] ? 0 : 1);
        else selectPos(0);
        break;
      default:
        return;
    }
    e.preventDefault();
  });

  // ---- Toolbar ------------------------------------------------------------------------------
  function setToggle(id, on) {
    $(id).setAttribute('aria-pressed', on ? 'true' : 'false');
  }

  function updateCounts() {
    const mc = $('match-count');
    if (filtering()) {
      mc.textContent = matchCount.toLocaleString('en-US') + (matchCount === 1 ? ' match' : ' matches');
      mc.classList.toggle('none', matchCount === 0);
    } else {
      mc.textContent = '';
      mc.classList.remove('none');
    }
    const notes = [];
    notes.push('Showing ' + vn.toLocaleString('en-US') + ' of ' + n.toLocaleString('en-US') + ' points');
    if (Number(D.skipped)) notes.push(D.skipped + ' invalid events skipped');
    if (Number(D.duplicates)) notes.push(D.duplicates + ' duplicate events ignored');
    if (Number(D.detached)) notes.push(D.detached + ' points detached (parent cycle or nesting too deep)');
    $('status').textContent = notes.join(' · ');
    document.body.dataset.visible = String(vn);
    document.body.dataset.matches = String(matchCount);
  }

  const filterInput = $('filter');
  let filterTimer = 0;
  filterInput.addEventListener('input', () => {
    clearTimeout(filterTimer);
    const run = () => {
      query = filterInput.value.trim().toLowerCase();
      applyFilter();
    };
    // Large traces: wait for a pause in typing.
    if (n > 20000) filterTimer = setTimeout(run, 160);
    else run();
  });
  filterInput.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      filterInput.value = '';
      query = '';
      applyFilter();
      scroller.focus();
      e.preventDefault();
    } else if (e.key === 'Enter') {
      clearTimeout(filterTimer);
      const q = filterInput.value.trim().toLowerCase();
      if (q !== query) {
        query = q;
        applyFilter();
      }
      nextMatch();
      e.preventDefault();
    }
  });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      filterInput.focus();
      filterInput.select();
    }
  });

  function nextMatch() {
    if (!matched || vn === 0) return;
    const from = selected >= 0 && posOf[selected] >= 0 ? posOf[selected] + 1 : 0;
    for (let k = 0; k < vn; k++) {
      const i = visible[(from + k) % vn];
      if (matched[i]) {
        select(i, true);
        return;
      }
    }
  }

  function nextError() {
    if (errors.length === 0) return;
    const next = errors.find((i) => i > selected);
    select(next === undefined ? errors[0] : next, true);
    scroller.focus({ preventScroll: true });
  }

  $('expand-all').addEventListener('click', expandAll);
  $('collapse-all').addEventListener('click', collapseAll);
  $('errors-only').addEventListener('click', () => {
    errorsOnly = !errorsOnly;
    setToggle('errors-only', errorsOnly);
    applyFilter();
  });
  $('critical-only').addEventListener('click', () => {
    criticalOnly = !criticalOnly;
    setToggle('critical-only', criticalOnly);
    applyFilter();
  });
  $('next-error').addEventListener('click', nextError);
  $('err-count').addEventListener('click', nextError);
  for (const mode of ['service', 'category']) {
    $('colour-' + mode).addEventListener('click', () => {
      colourBy = mode;
      setToggle('colour-service', mode === 'service');
      setToggle('colour-category', mode === 'category');
      paint(true);
    });
  }

  // ---- Side panel ----------------------------------------------------------------------------
  function showTab(name) {
    for (const t of ['summary', 'details']) {
      $('tab-' + t).setAttribute('aria-selected', t === name ? 'true' : 'false');
      $('panel-' + t).hidden = t !== name;
    }
  }
  $('tab-summary').addEventListener('click', () => showTab('summary'));
  $('tab-details').addEventListener('click', () => showTab('details'));

  // Time of a point not covered by its children (overlaps counted once).
  function selfTime(i) {
    const lo = startUs[i];
    const hi = lo + durUs[i];
    const spans = [];
    for (let c = i + 1; c < end[i]; c = end[c]) {
      const s = Math.min(Math.max(startUs[c], lo), hi);
      const f = Math.min(Math.max(startUs[c] + durUs[c], lo), hi);
      if (f > s) spans.push([s, f]);
    }
    spans.sort((a, b) => a[0] - b[0]);
    let covered = 0;
    let reach = lo;
    for (const [s0, f] of spans) {
      const s = Math.max(s0, reach);
      if (f > s) {
        covered += f - s;
        reach = f;
      }
    }
    return hi - lo - covered;
  }

  function field(dl, name, value, cls) {
    dl.appendChild(el('dt', null, name));
    const dd = el('dd', cls || null);
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value === null || value === undefined || value === '' ? '—' : String(value);
    dl.appendChild(dd);
    return dd;
  }

  function pointLink(i) {
    const a = el('a', 'mono', idOf(i));
    a.href = '#';
    a.title = 'Go to this point';
    a.addEventListener('click', (e) => {
      e.preventDefault();
      select(i, true);
    });
    return a;
  }

  function payloadBlock(panel, title, ev) {
    panel.appendChild(el('h2', null, title));
    if (ev === null || ev === undefined) {
      panel.appendChild(el('p', 'missing', 'Not recorded: the backend has no such event for this point.'));
      return;
    }
    panel.appendChild(el('pre', 'payload', JSON.stringify(ev, null, 2)));
  }

  function showDetails(i) {
    const panel = $('panel-details');
    panel.replaceChildren();
    const p = pts[i];
    const head = el('div', 'detail-head');
    const svc = el('span', 'svc', svcName(i));
    svc.style.setProperty('--c', svcColour[svcOf[i]] || '#999999');
    head.appendChild(svc);
    head.appendChild(catPill(i));
    if (onCp[i]) head.appendChild(el('span', 'badge critical', 'critical path'));
    panel.appendChild(head);
    const label = labelOf(i);
    if (label) panel.appendChild(el('div', 'detail-label', label));

    if (isErr[i]) {
      const box = el('div', 'exception');
      box.appendChild(el('b', null, text(p[F_ERR])));
      const message = infoOf(eventOf(i, F_END_EV)) && infoOf(eventOf(i, F_END_EV)).message;
      if (message !== undefined && message !== null) {
        box.appendChild(document.createTextNode(': ' + text(message)));
      }
      panel.appendChild(box);
    }

    const dl = el('dl', 'fields');
    field(dl, 'Name', catName(i));
    field(dl, 'Service', svcNames[svcOf[i]] || '');
    field(dl, 'Project', nameOf(projNames, p[F_PROJ], ''));
    field(dl, 'Host', nameOf(hostNames, p[F_HOST], ''));
    field(dl, 'Point id', idOf(i), 'mono');
    if (parent[i] >= 0) field(dl, 'Parent id', pointLink(parent[i]), 'mono');
    else field(dl, 'Parent id', parentIdOf(i), 'mono');
    const abs = fmtAbs(startUs[i]);
    field(dl, 'Start', '+' + fmtUs(startUs[i]) + (abs ? '  ·  ' + abs + ' UTC' : ''));
    field(dl, 'Duration', fmtExact(durUs[i]));
    field(dl, 'Self time', fmtExact(selfTime(i)));
    field(dl, 'Share', pct((durUs[i] / total) * 100) + ' of the trace');
    const kidsText = nkids[i] === 0 ? 'no children'
      : (nkids[i] === 1 ? '1 child' : nkids[i] + ' children') + ', ' + (end[i] - i - 1) + ' points below';
    field(dl, 'Depth', depth[i] + ' · ' + kidsText);
    if (isErr[i]) field(dl, 'Exception', text(p[F_ERR]));
    panel.appendChild(dl);

    payloadBlock(panel, 'Start event', eventOf(i, F_BEGIN_EV));
    payloadBlock(panel, 'Stop event', eventOf(i, F_END_EV));
    showTab('details');
    document.body.dataset.selected = idOf(i);
  }

  // ---- Header, legend, tables ------------------------------------------------------------------
  function fillHeader() {
    const title = text(D.title) || 'Trace';
    $('title').textContent = title;
    $('title').title = title;
    document.title = title;
    $('f-trace').textContent = text(D.trace) || '—';
    const abs = fmtAbs(0);
    $('f-start').textContent = abs ? abs.slice(0, 23) : '—';
    if (abs) $('f-start').title = abs + ' UTC';
    $('f-duration').textContent = fmtUs(Number(D.dur) || 0);
    $('f-points').textContent = n.toLocaleString('en-US');
    $('f-services').textContent = String(svcNames.filter((s) => s !== '').length);
    const eb = $('err-count');
    eb.textContent = errors.length === 0 ? '0' : errors.length + (errors.length === 1 ? ' error' : ' errors');
    eb.classList.toggle('has-errors', errors.length > 0);
    eb.disabled = errors.length === 0;
    $('next-error').disabled = errors.length === 0;
    $('errors-only').disabled = errors.length === 0;
    document.body.dataset.points = String(n);
    document.body.dataset.errors = String(errors.length);
  }

  function fillLegend(id, names, palette, round, none) {
    const box = $(id);
    names.forEach((name, k) => {
      const chip = el('span', 'chip');
      const sw = el('i', round ? 'swatch round' : 'swatch');
      sw.style.background = palette[k];
      chip.appendChild(sw);
      chip.appendChild(el('span', 'chip-name', name || none));
      chip.title = name || none;
      box.appendChild(chip);
    });
  }

  function fillTable(id, names, stats, palette, none) {
    const body = $(id).querySelector('tbody');
    const rows = names.map((name, k) => {
      const s = arr(stats[k]);
      return { name: name || none, colour: palette[k], count: Number(s[0]) || 0, total: Number(s[1]) || 0, self: Number(s[2]) || 0 };
    });
    rows.sort((a, b) => b.self - a.self || b.total - a.total);
    for (const r of rows) {
      const tr = el('tr');
      tr.dataset.count = String(r.count);
      const name = el('td', 'stat-name');
      const sw = el('i', 'swatch');
      sw.style.background = r.colour;
      name.appendChild(sw);
      name.appendChild(el('span', 'stat-label', r.name));
      name.title = r.name;
      tr.appendChild(name);
      tr.appendChild(el('td', 'num', r.count.toLocaleString('en-US')));
      tr.appendChild(el('td', 'num', fmtUs(r.total)));
      tr.appendChild(el('td', 'num', fmtUs(r.self)));
      const share = (r.self / total) * 100;
      const td = el('td', 'num');
      const wrap = el('span', 'share');
      const barEl = el('i');
      barEl.style.width = Math.max(1, Math.min(100, share) * 0.6) + 'px';
      barEl.style.setProperty('--c', r.colour);
      wrap.appendChild(barEl);
      wrap.appendChild(el('span', null, pct(share)));
      td.appendChild(wrap);
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  // ---- Start ------------------------------------------------------------------------------------
  fillHeader();
  fillLegend('legend-services', svcNames, svcColour, false, '(no service)');
  fillLegend('legend-categories', catNames, catColour, true, '(unnamed)');
  fillTable('by-service', svcNames, arr(D.sst), svcColour, '(no service)');
  fillTable('by-category', catNames, arr(D.cst), catColour, '(unnamed)');
  if (n === 0) canvas.appendChild(el('div', 'empty-trace', 'This trace has no points.'));
  else drawAxis();
  rebuild();
  updateCounts();
  paint(true);
  const T_DRAWN = performance.now();
  // performance.now() counts from navigation start: T_BEGIN is the time to read the file.
  document.body.dataset.scriptStartMs = T_BEGIN.toFixed(1);
  document.body.dataset.parseMs = (T_PARSED - T_BEGIN).toFixed(1);
  document.body.dataset.loadMs = (T_DRAWN - T_BEGIN).toFixed(1);

  // For scripts driving the page (tests, bookmarklets); names are ids, not markup.
  window.osprofilerReport = Object.freeze({
    select(id) {
      const i = idIndex.get(String(id));
      if (i !== undefined) select(i, true);
      return i !== undefined;
    },
    expandAll,
    collapseAll,
    toggle(id) {
      const i = idIndex.get(String(id));
      if (i !== undefined) setCollapsed(i, collapsed[i] ? 0 : 1);
    },
    filter(q) {
      filterInput.value = String(q);
      query = filterInput.value.trim().toLowerCase();
      applyFilter();
    },
    errorsOnly(on) {
      setToggle('errors-only', (errorsOnly = Boolean(on)));
      applyFilter();
    },
    criticalOnly(on) {
      setToggle('critical-only', (criticalOnly = Boolean(on)));
      applyFilter();
    },
    scrollToRow(pos) {
      scroller.scrollTop = Math.max(0, Number(pos) || 0) * ROW_H;
      paint(true);
    },
    state() {
      return {
        points: n,
        visible: vn,
        matches: matchCount,
        rows: canvas.querySelectorAll('.row').length,
        selected: selected >= 0 ? idOf(selected) : null,
      };
    },
  });
})();
