"""The report's stylesheet: every colour is a custom property, so a test can check their contrast.

``PAIRS`` names each (text, background) pair of properties the page puts text on; the tests check
every pair against WCAG AA (4.5:1), and a headless Chromium run checks the computed colours too.
"""

from __future__ import annotations

COLOURS = {
    "bg": "#f6f7f9", "surface": "#ffffff", "fg": "#1d2330", "muted": "#4a5262", "code-bg": "#eef1f5",
    "header-bg": "#1d2330", "header-fg": "#ffffff", "header-muted": "#d0d5df", "ok": "#136c37",
    "bad": "#a3200f", "warn": "#8a3a0c", "accent": "#3047c4", "line": "#c9ced8",
    "bad-bg": "#fdecea", "warn-bg": "#fff4e0", "untrusted-bg": "#fff7f6", "mark": "#f5b700",
}
# Text colour on background colour, for every place the page writes text.
PAIRS = [(fg, bg) for fg in ("fg", "muted", "ok", "bad", "warn", "accent")
         for bg in ("bg", "surface", "code-bg", "untrusted-bg", "bad-bg", "warn-bg")]
PAIRS += [("header-fg", "header-bg"), ("header-muted", "header-bg")]

STYLE = ":root{" + "".join(f"--{name}:{value};" for name, value in COLOURS.items()) + "}" + """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:var(--bg);color:var(--fg)}
header{background:var(--header-bg);color:var(--header-fg);padding:16px 28px}header h1{margin:0;font-size:20px}
header .meta{color:var(--header-muted)}
main{padding:12px 28px;max-width:1100px}
section{background:var(--surface);border:1px solid var(--line);border-radius:6px;margin:14px 0;padding:12px 16px}
h2{font-size:16px;margin:4px 0 10px}h3{font-size:14px;margin:8px 0 4px}
pre{background:var(--code-bg);color:var(--fg);padding:8px;overflow:auto;max-height:40em;white-space:pre-wrap;
word-break:break-word;margin:6px 0}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
.iteration{border-left:4px solid var(--accent);padding-left:10px;margin:12px 0}
.meta{color:var(--muted);font-size:13px}.sub{margin-left:18px}
.event{margin:6px 0 6px 18px;padding:4px 8px;border-left:4px solid var(--warn);background:var(--warn-bg);color:var(--fg)}
.event.failure{border-left-color:var(--bad);background:var(--bad-bg)}
.cite{cursor:pointer;color:var(--accent);text-decoration:underline}
.evidence.active{outline:3px solid var(--mark)}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top}th{font-weight:600}
.hash{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
details summary{cursor:pointer;color:var(--accent)}
#warning{border:3px solid var(--bad);background:var(--bad-bg);margin:0;border-radius:0;padding:16px 28px}
#warning.unfinished{border-color:var(--warn);background:var(--warn-bg)}
#warning h2{font-size:20px}
.untrusted section{border:2px dashed var(--bad);background:var(--untrusted-bg)}
.untrusted section>h2::after{content:" \\2014  untrusted: from a log that does not verify";color:var(--bad);
font-weight:400;font-size:13px}
#failure{border:2px solid var(--bad);background:var(--bad-bg)}
"""
