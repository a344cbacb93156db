"""Attention on your own sentence: the weights of every site, layer and head for one input, and one
self-contained HTML page that shows them (no network access when it is opened, no server).

    view = attention_on_text(model, datamodule, "ein Hund läuft")   # the tensors (and bertviz's format: as_bertviz)
    write_page(view, Path("attention.html"))                        # src.predict ... attention=attention.html

The page has two views, after bertviz's (Vig 2019):
- head view: the tokens of both sides of one site, with a line from each query to each key whose opacity is the
  attention weight, one colour per head; choose the layer and the heads, hover a token to see only its lines;
- model view: every layer x head of a site as a small map; click one to enlarge it.
Heads switched off (`ablate=...`) are marked, and each head shows its importance when the run has an analysis.
bertviz's own pages load their JavaScript from a CDN and are blank offline; this one carries its script.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

# Which side's tokens are the queries and which the keys, per attention site.
SITE_SIDES = {"encoder_self": ("src", "src"), "decoder_self": ("tgt", "tgt"), "cross": ("tgt", "src")}
SITE_TITLES = {
    "encoder_self": "encoder self-attention",
    "decoder_self": "decoder self-attention",
    "cross": "cross-attention",
}


@dataclass
class AttentionOnText:
    """One input's attention. tokens: side ("src", "tgt") -> its token strings; attentions: site -> per layer a
    (H, Tq, Tk) tensor of weights (rows sum to 1 over the keys a query may see); importance: site -> (L, H) head
    importance from the run's analysis, or None; ablated: site -> (L, H) True where a head is switched off."""

    tokens: dict[str, list[str]]
    attentions: dict[str, list[Tensor]]
    importance: dict[str, list[list[float]]] | None = None
    ablated: dict[str, list[list[bool]]] = field(default_factory=dict)
    title: str = ""
    start_site: str | None = None  # the site the page opens on (None: the first)

    def as_bertviz(self) -> dict:
        """The keyword arguments of bertviz's head_view / model_view: per layer (1, H, Tq, Tk) tensors and the token
        lists (encoder-decoder: encoder_/decoder_/cross_attention with encoder_ and decoder_tokens). CircuitsVis's
        attention views take one layer's (H, T, T) and one token list: view.attentions[site][layer] and tokens."""
        layers = {site: tuple(w.unsqueeze(0) for w in per_layer) for site, per_layer in self.attentions.items()}
        if "cross" in layers:
            return {
                "encoder_attention": layers["encoder_self"],
                "decoder_attention": layers["decoder_self"],
                "cross_attention": layers["cross"],
                "encoder_tokens": self.tokens["src"],
                "decoder_tokens": self.tokens["tgt"],
            }
        (site, attention), *_ = layers.items()
        return {"attention": attention, "tokens": self.tokens[SITE_SIDES[site][0]]}


def attention_on_text(
    model, datamodule, text: str, target: str | None = None, max_tokens: int = 200, max_new_tokens: int = 100
) -> tuple[AttentionOnText, list[str]]:
    """The attention of `model` on one input, read as src.predict reads it (datamodule.encode_input), and the lines
    to warn with (a side cut to `max_tokens`). Encoder-decoder: the decoder side is `target` if given, else the
    model's own greedy output; decoder-only: the input; encoder-only: the input."""
    from src.model import generate
    from src.model.head_mask import attention_sites
    from src.training.inference import eval_mode

    warnings: list[str] = []

    def cut(ids: list[int], side: str) -> list[int]:
        if len(ids) > max_tokens:
            warnings.append(f"the {side} has {len(ids)} tokens: the page shows the first {max_tokens}")
            return ids[:max_tokens]
        return ids

    cfg, device = model.cfg, next(model.parameters()).device
    ids, _ = datamodule.encode_input(text)
    with eval_mode(model):
        if datamodule.kind == "seq2seq":
            src = torch.tensor([cut(ids, "input")], device=device)
            if target is not None:
                out = datamodule.encode_tgt(target)
            else:
                generated = generate(model, src=src, max_new_tokens=max_new_tokens)[0].tolist()
                out = generated[: generated.index(cfg.eos_id)] if cfg.eos_id in generated else generated
            if len(out) > cfg.max_len - 1:  # with the start token, at most the model's positions
                warnings.append(f"the output has {len(out)} tokens: the model reads {cfg.max_len - 1} after its start")
                out = out[: cfg.max_len - 1]
            tgt = torch.tensor([[cfg.bos_id, *cut(out, "output")]], device=device)
            output = model(src, tgt, need_weights=True)
            tokens = {
                "src": datamodule.src_token_strings(src[0].tolist()),
                "tgt": datamodule.tgt_token_strings(tgt[0].tolist()),
            }
        elif datamodule.kind == "lm":
            tgt = torch.tensor([cut(ids, "input") or [cfg.bos_id]], device=device)
            output = model(tgt, need_weights=True)
            tokens = {"tgt": datamodule.tgt_token_strings(tgt[0].tolist())}
        else:
            src = torch.tensor([cut(ids, "input")], device=device)
            output = model(src, need_weights=True)
            tokens = {"src": datamodule.src_token_strings(src[0].tolist())}
    attentions = {site: [w[0].float().cpu() for w in per_layer] for site, per_layer in output.attentions.items()}
    ablated = {
        site: [
            [False] * m.heads if m.head_gate is None or m.head_gate.dim() != 1 else (m.head_gate == 0).tolist()
            for m in modules
        ]
        for site, modules in attention_sites(model).items()
    }
    return AttentionOnText(tokens, attentions, ablated=ablated, title=text), warnings


