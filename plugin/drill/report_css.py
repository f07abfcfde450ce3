"""The drill report's one inline stylesheet (the page may load nothing from elsewhere).

Colours: green passed, red failed, grey skipped; the same three mark the verdict, the badges and
the summary's bad cells. ``@media print`` opens every ``<details>`` so a printed report is whole.
"""

from __future__ import annotations

CSS = """
:root{--ok:#1e8449;--bad:#c0392b;--skip:#7f8c8d;--ink:#1c2833;--mute:#5d6d7e;--line:#d5d8dc}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
margin:0 auto;max-width:1180px;padding:0 1.2rem 3rem;line-height:1.45}
header{display:flex;gap:1.5rem;align-items:center;padding:1.2rem 1.4rem;margin:1rem 0;border-radius:10px;
border:2px solid var(--line)}
header.passed{border-color:var(--ok);background:#eafaf1}header.failed{border-color:var(--bad);background:#fdedec}
.verdict{font-size:2.8rem;font-weight:800;letter-spacing:.06em;padding:.2rem 1rem;border-radius:8px;
color:#fff}
header.passed .verdict{background:var(--ok)}header.failed .verdict{background:var(--bad)}
h1{margin:0 0 .3rem;font-size:1.5rem}
.why{margin:.4rem 0 0;color:var(--bad);font-weight:700}
dl.meta{display:grid;grid-template-columns:auto 1fr;gap:.1rem 1rem;margin:0}dl.meta dt{color:var(--mute)}
dl.meta dd{margin:0}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.5rem 1rem;min-width:8.5rem}
.card .num{display:block;font-size:1.7rem;font-weight:700}.card .what{color:var(--mute);font-size:.85rem}
.card.bad{border-color:var(--bad);color:var(--bad)}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin:0 .3em 0 .6em;
vertical-align:-.1em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem;width:100%}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f7}#summary-table td{white-space:nowrap}
td.bad{color:var(--bad);font-weight:700}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:4px;color:#fff;font-size:.8rem;font-weight:700;
text-transform:uppercase;vertical-align:.15em}
.badge.passed{background:var(--ok)}.badge.failed{background:var(--bad)}.badge.skipped{background:var(--skip)}
section.scenario{border-top:3px solid var(--line);margin-top:2rem;padding-top:.4rem}
section.scenario.failed{border-top-color:var(--bad)}
code.name{color:var(--mute);font-size:.85rem}
.failures{border-left:4px solid var(--bad);background:#fdedec;color:#922b21;padding:.3rem 1rem;margin:.6rem 0}
.failures h3,.samples h3{margin:.3rem 0;font-size:1rem}
.skip{color:var(--skip);font-style:italic}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.92rem}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0}
.moment.fault{color:#c0392b}.moment.restore{color:#27ae60}.moment.failover{color:#d35400}
.moment.failback{color:#2c3e8f}.moment.panic{font-weight:700}
figure.chart{margin:1rem 0}figure.chart svg{width:100%;height:auto}
figcaption,.hint{color:var(--mute);font-size:.82rem}
.samples code,.events code{white-space:pre-wrap;word-break:break-word;font-size:.82rem}
details summary{cursor:pointer;font-weight:600;margin:.4rem 0}
pre{background:#f4f6f7;padding:.8rem;overflow-x:auto;font-size:.8rem}
footer{margin-top:2rem;color:var(--mute);font-size:.8rem}
@media print{details{display:block}}
""".strip()
