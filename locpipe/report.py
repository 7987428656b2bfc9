"""QC report people look at: ``OUT_DIR/qc/index.html`` plus ``report.json``.

One row per episode x market with pass/fail per check, a contact sheet of frames with the
burned subtitles, and small charts (loudness over time, characters per second per subtitle,
dub stretch factors). Charts are inline SVG built here, so the report is one static folder
that opens anywhere (no scripts, no network). Every text placed in the page is escaped.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.store import atomic_write_text
from locpipe.media.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)

SHEET_FRAMES = 4
THUMB = (216, 384)


@dataclass(frozen=True)
class Row:
    episode: str
    market: str
    status: str
    error: str
    outputs: dict[str, str]
    qc: dict | None


# --------------------------------------------------------------------------- data


def load_rows(out_dir: Path) -> list[Row]:
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for unit in manifest.get("units", []):
        qc_path = Path(unit.get("outputs", {}).get("qc", ""))
        qc = json.loads(qc_path.read_text(encoding="utf-8")) if unit.get("outputs") and qc_path.exists() else None
        market = unit["market"] + (f"/{unit['distributor']}" if unit.get("distributor") else "")
        rows.append(Row(unit["episode"], market, unit["status"], unit.get("error", ""),
                        unit.get("outputs", {}), qc))
    return rows


def srt_midpoints(srt: Path, count: int) -> list[float]:
    """Times in the middle of up to ``count`` subtitle events spread over the episode."""
    from locpipe.media.subtitles import read_srt_spans

    spans = read_srt_spans(srt) if srt.exists() else []
    mids = [((start + end) / 2000) for start, end in spans]
    if len(mids) <= count:
        return mids
    step = len(mids) / count
    return [mids[int(i * step + step / 2)] for i in range(count)]


# --------------------------------------------------------------------------- pictures


def contact_sheet(video: Path, times: list[float], dst: Path) -> Path | None:
    """One JPEG of frames at ``times`` side by side (a single ffmpeg run, seeking per input)."""
    if not times or not video.exists():
        return None
    if dst.exists() and dst.stat().st_mtime >= video.stat().st_mtime:
        return dst
    args: list[str] = []
    for t in times:
        args += ["-ss", f"{t:.3f}", "-i", str(video)]
    w, h = THUMB
    scaled = "".join(f"[{i}:v:0]scale={w}:{h},setsar=1[f{i}];" for i in range(len(times)))
    stack = "".join(f"[f{i}]" for i in range(len(times)))
    graph = scaled + (f"{stack}hstack=inputs={len(times)}[out]" if len(times) > 1 else f"{stack}null[out]")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp.jpg")
    run_ffmpeg([*args, "-filter_complex", graph, "-map", "[out]", "-frames:v", "1", "-q:v", "4", str(tmp)],
               what=f"contact sheet of {video.name}")
    tmp.replace(dst)
    return dst


def svg_line(values: list[float], *, title: str, lo: float, hi: float, target: float | None = None,
             width: int = 280, height: int = 90) -> str:
    """A small line chart; ``target`` draws a dashed reference line."""
    if not values:
        return f'<svg width="{width}" height="{height}"><text x="4" y="14">{html.escape(title)}: no data</text></svg>'

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return height - 4 - (v - lo) / (hi - lo) * (height - 22)

    step = (width - 8) / max(len(values) - 1, 1)
    points = " ".join(f"{4 + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    ref = (f'<line x1="4" x2="{width - 4}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#c33" '
           f'stroke-dasharray="4 3"/>' if target is not None else "")
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
            f'<text x="4" y="12" font-size="11">{html.escape(title)}</text>{ref}'
            f'<polyline fill="none" stroke="#247" stroke-width="1.5" points="{points}"/></svg>')


def svg_bars(values: list[float], *, title: str, limit: float, hi: float, width: int = 280, height: int = 90) -> str:
    """Bars per item; bars over ``limit`` are red."""
    if not values:
        return f'<svg width="{width}" height="{height}"><text x="4" y="14">{html.escape(title)}: no data</text></svg>'
    bw = (width - 8) / len(values)
    bars = []
    for i, v in enumerate(values):
        bh = min(v, hi) / hi * (height - 22)
        colour = "#c33" if v > limit else "#4a8"
        bars.append(f'<rect x="{4 + i * bw:.1f}" y="{height - 4 - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{bh:.1f}" fill="{colour}"/>')
    ly = height - 4 - limit / hi * (height - 22)
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
            f'<text x="4" y="12" font-size="11">{html.escape(title)}</text>{"".join(bars)}'
            f'<line x1="4" x2="{width - 4}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="#c33" stroke-dasharray="4 3"/></svg>')


# --------------------------------------------------------------------------- page


def _rel(target: str, qc_dir: Path) -> str:
    import os

    return html.escape(os.path.relpath(target, qc_dir))


def _check_cells(qc: dict | None) -> str:
    if not qc:
        return "<td>-</td>"
    badges = []
    for c in qc["checks"]:
        cls = "pass" if c["passed"] else "fail"
        tip = html.escape(f"{c.get('target', '')} {c.get('detail', '')}".strip())
        badges.append(f'<span class="{cls}" title="{tip}">{html.escape(c["name"])}: '
                      f'{html.escape(str(c.get("value")))}</span>')
    return f"<td>{' '.join(badges)}</td>"


def _charts(qc: dict | None, rules_cps: float) -> str:
    if not qc:
        return ""
    s = qc.get("series", {})
    target = next((c for c in qc["checks"] if c["name"] == "loudness"), None)
    target_lufs = float(str(target["target"]).split()[0]) if target else None
    charts = [svg_line(s.get("loudness_momentary", []), title="momentary loudness (LUFS)", lo=-40, hi=-5,
                       target=target_lufs),
              svg_bars(s.get("cps", []), title="chars/second per subtitle", limit=rules_cps, hi=max(30, rules_cps))]
    if "dub_stretch" in s:
        charts.append(svg_bars(s["dub_stretch"], title="dub stretch factor", limit=1.25, hi=1.6))
    return "".join(charts)


def load_promos(out_dir: Path) -> list[dict]:
    """Every published promo document (``OUT/<market>/promo/<episode>-promo.json``, core/promo.py)."""
    docs = []
    for path in sorted(out_dir.glob("*/promo/*-promo.json")):
        try:
            docs.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            log.warning("unreadable promo document %s: %s", path, exc)
    return docs


def promo_section(docs: list[dict], qc_dir: Path) -> str:
    """One row per promo clip: its spans, QC checks and contact sheet (or the episode's note)."""
    if not docs:
        return ""
    rows = []
    for d in docs:
        note = html.escape("; ".join(d.get("notes", [])))
        if not d.get("clips"):
            rows.append(f'<tr><td>{html.escape(d["episode"])}</td><td>{html.escape(d["market"])}</td>'
                        f'<td>-</td><td colspan="3">{note or "no clip"}</td></tr>')
        for c in d.get("clips", []):
            spans = ", ".join(f'{s["start"]:.2f}-{s["end"]:.2f}s' for s in c["spans"])
            sheet = f'<img class="promo" src="{_rel(c["sheet"], qc_dir)}" alt="promo frames">' if c.get("sheet") else ""
            rows.append(f'<tr><td>{html.escape(d["episode"])}</td><td>{html.escape(d["market"])}</td>'
                        f'<td><a href="{_rel(c["video"], qc_dir)}">clip {c["number"]}</a> {c["duration"]:.2f}s, '
                        f'score {c["score"]:.1f}<div>{html.escape(spans)}</div><div>hook: {html.escape(c["hook"])}'
                        f'</div><div>{note}</div></td>{_check_cells(c["qc"])}<td>{sheet}</td></tr>')
    return ('<h2 id="promos">Promo cuts</h2><table><thead><tr><th>episode</th><th>market</th><th>clip</th>'
            f'<th>checks</th><th>frames</th></tr></thead><tbody>{chr(10).join(rows)}</tbody></table>')


def render_html(rows: list[Row], sheets: dict[tuple[str, str], Path | None], qc_dir: Path,
                cps_limits: dict[str, float], promos: list[dict] | None = None) -> str:
    body = []
    for r in rows:
        verdict = ("ok" if r.status == "ok" else "failed")
        qc_verdict = "" if not r.qc else ("pass" if r.qc["passed"] else "check")
        links = " ".join(f'<a href="{_rel(path, qc_dir)}">{html.escape(kind)}</a>'
                         for kind, path in sorted(r.outputs.items()))
        sheet = sheets.get((r.episode, r.market))
        img = f'<img src="{_rel(str(sheet), qc_dir)}" alt="frames of {html.escape(r.episode)}">' if sheet else ""
        err = f'<div class="err">{html.escape(r.error)}</div>' if r.error else ""
        body.append(
            f'<tr class="{verdict}"><td>{html.escape(r.episode)}</td><td>{html.escape(r.market)}</td>'
            f'<td>{verdict} {qc_verdict}{err}<div>{links}</div></td>{_check_cells(r.qc)}'
            f'<td>{img}</td><td class="charts">{_charts(r.qc, cps_limits.get(r.market, 20.0))}</td></tr>')
    failed = sum(r.status != "ok" for r in rows)
    checks = sum(bool(r.qc and not r.qc["passed"]) for r in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>locpipe QC report</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; vertical-align: top; font-size: 13px; }}
