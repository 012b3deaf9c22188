"""The report page's stylesheet (inlined into every report)."""

CSS = r"""
:root {
  --fg: #1b1f24; --muted: #4d5560; --bg: #ffffff; --panel: #f6f8fa; --line: #d0d7de;
  --accent: #0b57d0; --feed: #c24e00; --ok: #1a7f37; --bad: #b42318;
  font-size: 16px;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .5rem; z-index: 10; }
.skip:focus { left: .5rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.page-top { padding: 1rem 1.5rem .5rem; border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
.page-top h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
.summary { margin: 0; color: var(--muted); }
.summary strong { color: var(--fg); }
.layout {
  display: grid; grid-template-columns: minmax(0, 1fr) minmax(340px, min(540px, 42%)); gap: 1.5rem;
  padding: 0 1.5rem 1.5rem; align-items: start;
}
.foot { padding: .5rem 1.5rem 2rem; color: var(--muted); font-size: .875rem; max-width: 70rem; }
#panel {
  position: sticky; top: .75rem; max-height: calc(100vh - 1.5rem); overflow: auto;
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.1rem;
}
#panel:focus { outline: none; }
#panel h2 { font-size: 1.25rem; margin: 0 0 .25rem; }
#panel h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
#panel p { margin: .35rem 0; }
/* Narrow screens: one column, the panel below the layers (in the flow, never over them); a click on
   a map scrolls down to it and its Back button returns (see the script). */
.narrow-only { display: none; }
@media (max-width: 900px) {
  .narrow-only { display: inline; }
  .layout { grid-template-columns: minmax(0, 1fr); padding: 0 .75rem 1rem; }
  #panel { position: static; max-height: none; overflow: visible; }
  #zoom { width: 150px; height: auto; }
  .page-top h1 { font-size: 1.25rem; }
}
.backbar { margin: 0 0 .25rem; min-height: 0; }
.backbar button { font-size: .9rem; }
.layer { border-left: 3px solid var(--line); padding: .1rem 0 .6rem .9rem; margin: 0 0 .9rem; }
.layer.has-selection { border-left-color: var(--accent); }
.layer.feeds-selection { border-left-color: var(--feed); }
.layer h3 { font-size: 1.05rem; margin: 0 0 .15rem; display: flex; flex-wrap: wrap; gap: .5rem; align-items: baseline; }
.layer h3 .kind { color: var(--muted); font-weight: 500; font-size: .9rem; }
.layer h3 .shape { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9rem; }
.layer .desc { margin: 0 0 .4rem; color: var(--muted); font-size: .85rem; overflow-wrap: anywhere; }
.layer .desc code { font-size: .8rem; }
.maps { display: flex; flex-wrap: wrap; gap: .35rem; }
.tile {
  position: relative; display: inline-flex; flex-direction: column; align-items: center; gap: 1px;
  padding: 2px; margin: 0; border: 2px solid transparent; border-radius: 5px; background: #fff;
  cursor: pointer; font: inherit; color: var(--muted);
}
.tile:hover { border-color: #8c959f; }
.tile:focus-visible { outline: 3px solid var(--ok); outline-offset: 1px; }
.tile.selected { border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent); color: var(--fg); }
.tile.feeds { border-color: var(--feed); color: var(--feed); }
.tile.unfed { opacity: .3; }
.tile .mi { font-size: .75rem; line-height: 1; font-variant-numeric: tabular-nums; }
/* 1×1×C layers: one compact strip of 10-px cells (a grid as wide as the vector they flatten to) */
.maps.strip { display: grid; gap: 0; width: max-content; max-width: 100%; }
.maps.strip .tile { padding: 0; border-width: 1px; border-radius: 0; background: none; }
.maps.strip .tile.selected { box-shadow: 0 0 0 2px var(--accent); z-index: 1; }
.maps.strip .tile.feeds { box-shadow: 0 0 0 2px var(--feed); z-index: 1; }
.maps.strip .frame { outline: none; }
.maps.strip .overlay { display: none; }
.strip-hint { margin: .3rem 0 0; font-size: .8rem; }
.frame { position: relative; display: block; line-height: 0; outline: 1px solid #d8dee4; }
canvas { image-rendering: pixelated; image-rendering: crisp-edges; }
.frame canvas { display: block; }
.overlay { position: absolute; pointer-events: none; }
.overlay.window { border: 2px solid var(--feed); box-shadow: 0 0 0 1px #fff; }
.overlay.cursor { border: 2px solid var(--accent); box-shadow: 0 0 0 1px #fff; }
.legend { display: inline-flex; align-items: center; gap: .3rem; font-size: .8rem; }
.legend .bar { width: 70px; height: 9px; display: inline-block; border: 1px solid #d8dee4;
  background: linear-gradient(90deg, #053061, #4393c3, #f7f7f7, #d6604d, #67001f); }
.legend .bar.grey { background: linear-gradient(90deg, #000, #fff); }
.classes { list-style: none; padding: 0; margin: .4rem 0 0; display: grid; gap: 2px; max-width: 32rem; }
.classes button {
  display: grid; grid-template-columns: 4.5rem 1fr 5.2rem; gap: .5rem; align-items: center; width: 100%;
  font: inherit; font-size: .9rem; background: #fff; border: 1px solid var(--line); border-radius: 4px;
  padding: 1px 6px; cursor: pointer; text-align: left; color: var(--fg);
}
.classes button:focus-visible { outline: 3px solid var(--ok); }
.classes button.selected { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.classes button.best { font-weight: 700; }
.classes .pbar { height: .7rem; background: #e6ebf1; border-radius: 2px; overflow: hidden; }
.classes .pbar span { display: block; height: 100%; background: var(--accent); }
.num, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-variant-numeric: tabular-nums; }
.num { text-align: right; white-space: nowrap; }
.zoomwrap { display: flex; gap: .75rem; align-items: flex-start; flex-wrap: wrap; }
#zoom { border: 1px solid var(--line); background: #fff; cursor: crosshair; max-width: 100%; }
#zoom:focus-visible { outline: 3px solid var(--ok); outline-offset: 2px; }
.hint { color: var(--muted); font-size: .85rem; }
.formula { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem;
  background: #fff; border: 1px solid var(--line); border-radius: 4px; padding: .35rem .5rem; overflow-x: auto; }
table.ex { border-collapse: collapse; width: 100%; font-size: .875rem; background: #fff; }
.scrollx { overflow-x: auto; max-width: 100%; }
table.ex th, table.ex td { border-bottom: 1px solid #e1e4e8; padding: 3px 5px; vertical-align: middle; }
table.ex thead th { text-align: left; font-weight: 600; color: var(--muted); font-size: .8rem; }
table.ex th.num { text-align: right; }
table.ex tbody th { text-align: left; font-weight: 500; }
table.ex tr.total th, table.ex tr.total td { border-top: 2px solid var(--fg); font-weight: 700; }
table.ex tr.engine th, table.ex tr.engine td { color: var(--accent); font-weight: 700; }
table.ex canvas { display: block; border: 1px solid #d8dee4; }
button.linkish { font: inherit; color: var(--accent); background: none; border: 0; padding: 0;
  text-decoration: underline; cursor: pointer; text-align: left; }
button.linkish:focus-visible { outline: 3px solid var(--ok); outline-offset: 1px; }
button.toggle { font: inherit; font-size: .8rem; color: var(--muted); background: none; border: 0; padding: 0; cursor: pointer; }
button.toggle::before { content: "▸ "; }
button.toggle[aria-expanded="true"]::before { content: "▾ "; }
tr.term-numbers td { background: #fbfcfd; }
.numgrids { display: flex; flex-wrap: wrap; gap: .25rem 1rem; overflow-x: auto; max-width: 100%; }
.numgrids figure { margin: 0; }
.numgrids figcaption { font-size: .75rem; color: var(--muted); }
.rgbpic { margin: .25rem 0 .5rem; }
.rgbpic canvas, .rgbkernel canvas { border: 1px solid #d8dee4; image-rendering: pixelated; display: block; }
.rgbpic figcaption { font-size: .75rem; }
.rgbkernel { gap: .25rem .6rem; }
.rgbkernel figcaption { max-width: 5.5rem; }
.chan { display: inline-block; min-width: 1.2em; font-weight: 700; text-align: center; border-radius: 3px; color: #fff; }
.chan-R { background: #c62828; } .chan-G { background: #2e7d32; } .chan-B { background: #1565c0; }
.src { display: block; font-size: .78rem; color: var(--muted); white-space: nowrap; }
table.grid { border-collapse: collapse; font-size: .72rem; margin: .25rem 0; }
table.grid td { border: 1px solid #e1e4e8; padding: 1px 3px; text-align: right; }
table.grid td.pad { color: #8c959f; background: #f6f8fa; }
table.grid td.win { background: #fff1e5; font-weight: 700; }
.check { border-radius: 4px; padding: .35rem .5rem; margin: .6rem 0; font-size: .9rem; }
.check.ok { background: #dafbe1; border: 1px solid #9ad6a8; }
.check.bad { background: #ffebe9; border: 1px solid #f5a39b; }
.check.info { background: #fff; border: 1px solid var(--line); }
.fedby { font-size: .9rem; }
/* Graph models: the DAG overview (an inline SVG) and the folding blocks of the layer column. */
.dagwrap { margin: 0 0 1rem; }
.dagwrap figcaption { margin: 0 0 .3rem; }
.dagscroll { max-height: 70vh; overflow: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
#dag { display: block; font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
#dag .edge { fill: none; stroke: #8c959f; stroke-width: 1.2; }
#dag .edge.into { stroke: var(--feed); stroke-width: 2; }
#dag .band { fill: #f3f6fa; stroke: var(--line); }
#dag g.node { cursor: pointer; }
#dag g.node rect { fill: #fff; stroke: #57606a; stroke-width: 1; }
#dag g.node text { fill: var(--fg); }
#dag g.node.merge rect { fill: #fff4e5; stroke: var(--feed); }
#dag g.node.input rect { fill: #eef1f4; }
#dag g.node.folded rect { fill: #eaf1fb; stroke: var(--accent); }
#dag g.node.feeds rect { stroke: var(--feed); stroke-width: 2.5; }
#dag g.node.selected rect { stroke: var(--accent); stroke-width: 3; }
#dag g.node:focus { outline: none; }
#dag g.node:focus rect, #dag g.fold:focus rect { stroke: var(--accent); stroke-dasharray: 3 2; }
#dag g.fold { cursor: pointer; }
#dag g.fold rect { fill: #fff; stroke: var(--accent); }
#dag g.fold text { text-anchor: middle; fill: var(--accent); }
details.block { border-left: 3px solid var(--line); margin: 0 0 .6rem; padding: 0 0 0 .5rem; }
details.block > summary { cursor: pointer; padding: .2rem 0; font-weight: 600; }
details.block > summary .kind { color: var(--muted); font-weight: 500; }
details.block[open] > summary { margin-bottom: .4rem; }
.layer .inputs { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.layer .desc.wiring { color: var(--fg); }
#panel .sources { border-top: 1px solid var(--line); margin-top: .6rem; }
#panel .sources ul { margin: .2rem 0; padding-left: 1.2rem; }
#panel .sources .perm { overflow-wrap: anywhere; }
"""
