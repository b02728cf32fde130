"""``meshauthz reach --html`` and ``-o dot``: the reachability as a picture.

The page is one file that needs no network: the rows as JSON inside it, and
its own script, style and SVG (the layout is drawn here: namespaces on a
circle, their workloads on a smaller circle around each; with more than
``GROUP_ABOVE`` nodes the page starts grouped by namespace).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine (and z3) load only when reach runs
    from meshauthz.symbolic.reach import Reachability, Row

GROUP_ABOVE = 40  # nodes: above this the page opens grouped by namespace
COLOURS = {"all": "#2e7d32", "some": "#f9a825", "none": "#c62828", "unknown": "#757575"}


def row_detail(r: Row) -> dict[str, Any]:
    """A row as the page shows it: the JSON row, and the rules that decide it."""
    return {**r.to_json(), "deciding": [d.to_json() for d in r.deciding]}


def page(result: Reachability, title: str) -> str:
    data = {
        "title": title,
        "rows": [row_detail(r) for r in result.rows],
        "groupAbove": GROUP_ABOVE,
        "colours": COLOURS,
    }
    # "</" cannot end the script element the data sits in
    blob = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return _TEMPLATE.replace("/*DATA*/null", blob).replace("%%TITLE%%", _escape(title))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_lines(result: Reachability) -> Iterator[str]:
    """Graphviz: a cluster per namespace, one edge per caller, destination and
    port, coloured by verdict (dashed when none)."""
    yield "digraph reach {"
    yield "  rankdir=LR;"
    yield '  node [shape=box, style=rounded, fontname="sans-serif"];'
    nodes: dict[str, str | None] = {}
    for r in result.rows:
        c = r.caller
        nodes.setdefault(c.label, c.workload.split("/")[0] if c.workload else None)
        nodes.setdefault(r.destination.workload, r.destination.workload.split("/")[0])
    by_ns: dict[str | None, list[str]] = {}
    for n, ns in nodes.items():
        by_ns.setdefault(ns, []).append(n)
    for i, (ns, names) in enumerate(sorted(by_ns.items(), key=lambda kv: str(kv[0]))):
        if ns is None:
            for n in names:
                yield f"  {_dot_id(n)} [shape=ellipse];"
            continue
        yield f"  subgraph cluster_{i} {{"
        yield f"    label={_dot_id(ns)};"
        for n in names:
            short = n.split("/", 1)[1]
            label = f"gateway {short}" if n.startswith("gateway:") else short
            yield f"    {_dot_id(n)} [label={_dot_id(label)}];"
        yield "  }"
    for r in result.rows:
        d = r.destination
        style = ", style=dashed" if r.verdict == "none" else ""
        label = f"{d.port}" + (f" {d.protocol}" if d.protocol != "http" else "")
        yield (
            f"  {_dot_id(r.caller.label)} -> {_dot_id(d.workload)} "
            f'[color="{COLOURS[r.verdict]}", label={_dot_id(label + " " + r.verdict)}{style}];'
        )
    yield "}"


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%%TITLE%%</title>
<style>
body { font: 13px sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { padding: 6px 10px; background: #263238; color: #fff; display: flex; gap: 12px; align-items: center; }
#filter { width: 22em; }
main { flex: 1; display: flex; min-height: 0; }
#graph { flex: 1 1 50%; border-right: 1px solid #ccc; min-width: 0; }
#side { flex: 1 1 50%; display: flex; flex-direction: column; min-width: 0; }
#matrix-box { flex: 1; overflow: auto; }
#details { height: 38%; overflow: auto; border-top: 1px solid #ccc; padding: 6px 10px; background: #fafafa; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 2px 5px; white-space: nowrap; }
th.dest { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; }
td.cell { cursor: pointer; text-align: center; color: #fff; }
td.sel { outline: 3px solid #000; }
path.edge.sel { stroke-width: 5; opacity: 1; }
svg text { font-size: 11px; pointer-events: none; }
path.edge { fill: none; cursor: pointer; stroke-width: 2.5; opacity: .85; }
path.edge.none { stroke-dasharray: 4 3; opacity: .22; }
pre { white-space: pre-wrap; margin: 2px 0 8px; }
.legend span { padding: 1px 6px; color: #fff; margin-right: 4px; }
</style>
</head>
<body>
<header>
<strong>%%TITLE%%</strong>
<input id="filter" type="search" placeholder="filter: workload, namespace, port, verdict">
<label><input id="group" type="checkbox"> group by namespace</label>
<span class="legend" id="legend"></span>
</header>
<main>
<svg id="graph" viewBox="0 0 1000 1000" preserveAspectRatio="xMidYMid meet"></svg>
<div id="side">
<div id="matrix-box"><table id="matrix"></table></div>
<div id="details"><em>Click an edge or a cell to see its conditions, deciding policies and witnesses.</em></div>
</div>
</main>
<script id="reach-data" type="application/json">/*DATA*/null</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("reach-data").textContent);
const C = DATA.colours;
const SVGNS = "http://www.w3.org/2000/svg";
const nsOf = (n) => n.startsWith("gateway:") ? n.slice(8).split("/")[0] : (n.includes("/") && !n.includes("=") ? n.split("/")[0] : "(outside the mesh)");
const dest = (r) => r.to + ":" + r.port + (r.protocol === "http" ? "" : " (" + r.protocol + ")");
const order = { all: 0, some: 1, none: 2, unknown: 3 };
function combine(vs) {
  const s = new Set(vs);
  if (s.size === 1) return vs[0];
  if (s.has("unknown")) return "unknown";
  return "some";
}
function el(tag, attrs, parent, ns) {
  const e = ns ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
const legend = document.getElementById("legend");
for (const v of ["all", "some", "none", "unknown"]) {
  const s = el("span", {}, legend); s.style.background = C[v]; s.textContent = v;
}
const allNodes = [...new Set(DATA.rows.flatMap((r) => [r.from, r.to]))];
const groupBox = document.getElementById("group");
groupBox.checked = allNodes.length > DATA.groupAbove;
const filterBox = document.getElementById("filter");

function visibleRows() {
  const q = filterBox.value.trim().toLowerCase();
  if (!q) return DATA.rows;
  return DATA.rows.filter((r) => [r.from, dest(r), r.verdict].some((t) => t.toLowerCase().includes(q)));
}

function showDetails(rows, title) {
  const box = document.getElementById("details");
  box.innerHTML = "";
  el("h3", {}, box).textContent = title;
  for (const r of rows) {
    const sec = el("div", { class: "row-detail", "data-from": r.from, "data-to": r.to, "data-port": String(r.port) }, box);
    el("h4", {}, sec).textContent = r.from + " \u2192 " + dest(r) + ": " + r.verdict;
    if (r.conditions) {
      const p = el("p", { class: "conditions" }, sec);
      p.textContent = (r.verdict === "unknown" ? "reason: " : "allowed when: ") + r.conditions;
    }
    const ul = el("ul", { class: "deciding" }, sec);
    for (const d of r.deciding) {
      const who = d.policy ? d.policy + " rule " + d.rule : "no policy";
      const where = d.file ? " at " + d.file + ":" + d.line : "";
      el("li", {}, ul).textContent = d.decision + " by " + who + " (" + d.stage + ")" + where;
    }
    for (const [k, label] of [["allowedWitness", "allowed witness"], ["allowedWitnessOnward", "sent on by the gateway"], ["deniedWitness", "denied witness"], ["deniedWitnessOnward", "sent on by the gateway"]]) {
      if (r[k]) {
        el("div", {}, sec).textContent = label + ":";
        el("pre", { class: k }, sec).textContent = JSON.stringify(r[k], null, 1);
      }
    }
  }
}

function select(elem, rows, title) {
  for (const s of document.querySelectorAll(".sel")) s.classList.remove("sel");
  if (elem) elem.classList.add("sel");
  showDetails(rows, title);
}

function drawGraph(rows) {
  const svg = document.getElementById("graph");
  svg.innerHTML = "";
  const defs = el("defs", {}, svg, true);
  for (const v of Object.keys(C)) {
    const m = el("marker", { id: "arrow-" + v, viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "12", markerHeight: "12", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, defs, true);
    el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: C[v] }, m, true);
  }
  const grouped = groupBox.checked;
  const key = (n) => grouped ? nsOf(n) : n;
  const edges = new Map();
  for (const r of rows) {
    const k = key(r.from) + "\u0000" + key(r.to);
    if (!edges.has(k)) edges.set(k, { from: key(r.from), to: key(r.to), rows: [] });
    edges.get(k).rows.push(r);
  }
  const names = [...new Set(rows.flatMap((r) => [key(r.from), key(r.to)]))].sort();
  const byNs = new Map();
  for (const n of names) {
    const ns = grouped ? n : nsOf(n);
    if (!byNs.has(ns)) byNs.set(ns, []);
    byNs.get(ns).push(n);
  }
  const pos = new Map();
  const nss = [...byNs.keys()];
  const radius = (k) => (k > 1 ? Math.min(340, 50 + 24 * k) : 0);
  // the namespaces on a ring long enough for each one's circle
  const widest = Math.max(...nss.map((ns) => radius(byNs.get(ns).length)));
  const R = nss.length > 1 ? (2 * widest + 120) / (2 * Math.sin(Math.PI / nss.length)) : 0;
  nss.forEach((ns, i) => {
    const a = (2 * Math.PI * i) / nss.length - Math.PI / 2;
    const cx = 500 + R * Math.cos(a), cy = 500 + R * Math.sin(a);
    const members = byNs.get(ns);
    const r = radius(members.length);
    if (!grouped && nss.length > 1) {
      el("circle", { cx, cy, r: r + 34, fill: "#eceff1", stroke: "#cfd8dc", class: "namespace" }, svg, true);
      const t = el("text", { x: cx, y: cy - r - 38, "text-anchor": "middle", "font-weight": "bold" }, svg, true);
      t.textContent = ns;
    }
    members.forEach((n, j) => {
      const b = (2 * Math.PI * j) / members.length - Math.PI / 2;
      pos.set(n, [cx + r * Math.cos(b), cy + r * Math.sin(b)]);
    });
  });
  const sorted = [...edges.values()].sort((a, b) => order[combine(b.rows.map((r) => r.verdict))] - order[combine(a.rows.map((r) => r.verdict))]);
  for (const e of sorted) {
    const v = combine(e.rows.map((r) => r.verdict));
    const [x1, y1] = pos.get(e.from), [x2, y2] = pos.get(e.to);
    let d;
    if (e.from === e.to) {
      d = `M ${x1 - 6} ${y1 - 10} C ${x1 - 40} ${y1 - 60}, ${x1 + 40} ${y1 - 60}, ${x1 + 6} ${y1 - 10}`;
    } else {
      const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
      const ex = x2 - (dx / len) * 14, ey = y2 - (dy / len) * 14;
      const mx = (x1 + ex) / 2 - (dy / len) * 25, my = (y1 + ey) / 2 + (dx / len) * 25;
      d = `M ${x1} ${y1} Q ${mx} ${my} ${ex} ${ey}`;
    }
    const p = el("path", { d, class: "edge " + v, stroke: C[v], "marker-end": `url(#arrow-${v})`, "data-from": e.from, "data-to": e.to, "data-verdict": v }, svg, true);
    el("title", {}, p, true).textContent = e.from + " \u2192 " + e.to + ": " + v;
    p.addEventListener("click", () => select(p, e.rows, e.from + " \u2192 " + e.to));
  }
  // fit the picture to what is drawn
  const xs = [...pos.values()].map((p) => p[0]), ys = [...pos.values()].map((p) => p[1]);
  if (xs.length) {
    const pad = 90;
    const x0 = Math.min(...xs) - pad, y0 = Math.min(...ys) - pad;
    const w = Math.max(Math.max(...xs) - x0 + pad, 300), h = Math.max(Math.max(...ys) - y0 + pad, 300);
    svg.setAttribute("viewBox", `${x0} ${y0} ${w} ${h}`);
  }
  for (const [n, [x, y]] of pos) {
    const g = el("g", { class: "node", "data-name": n }, svg, true);
    el("circle", { cx: x, cy: y, r: 9, fill: n === "plaintext" || nsOf(n) === "(outside the mesh)" ? "#fff" : "#90a4ae", stroke: "#37474f" }, g, true);
    const t = el("text", { x, y: y + 22, "text-anchor": "middle" }, g, true);
    t.textContent = grouped || !n.includes("/") ? n : n.slice(n.indexOf("/") + 1);
  }
}

function drawMatrix(rows) {
  const table = document.getElementById("matrix");
  table.innerHTML = "";
  const callers = [...new Set(rows.map((r) => r.from))];
  const dests = [...new Map(rows.map((r) => [dest(r), r])).keys()];
  const head = el("tr", {}, el("thead", {}, table));
  el("th", {}, head).textContent = "from \\ to";
  for (const d of dests) el("th", { class: "dest" }, head).textContent = d;
  const body = el("tbody", {}, table);
  const cells = new Map(rows.map((r) => [r.from + "\u0000" + dest(r), r]));
  for (const c of callers) {
    const tr = el("tr", {}, body);
    el("th", {}, tr).textContent = c;
    for (const d of dests) {
      const r = cells.get(c + "\u0000" + d);
      if (!r) { el("td", {}, tr); continue; }
      const td = el("td", { class: "cell", "data-from": r.from, "data-to": r.to, "data-port": String(r.port), "data-protocol": r.protocol, "data-verdict": r.verdict }, tr);
      td.style.background = C[r.verdict];
      td.textContent = r.verdict;
      td.addEventListener("click", () => select(td, [r], r.from + " \u2192 " + dest(r)));
    }
  }
}

function render() {
  const rows = visibleRows();
  drawGraph(rows);
  drawMatrix(rows);
}
filterBox.addEventListener("input", render);
groupBox.addEventListener("change", render);
render();
</script>
</body>
</html>
"""

__all__ = ["COLOURS", "GROUP_ABOVE", "dot_lines", "page", "row_detail"]
