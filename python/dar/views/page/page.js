// One renderer for `dar report` (data embedded below) and `dar ui` (data from its JSON API).
// Everything shown comes from the log and is attacker-controlled: it only ever reaches the
// page through textContent and attribute setters, never as HTML.
"use strict";
(function () {
  const mode = document.body.dataset.mode;
  const $ = (id) => document.getElementById(id);
  const LIVE_MS = 2000;
  let current = null; // what the ui shows: {kind, id, version}

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function json(value) { return JSON.stringify(value, null, 2); }
  function ms(value) { return value === null || value === undefined ? "" : value.toFixed(1) + " ms"; }
  function walk(calls, out) {
    for (const c of calls) { out.push(c); walk(c.children, out); }
    return out;
  }
  function show(id) {
    for (const s of ["sessions", "session", "diff"]) $(s).hidden = s !== id;
    $("error").hidden = true;
  }
  function fail(message) { $("error").hidden = false; $("error").textContent = message; }

  // --- a session ---------------------------------------------------------------------------
  function badge(name, note) {
    const b = el("span", "badge " + name, name);
    if (note) b.title = note;
    return b;
  }
  function summary(view) {
    const box = $("summary");
    box.replaceChildren();
    box.append(el("span", "sid", view.session_id));
    const chain = el("span", "chain " + (view.chain.ok ? "ok" : "broken"),
      view.chain.ok ? "chain verified" : "chain BROKEN");
    chain.id = "chain";
    box.append(chain);
    for (const b of view.chain.broken) {
      box.append(el("span", "muted", "seq " + b.seq + ": " + b.reason));
    }
    box.append(el("span", "muted", view.events + " events, " + walk(view.calls, []).length +
      " calls, " + ms(view.span_ms)));
    for (const [status, n] of Object.entries(view.counts)) {
      const s = el("span", "status " + status, n + " " + status);
      box.append(s);
    }
  }
  function callRow(call, span) {
    const row = el("div", "call");
    row.dataset.status = call.status;
    row.dataset.callId = call.call_id;
    row.dataset.text = (call.tool + " " + call.status + " " + JSON.stringify(call.input) + " " +
      (call.reason || "") + " " + (call.error || "")).toLowerCase();
    const name = call.label;
    const tool = el("span", "tool", name);
    tool.style.paddingLeft = (call.depth * 1.2) + "em";
    tool.title = call.tool;
    const st = el("span", "");
    st.append(el("span", "status " + call.status, call.status), " ", badge(call.badge));
    const bar = el("span", "bar");
    const fill = el("span", "");
    const width = span > 0 ? (call.duration_ms || 0) / span * 100 : 0;
    fill.style.left = (span > 0 ? call.offset_ms / span * 100 : 0).toFixed(3) + "%";
    fill.style.width = Math.max(width, 0.2).toFixed(3) + "%";
    bar.title = "starts at +" + ms(call.offset_ms) + ", runs " + ms(call.duration_ms);
    bar.append(fill);
    row.append(tool, st, el("span", "dur", ms(call.duration_ms)), bar);
    const why = call.reason ? (call.rule ? "[" + call.rule + "] " : "") + call.reason : call.error;
    const bad = ["rejected", "denied", "failed", "indeterminate", "cancelled", "conflict"];
    if (why) row.append(el("span", bad.includes(call.status) ? "why bad" : "why", why));
    return row;
  }
  function field(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", "", name), el("dd", "", value));
  }
  function detail(call) {
    const pane = $("detail");
    pane.replaceChildren();
    const head = el("h2", "", call.tool + " ");
    head.append(el("span", "status " + call.status, call.status), " ", badge(call.badge));
    pane.append(head);
    const dl = el("dl");
    field(dl, "call", call.call_id);
    field(dl, "effect", call.effect);
    field(dl, "started", call.started_at);
    field(dl, "duration", ms(call.duration_ms));
    field(dl, "key", call.key);
    field(dl, "attempts", call.attempts || null);
    field(dl, "rule", call.rule);
    field(dl, "reason", call.reason);
    field(dl, "error", call.error);
    pane.append(dl);
    pane.append(el("h3", "", "input"), el("pre", "input", json(call.input)));
    const tree = call.output && Array.isArray(call.output.tree) ? call.output.tree : null;
    if (tree) pane.append(el("h3", "", "search tree"), searchTree(tree));
    else if (call.output !== null) pane.append(el("h3", "", "output"), el("pre", "output", json(call.output)));
    if (call.origin) {
      pane.append(el("h3", "", "answered from the executed row"));
      const o = el("dl", "origin");
      field(o, "seq", call.origin.seq);
      field(o, "session", call.origin.session_id);
      field(o, "call", call.origin.call_id);
      field(o, "at", call.origin.at);
      pane.append(o, el("pre", "", json(call.origin.output)));
    }
    pane.append(el("h3", "", "rows"));
    const table = el("table", "rows");
    table.append(headRow(["seq", "status", "time (UTC)", "chain", "reason / error"]));
    for (const r of call.rows) {
      const tr = el("tr");
      tr.dataset.seq = r.seq;
      const chain = el("td");
      chain.append(badge(r.badge, r.note));
      const why = r.reason ? (r.rule ? "[" + r.rule + "] " : "") + r.reason : (r.error || r.note || "");
      tr.append(el("td", "n", r.seq), tdStatus(r.status), el("td", "", r.at.slice(11, 23)), chain,
        el("td", "", why));
      table.append(tr);
    }
    pane.append(table);
  }
  // A search (`rt.speculate`): its tree, each node with its visits and scores, the chosen
  // path highlighted. Nodes come parent first; each list holds one node's children.
  function searchTree(nodes) {
    const lists = new Map();
    const top = el("ol", "search-tree");
    top.id = "search-tree";
    for (const n of nodes) {
      const list = n.parent === null ? top : lists.get(n.parent);
      if (!list) continue;
      const item = el("li", n.chosen ? "node chosen" : "node");
      item.dataset.status = n.status;
      const line = el("div", "node-line");
      if (n.call) {
        line.append(el("span", "tool", n.call.tool), " ",
          el("code", "args", JSON.stringify(n.call.arguments)), " ",
          el("span", "status " + n.status, n.status));
      } else {
        line.append(el("span", "tool", "start"));
      }
      line.append(el("span", "figures", "visits " + n.visits + " · mean " +
        Number(n.mean).toFixed(3) + " · best " + Number(n.best).toFixed(3)));
      item.append(line);
      if (n.shown !== null && n.shown !== undefined) {
        item.append(el("div", "shown", typeof n.shown === "string" ? n.shown : JSON.stringify(n.shown)));
      }
      const kids = el("ol", "");
      lists.set(n.index, kids);
      item.append(kids);
      list.append(item);
    }
    return top;
  }
  function tdStatus(status) {
    const td = el("td");
    td.append(el("span", "status " + status, status));
    return td;
  }
  function headRow(names) {
    const tr = el("tr");
    for (const n of names) tr.append(el("th", "", n));
    return tr;
  }
  function renderSession(view) {
    show("session");
    $("where").textContent = "session " + view.session_id;
    summary(view);
    const calls = walk(view.calls, []);
    const box = $("calls");
    const selected = box.querySelector(".call.selected");
    const keep = selected ? selected.dataset.callId : null;
    const frag = document.createDocumentFragment();
    for (const call of calls) {
      const row = callRow(call, view.span_ms);
      row.addEventListener("click", () => {
        for (const s of box.querySelectorAll(".call.selected")) s.classList.remove("selected");
        row.classList.add("selected");
        detail(call);
      });
      if (call.call_id === keep) { row.classList.add("selected"); detail(call); }
      frag.append(row);
    }
    box.replaceChildren(frag);
    filterCalls();
  }
  function filterCalls() {
    const words = $("call-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of $("calls").children) {
      row.hidden = !words.every((w) => row.dataset.text.includes(w));
    }
  }
  $("call-filter").addEventListener("input", filterCalls);

  // --- the live ui ---------------------------------------------------------------------------
  async function api(path) {
    const answer = await fetch(path, { headers: { Accept: "application/json" } });
    if (!answer.ok) throw new Error((await answer.json()).error || answer.statusText);
    return answer.json();
  }
  function cell(tr, text, cls) { tr.append(el("td", cls || "", text)); }
  async function renderSessions() {
    const params = new URLSearchParams();
    for (const input of $("session-filter").elements) {
      if (input.name && input.value) params.set(input.name, input.value);
    }
    const found = await api("/api/sessions?" + params);
    show("sessions");
    $("where").textContent = found.sessions.length + " sessions, newest first";
    const body = $("session-list").tBodies[0];
    const frag = document.createDocumentFragment();
    for (const s of found.sessions) {
      const tr = el("tr", "session-row");
      tr.dataset.session = s.session_id;
      cell(tr, s.session_id);
      cell(tr, (s.last_at || "").slice(0, 19).replace("T", " "));
      cell(tr, s.events, "n");
      for (const n of [s.refused, s.failed, s.indeterminate]) cell(tr, n, "n" + (n ? " hot" : ""));
      const pick = el("td");
      const box = el("input");
      box.type = "checkbox";
      box.title = "compare: pick two";
      box.addEventListener("click", (e) => { e.stopPropagation(); pickForDiff(s.session_id, box.checked); });
      pick.append(box);
      tr.append(pick);
      tr.addEventListener("click", () => { location.hash = "#/s/" + encodeURIComponent(s.session_id); });
      frag.append(tr);
    }
    body.replaceChildren(frag);
    return found.version;
  }
  function pickForDiff(id, on) {
    const form = $("diff-form");
    if (!on) return;
    if (!form.elements.a.value || form.elements.b.value) { form.elements.a.value = id; form.elements.b.value = ""; }
    else form.elements.b.value = id;
  }
  function diffSide(tr, side) {
    const td = el("td");
    if (!side) { td.append(el("span", "muted", "—")); tr.append(td); return; }
    td.append(el("b", "", side.tool), " ", el("span", "status " + side.status, side.status));
    td.append(el("pre", "", JSON.stringify(side.input)));
    if (side.reason || side.error) td.append(el("div", "why", side.reason || side.error));
    tr.append(td);
  }
  async function renderDiff(a, b) {
    const found = await api("/api/diff?" + new URLSearchParams({ a, b }));
    show("diff");
    $("where").textContent = "diff  A = " + a + "   B = " + b;
    const counts = Object.entries(found.counts).filter(([, n]) => n).map(([k, n]) => n + " " + k);
    $("diff-summary").textContent = counts.join(", ");
    const body = $("diff-table").tBodies[0];
    body.replaceChildren();
    found.pairs.forEach((p, i) => {
      const kind = p.kind === "same" ? "same" : p.kind.startsWith("only") ? "only" : "diff";
      const tr = el("tr", "kind-" + kind);
      tr.dataset.kind = p.kind;
      cell(tr, i + 1, "n");
      cell(tr, p.kind, "kind");
      diffSide(tr, p.a);
      diffSide(tr, p.b);
      body.append(tr);
    });
  }
  async function route() {
    const hash = location.hash.slice(1);
    const parts = hash.split("/").map(decodeURIComponent);
    try {
      if (parts[1] === "s" && parts[2]) {
        const view = await api("/api/sessions/" + encodeURIComponent(parts[2]));
        current = { kind: "session", id: parts[2], version: view.version };
        renderSession(view);
      } else if (parts[1] === "diff" && parts[2] && parts[3]) {
        current = { kind: "diff" };
        await renderDiff(parts[2], parts[3]);
      } else {
        current = { kind: "list", version: await renderSessions() };
      }
    } catch (err) { fail(String(err.message || err)); }
  }
  // Live: one small request every LIVE_MS; a view is rebuilt only when the log grew.
  async function poll() {
    try {
      if (current && current.kind !== "diff") {
        const head = await api("/api/head" + (current.kind === "session" ? "?session=" + encodeURIComponent(current.id) : ""));
        if (head.version !== current.version) await route();
      }
    } catch (err) { /* the next poll tries again */ }
    setTimeout(poll, LIVE_MS);
  }
  function startUi() {
    $("nav").hidden = false;
    $("session-filter").addEventListener("submit", (e) => { e.preventDefault(); renderSessions(); });
    $("diff-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements;
      location.hash = "#/diff/" + encodeURIComponent(f.a.value) + "/" + encodeURIComponent(f.b.value);
    });
    window.addEventListener("hashchange", route);
    route().then(() => setTimeout(poll, LIVE_MS));
  }

  if (mode === "report") renderSession(JSON.parse($("dar-data").textContent));
  else startUi();
})();