def read_importance(analysis_dir: Path) -> dict[str, list[list[float]]] | None:
    """Head importance (normalised per layer) from a run's analysis/heads.csv (src.analyze), site -> (L, H)."""
    import csv

    path = analysis_dir / "heads.csv"
    if not path.is_file():
        return None
    table: dict[str, dict[tuple[int, int], float]] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            table.setdefault(row["site"], {})[(int(row["layer"]), int(row["head"]))] = float(
                row["importance_normalised"]
            )
    importance = {}
    for site, values in table.items():
        layers, heads = max(k[0] for k in values) + 1, max(k[1] for k in values) + 1
        importance[site] = [[values.get((layer, head), 0.0) for head in range(heads)] for layer in range(layers)]
    return importance


def page_data(view: AttentionOnText) -> dict:
    """What the page's script reads: plain lists, weights rounded to 4 decimals (the page is text)."""
    sites = {}
    for site, per_layer in view.attentions.items():
        query_side, key_side = SITE_SIDES[site]
        layers = len(per_layer)
        heads = per_layer[0].size(0) if layers else 0
        sites[site] = {
            "title": SITE_TITLES[site],
            "queries": query_side,
            "keys": key_side,
            "weights": [torch.round(w.double(), decimals=4).tolist() for w in per_layer],  # (L, H, Tq, Tk)
            "importance": (view.importance or {}).get(site),
            "ablated": view.ablated.get(site, [[False] * heads for _ in range(layers)]),
        }
    return {"title": view.title, "tokens": view.tokens, "sites": sites, "start": view.start_site}


def render_page(view: AttentionOnText) -> str:
    """The whole page as one string: its data as JSON, its style and its script inline."""
    # Every "<" escaped: inside a <script> block, "</script>" would end it and "<!--" with "<script" would swallow
    # the blocks after it; JSON reads \u003c back as "<".
    data = json.dumps(page_data(view), ensure_ascii=False).replace("<", "\\u003c")
    return (
        PAGE.replace("{{TITLE}}", html.escape(view.title or "attention"))
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", data)
    )


def write_page(view: AttentionOnText, path: Path) -> None:
    """Write the page whole or not at all (a partial file beside it, then renamed); never over an existing file
    (the caller checks that first, so that nothing is computed for a page that cannot be written)."""
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(render_page(view), encoding="utf-8")
    partial.replace(path)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>{{STYLE}}</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="controls">
    <label>site <select id="site"></select></label>
    <label>layer <select id="layer"></select></label>
    <button id="all-heads" type="button">all heads</button>
    <button id="theme" type="button">dark / light</button>
  </div>
  <div id="heads" class="heads"></div>
</header>
<main>
  <section>
    <h2>head view</h2>
    <p class="hint">Hover a token to see only its attention; choose heads above.</p>
    <svg id="head-view" role="img"></svg>
  </section>
  <section>
    <h2>model view</h2>
    <p class="hint">Every layer (rows) and head (columns) of the site; click a map to enlarge it.</p>
    <div id="model-view" class="grid"></div>
    <div id="enlarged"></div>
  </section>