tr.failed {{ background: #fee; }} .pass {{ color: #161; }} .fail {{ color: #b00; font-weight: bold; }}
span {{ display: inline-block; margin: 1px 4px 1px 0; }} .err {{ color: #b00; max-width: 30em; }}
img {{ height: 192px; }} img.promo {{ height: 128px; }} .charts svg {{ display: block; border-bottom: 1px solid #eee; }}
</style></head><body>
<h1>locpipe QC report</h1>
<p id="summary">{len(rows)} exports: {len(rows) - failed} produced, {failed} failed, {checks} need a check.
Machine-readable: <a href="report.json">report.json</a>.</p>
<table><thead><tr><th>episode</th><th>market</th><th>status</th><th>checks</th><th>frames</th><th>charts</th></tr>
</thead><tbody>
{chr(10).join(body)}
</tbody></table>
{promo_section(promos or [], qc_dir)}</body></html>
"""


def build_report(out_dir: Path, cps_limits: dict[str, float] | None = None) -> Path:
    """Write ``OUT_DIR/qc/index.html`` and ``report.json``; returns the HTML path."""
    qc_dir = out_dir / "qc"
    rows = load_rows(out_dir)
    sheets: dict[tuple[str, str], Path | None] = {}
    for r in rows:
        if r.status != "ok":
            continue
        video = Path(r.outputs.get("video", ""))
        times = srt_midpoints(Path(r.outputs.get("srt", "")), SHEET_FRAMES)
        if not times and video.exists():
            times = [1.0]
        try:
            sheets[(r.episode, r.market)] = contact_sheet(video, times, qc_dir / r.market / f"{r.episode}.jpg")
        except Exception as exc:  # a broken export must not cost the whole report
            log.warning("no contact sheet for %s/%s: %s", r.market, r.episode, exc)
    promos = load_promos(out_dir)
    page = render_html(rows, sheets, qc_dir, cps_limits or {}, promos)
    atomic_write_text(qc_dir / "report.json", json.dumps(
        [{"episode": r.episode, "market": r.market, "status": r.status, "error": r.error,
          "qc_passed": r.qc["passed"] if r.qc else None,
          "checks": {c["name"]: c["passed"] for c in r.qc["checks"]} if r.qc else {},
          "contact_sheet": str(sheets.get((r.episode, r.market)) or "")} for r in rows]
        + [{"episode": d["episode"], "market": d["market"], "promo": c["number"], "video": c["video"],
            "qc_passed": c["qc"]["passed"], "checks": {k["name"]: k["passed"] for k in c["qc"]["checks"]},
            "contact_sheet": c["sheet"]} for d in promos for c in d.get("clips", [])], indent=1))
    index = qc_dir / "index.html"
    atomic_write_text(index, page)
    return index