</main>
<script id="data" type="application/json">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"""

STYLE = """
:root { --bg: #ffffff; --fg: #1d1d1f; --muted: #6e6e73; --line: #d2d2d7; --cell: #f5f5f7; }
:root.dark { --bg: #161618; --fg: #f5f5f7; --muted: #a1a1a6; --line: #3a3a3c; --cell: #232326; }
@media (prefers-color-scheme: dark) { :root:not(.light) { --bg: #161618; --fg: #f5f5f7; --muted: #a1a1a6;
  --line: #3a3a3c; --cell: #232326; } }
body { background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; margin: 16px; }
h1 { font-size: 18px; margin: 0 0 8px; } h2 { font-size: 15px; margin: 16px 0 4px; }
.hint { color: var(--muted); margin: 0 0 8px; }
.controls { display: flex; gap: 12px; flex-wrap: wrap; align-items: center; }
select, button { background: var(--cell); color: var(--fg); border: 1px solid var(--line); border-radius: 4px;
  padding: 2px 6px; font: inherit; }
.heads { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 8px; }
.head { display: inline-flex; align-items: center; gap: 4px; border: 1px solid var(--line); border-radius: 4px;
  padding: 1px 6px; cursor: pointer; user-select: none; }
.head .swatch { width: 10px; height: 10px; border-radius: 2px; }
.head.off { opacity: 0.35; }
.head.ablated, .cell.ablated { text-decoration: line-through; outline: 2px dashed #d70015; }
svg text { fill: var(--fg); font-size: 12px; dominant-baseline: middle; cursor: default; }
svg text.active { font-weight: bold; }
.grid { display: grid; gap: 4px; align-items: start; }
.cell { background: var(--cell); border: 1px solid var(--line); cursor: pointer; padding: 2px; }
.cell canvas { display: block; image-rendering: pixelated; }
.cell .label { font-size: 10px; color: var(--muted); }
#enlarged canvas { border: 1px solid var(--line); margin-top: 8px; }
"""

# Plain JavaScript, no framework: read the data, draw the two views, redraw on every choice.
SCRIPT = r"""
const data = JSON.parse(document.getElementById("data").textContent);
// Layers and heads are numbered from 0, as ablate.heads=[site:layer:head] and the `ablated:` line number them.
const palette = ["#0071e3", "#d70015", "#248a3d", "#bf5af2", "#ff9f0a", "#30b0c7", "#a2845e", "#ff375f",
                 "#5e5ce6", "#64d2ff", "#32d74b", "#ffd60a", "#ac8e68", "#8e8e93", "#1d6f42", "#c93400"];
const state = { site: data.start || Object.keys(data.sites)[0], layer: 0, heads: null, hover: null };
const $ = (id) => document.getElementById(id);
const svgNS = "http://www.w3.org/2000/svg";

function site() { return data.sites[state.site]; }
function headCount() { const w = site().weights; return w.length ? w[0].length : 0; }
function label(h) {
  const s = site(), imp = s.importance ? s.importance[state.layer][h] : null;
  return "head " + h + (imp === null || imp === undefined ? "" : " (" + imp.toFixed(2) + ")");
}

function setup() {
  $("title").textContent = data.title || "attention";
  for (const [name, s] of Object.entries(data.sites)) $("site").add(new Option(s.title, name));
  $("site").value = state.site;
  $("site").onchange = () => { state.site = $("site").value; state.layer = 0; state.heads = null; draw(); };
  $("layer").onchange = () => { state.layer = Number($("layer").value); draw(); };
  $("all-heads").onclick = () => { state.heads = null; draw(); };
  $("theme").onclick = () => {
    const root = document.documentElement;
    const dark = root.classList.contains("dark") ||
      (!root.classList.contains("light") && matchMedia("(prefers-color-scheme: dark)").matches);
    root.classList.toggle("dark", !dark); root.classList.toggle("light", dark); draw();
  };
  draw();
  // When the first draw ended, in ms since the page began loading (the browser tests read it).
  document.documentElement.dataset.firstDraw = performance.now().toFixed(1);
}

function draw() {
  const s = site(), heads = headCount();
  if (state.heads === null) state.heads = new Set([...Array(heads).keys()]);
  const layerSelect = $("layer");
  layerSelect.innerHTML = "";
  s.weights.forEach((_, l) => layerSelect.add(new Option("layer " + l, l)));
  layerSelect.value = state.layer;
  drawHeadButtons(); drawHeadView(); drawModelView();
}

function drawHeadButtons() {
  const box = $("heads"), s = site();
  box.innerHTML = "";
  for (let h = 0; h < headCount(); h++) {
    const button = document.createElement("span");
    button.className = "head" + (state.heads.has(h) ? "" : " off") + (s.ablated[state.layer][h] ? " ablated" : "");
    button.dataset.head = h;
    button.title = s.ablated[state.layer][h] ? "switched off (ablate)" : "";
    button.innerHTML = '<span class="swatch" style="background:' + palette[h % palette.length] + '"></span>';
    button.appendChild(document.createTextNode(label(h)));
    button.onclick = () => { state.heads.has(h) ? state.heads.delete(h) : state.heads.add(h); draw(); };
    box.appendChild(button);
  }
}

function drawHeadView() {
  const s = site(), svg = $("head-view");
  const queries = data.tokens[s.queries], keys = data.tokens[s.keys];
  const rowH = 18, textW = 140, gap = 180, top = 10;
  const height = top * 2 + rowH * Math.max(queries.length, keys.length);
  svg.setAttribute("width", textW * 2 + gap); svg.setAttribute("height", height);
  svg.innerHTML = "";
  const y = (i) => top + rowH * i + rowH / 2;
  const weights = s.weights[state.layer];
  for (const h of state.heads) {
    for (let q = 0; q < queries.length; q++) {
      for (let k = 0; k < keys.length; k++) {
        const w = weights[h][q][k];
        if (w < 0.01) continue;
        const hidden = state.hover && ((state.hover.side === "q" && state.hover.i !== q) ||
                                       (state.hover.side === "k" && state.hover.i !== k));
        if (hidden) continue;
        const line = document.createElementNS(svgNS, "line");
        line.setAttribute("x1", textW); line.setAttribute("y1", y(q));
        line.setAttribute("x2", textW + gap); line.setAttribute("y2", y(k));
        line.setAttribute("stroke", palette[h % palette.length]);
        line.setAttribute("stroke-width", 2); line.setAttribute("stroke-opacity", w);
        line.classList.add("attention"); line.dataset.head = h; line.dataset.query = q; line.dataset.key = k;
        svg.appendChild(line);
      }
    }
  }
  const tokenText = (tokens, side, x, anchor) => tokens.forEach((t, i) => {
    const text = document.createElementNS(svgNS, "text");
    text.setAttribute("x", x); text.setAttribute("y", y(i)); text.setAttribute("text-anchor", anchor);
    text.textContent = t; text.classList.add(side === "q" ? "query" : "key");
    if (state.hover && state.hover.side === side && state.hover.i === i) text.classList.add("active");
    text.onmouseenter = () => { state.hover = { side, i }; drawHeadView(); };
    text.onmouseleave = () => { state.hover = null; drawHeadView(); };
    svg.appendChild(text);
  });
  tokenText(queries, "q", textW - 6, "end");
  tokenText(keys, "k", textW + gap + 6, "start");
}

function heatMap(canvas, matrix, scale, colour) {
  // Rows are queries, columns keys; the darkest cell is the map's largest weight (each map its own scale, so a
  // head that spreads its attention thinly still shows its pattern; the enlarged map's title gives the maximum).
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const top = Math.max(1e-9, ...matrix.map((row) => Math.max(...row)));
  canvas.width = Math.max(1, cols * scale); canvas.height = Math.max(1, rows * scale);
  const context = canvas.getContext("2d");
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    context.globalAlpha = Math.min(1, matrix[r][c] / top);
    context.fillStyle = colour; context.fillRect(c * scale, r * scale, scale, scale);
  }
}

function drawModelView() {
  const s = site(), grid = $("model-view");
  const heads = headCount(), longest = Math.max(data.tokens[s.queries].length, data.tokens[s.keys].length);
  const scale = Math.max(1, Math.min(14, Math.floor(90 / Math.max(1, longest))));  // about 90 px a map
  grid.innerHTML = ""; grid.style.gridTemplateColumns = "repeat(" + heads + ", max-content)";
  s.weights.forEach((layer, l) => layer.forEach((matrix, h) => {
    const cell = document.createElement("div");
    cell.className = "cell" + (s.ablated[l][h] ? " ablated" : "");
    cell.dataset.layer = l; cell.dataset.head = h;
    const imp = s.importance ? " importance " + s.importance[l][h].toFixed(3) : "";
    cell.title = "layer " + l + ", head " + h + imp + (s.ablated[l][h] ? " (switched off)" : "");
    const canvas = document.createElement("canvas");
    heatMap(canvas, matrix, scale, palette[h % palette.length]);
    const caption = document.createElement("div");
    caption.className = "label"; caption.textContent = "L" + l + " H" + h;
    cell.append(canvas, caption);
    cell.onclick = () => enlarge(l, h);
    grid.appendChild(cell);
  }));
}

function enlarge(l, h) {
  const s = site(), box = $("enlarged");
  const top = Math.max(...s.weights[l][h].map((row) => Math.max(...row)));
  box.innerHTML = "<div>" + s.title + ", layer " + l + ", head " + h +
    (s.ablated[l][h] ? " (switched off)" : "") + "; darkest = " + top.toFixed(3) + "</div>";
  const canvas = document.createElement("canvas");
  canvas.id = "enlarged-map";
  heatMap(canvas, s.weights[l][h], 16, palette[h % palette.length]);
  box.appendChild(canvas);
}

setup();
"""
