"""The review loop's I/O shell: write review files, read edited ones back into a run.

``export_episode`` writes, per episode and language, what a linguist edits: an SRT whose
cue text is the translation and nothing else (what every editor keeps), a TSV with the
source line, speaker, machine text and QC flags per cue (the columns no SRT editor keeps
reliably), and the same two forms for the Chinese transcript. A record of what was
exported (hashes of the version, its cues) goes beside the files and into the review
folder, so an import knows which version a file was made from.

``apply_translation_review`` / ``apply_source_review`` are the pipeline's hooks: an edited
file in the review folder (SERIES_DIR/.locpipe/review/, or ``--review DIR``) becomes the
final translation or transcript, as a cached stage keyed by the machine version and the
file's bytes; the reviewed lines go into the translation memory as approved entries.
The checks are pure (``locpipe.localize.review``); here they are logged with the file and
line, and recorded for the manifest and QC.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from locpipe.artifacts import Transcript, Translation
from locpipe.config import Market
from locpipe.core.context import EpisodeContext
from locpipe.core.recognition import Recognition
from locpipe.core.reports import UnitReport
from locpipe.core.store import ArtifactStore, Stored, atomic_write_text
from locpipe.localize import review as rv

log = logging.getLogger(__name__)

REVIEW_DIRNAME = "review"
#: inside the review folder: what ``review export`` wrote (for imports and ``review status``)
EXPORTED_DIRNAME = "exported"
FORMATS = (".srt", ".tsv")


# --------------------------------------------------------------------------- where


def review_folder(series_dir: Path, override: Path | None = None) -> Path:
    """``--review DIR``, else SERIES_DIR/.locpipe/review/."""
    from locpipe.localize.voices import series_state_dir

    return Path(override) if override else series_state_dir(series_dir) / REVIEW_DIRNAME


def stem(episode: str, language: str, *, source: bool = False) -> str:
    """``ep001.en`` (translation) or ``ep001.source.zh`` (the transcript)."""
    return f"{episode}.source.{language}" if source else f"{episode}.{language}"


def record_path(folder: Path, name: str) -> Path:
    return folder / EXPORTED_DIRNAME / f"{name}.json"


def _folder(ctx: EpisodeContext) -> Path:
    return review_folder(ctx.path.resolve().parent, ctx.settings.review_dir)


# --------------------------------------------------------------------------- versions


def translation_cues(translation: Translation) -> list[rv.MachineCue]:
    return [rv.MachineCue(c.index, c.start, c.end, c.text) for c in translation.cues]


def transcript_cues(transcript: Transcript) -> list[rv.MachineCue]:
    return [rv.MachineCue(c.index, c.start, c.end, c.text) for c in transcript.cues]


def max_cps(market: Market) -> float:
    from locpipe.stages.segment import rules_for

    return rules_for(market.config.language, market.config.subtitle_rules).max_chars_per_second


# --------------------------------------------------------------------------- reading review files


@dataclass(frozen=True)
class ReviewFile:
    """One edited file as read: its cues, parse problems, and what identifies it."""

    path: Path
    cues: list[rv.EditedCue]
    problems: list[rv.Problem]
    sha256: str
    mtime: float

    @property
    def mtime_iso(self) -> str:
        return datetime.fromtimestamp(self.mtime, UTC).isoformat(timespec="seconds")

    def describe(self) -> dict:
        return {"file": self.path.name, "path": str(self.path), "mtime": self.mtime, "mtime_iso": self.mtime_iso,
                "sha256": self.sha256}


def read_review_file(path: Path) -> ReviewFile:
    """Parse an edited SRT or TSV; unreadable bytes are a problem of the file, not a crash."""
    data = path.read_bytes()
    cues: list[rv.EditedCue]
    problems: list[rv.Problem]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        cues, problems = [], [rv.Problem(f"not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8")]
    else:
        cues, problems = rv.parse_tsv(text) if path.suffix.lower() == ".tsv" else rv.parse_srt(text)
    return ReviewFile(path, cues, problems, hashlib.sha256(data).hexdigest()[:16], path.stat().st_mtime)


def find_review(folder: Path, name: str, machine: list[rv.MachineCue]) -> ReviewFile | None:
    """The edited file for ``name`` (``<name>.srt`` or ``.tsv``): when both are there, the
    one that differs from the machine version, else the newer."""
    found = []
    for path in (folder / f"{name}{ext}" for ext in FORMATS):
        try:
            if path.is_file():
                found.append(read_review_file(path))
        except OSError as exc:  # unreadable (permissions, a share gone): the machine version stays
            log.error("review: %s cannot be read (%s); the machine version is used", path, exc)
    if len(found) < 2:
        return found[0] if found else None

    def edited(f: ReviewFile) -> bool:
        return len(f.cues) != len(machine) or any(
            " ".join(e.text.split()) != " ".join(m.text.split()) or abs(e.start - m.start) > rv.TIME_EPS
            or abs(e.end - m.end) > rv.TIME_EPS for e, m in zip(f.cues, machine))

    chosen = max(found, key=lambda f: (edited(f), f.mtime))
    log.info("%s: both %s exist; using %s", folder, " and ".join(f.path.name for f in found), chosen.path.name)
    return chosen


def exported_record(folder: Path, name: str) -> dict | None:
    path = record_path(folder, name)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        log.warning("%s is unreadable; the review file is compared with the current machine version", path)
        return None


def _base(record: dict | None, current: list[rv.MachineCue]) -> tuple[list[rv.MachineCue] | None, bool, str]:
    """(version the file was exported from, match by time, warning): from the export record."""
    if record is None:
        return None, False, ""
    base = [rv.MachineCue(c["index"], c["start"], c["end"], c["text"]) for c in record.get("cues", [])]
    if record.get("timing") != rv.timing_hash(current):
        return None, True, (f"exported for other cue times (version {record.get('timing')}, the episode now has "
                            f"{rv.timing_hash(current)}: a new cut or transcript); cues matched by time")
    return base, False, ""


def review_outcome(file: ReviewFile, current: list[rv.MachineCue], record: dict | None, *, language: str,
                   duration: float, cps: float) -> rv.Outcome:
    """The file's edits over ``current``, with parse problems and the version check first."""
    base, by_time, warning = _base(record, current)
    out = rv.apply_review(current, file.cues, language=language, duration=duration, max_cps=cps, base=base,
                          by_time=by_time)
    out.problems[:0] = file.problems
    if warning:
        out.warnings.insert(0, rv.Problem(warning))
    return out


def _report(file: ReviewFile, out: rv.Outcome) -> tuple[list[str], list[str]]:
    problems = [p.where(str(file.path)) for p in out.problems]
    warnings = [w.where(str(file.path)) for w in out.warnings]
    for p in problems:
        log.error("review: %s", p)
    for w in warnings:
        log.warning("review: %s", w)
    return problems, warnings


def _changes(out: rv.Outcome) -> list[dict]:
    return [{"cue": c.index, "what": list(c.what), "before": c.before, "after": c.after, "line": c.line,
             "start": c.start, "end": c.end} for c in out.changes]


# --------------------------------------------------------------------------- pipeline hooks


def apply_translation_review(ctx: EpisodeContext, rec: Recognition, market: Market, machine: Stored[Translation],
                             unit: UnitReport, store: ArtifactStore) -> Stored[Translation]:
    """The final translation: ``machine`` with the edits of this episode's review file, if any.

    A stage of its own ("review", keyed by the machine version and the file's bytes), so
    segment and synthesize see a new key only when an edit changed something; the accepted
    lines go into the TM as approved entries. Never fails the market: a file that cannot be
    used leaves the machine version, with the reasons in the log, the manifest and QC.
    """
    if rec.transcript.model.review:
        unit.review["source"] = rec.transcript.model.review
    language = market.config.language
    folder, name = _folder(ctx), stem(ctx.name, language)
    current = translation_cues(machine.model)
    file = find_review(folder, name, current) if folder.is_dir() else None
    if file is None:
        return machine
    record, cps = exported_record(folder, name), max_cps(market)
    parts = {"machine": machine.key, "file": file.sha256, "name": file.path.name, "cps": cps,
             "record": (record or {}).get("version"), "duration": rec.info.duration}

    def make(_d: Path) -> Translation:
        out = review_outcome(file, current, record, language=language, duration=rec.info.duration, cps=cps)
        problems, warnings = _report(file, out)
        final = {c.index: c for c in out.cues}
        cues = [c.model_copy(update={"text": final[c.index].text, "start": final[c.index].start,
                                     "end": final[c.index].end}) for c in machine.model.cues]
        return machine.model.model_copy(update={"cues": cues, "reviewed": _changes(out), "review_file": file.describe(),
                                                "review_problems": problems, "review_warnings": warnings})

    stored = ctx.stage(market.code, "review", parts, Translation, make, store)
    reviewed = stored.model
    unit.review["translation"] = {**reviewed.review_file, "edited": [r["cue"] for r in reviewed.reviewed],
                                  "problems": reviewed.review_problems, "warnings": reviewed.review_warnings}
    approve(ctx, rec.transcript.model, reviewed, file)
    # nothing changed (the exported file dropped back as it was, or every edit refused): the
    # machine version stays, so nothing downstream is redone
    return stored if reviewed.reviewed else machine


def approve(ctx: EpisodeContext, transcript: Transcript, reviewed: Translation, file: ReviewFile) -> int:
    """Reviewed lines into the TM as approved entries (file name, its time, the episode):
    later episodes of the series take them before any backend. Idempotent."""
    from locpipe.core.market import tm_file
    from locpipe.localize.tm import Approval, TranslationMemory, keys_for_lines

    edited = {r["cue"] for r in reviewed.reviewed if "text" in r["what"]}
    if not edited:
        return 0
    lines = [c.text for c in transcript.cues]
    keys = keys_for_lines(lines, transcript.language, reviewed.language, "")
    texts = {c.index: c.text for c in reviewed.cues}
    entries = {k: texts[c.index] for k, c in zip(keys, transcript.cues, strict=True) if c.index in edited}
    with TranslationMemory(tm_file(ctx.settings)) as tm:
        return tm.store_approved(entries, Approval(origin=file.path.name, when=file.mtime, episode=ctx.name))


def apply_source_review(ctx: EpisodeContext, rec: Recognition) -> Recognition:
    """The final transcript: the recognized one with an edited ``<episode>.source.<lang>`` file's
    corrections (text and times; the speaker labels stay with their cues)."""
    transcript = rec.transcript.model
    folder, name = _folder(ctx), stem(ctx.name, transcript.language, source=True)
    current = transcript_cues(transcript)
    file = find_review(folder, name, current) if folder.is_dir() else None
    if file is None:
        return rec
    from locpipe.stages.segment import rules_for

    record, cps = exported_record(folder, name), rules_for(transcript.language).max_chars_per_second
    parts = {"transcript": rec.transcript.key, "file": file.sha256, "name": file.path.name,
             "record": (record or {}).get("version"), "duration": rec.info.duration}

    def make(_d: Path) -> Transcript:
        out = review_outcome(file, current, record, language=transcript.language, duration=rec.info.duration, cps=cps)
        problems, warnings = _report(file, out)
        final = {c.index: c for c in out.cues}
        changed = {c.index for c in out.changes}
        cues = [c.model_copy(update={"text": final[c.index].text, "start": final[c.index].start,
                                     "end": final[c.index].end,
                                     "words": [] if c.index in changed else c.words,
                                     "flags": c.flags + (["reviewed"] if c.index in changed else [])})
                for c in transcript.cues]
        return transcript.model_copy(update={"cues": cues, "review": {
            **file.describe(), "edited": sorted(changed), "problems": problems, "warnings": warnings}})

    stored = ctx.stage("", "review_source", parts, Transcript, make)
    edited = stored.model.review.get("edited", [])
    log.info("%s: source transcript from %s (%d line(s) edited)", ctx.name, file.path.name, len(edited))
    if not edited:  # nothing changed: the recognized transcript's key (and every key after it) stays
        same = replace(rec.transcript, model=rec.transcript.model.model_copy(update={"review": stored.model.review}))
        return replace(rec, transcript=same)
    return replace(rec, transcript=stored)


# --------------------------------------------------------------------------- export


def _characters(ctx: EpisodeContext, rec: Recognition) -> dict[int, str]:
    """Cue index -> bible character, as casting decides it (voices.yaml mappings, else the
    dialogue's evidence: ``localize.voices.episode_characters``), for the table's speaker column."""
    from locpipe.localize.voices import episode_characters

    try:
        return episode_characters(ctx.series_state, ctx.name, rec.transcript.model, ctx.bible, rec.speakers)
    except Exception as exc:  # noqa: BLE001 - only a label in a table: never fails the export
        log.info("no character names for the review table (%s)", exc)
        return {}


def _who(label: str | None, character: str | None) -> str:
    if not label:
        return ""
    return f"{label} ({character})" if character else label


def _record(ctx: EpisodeContext, name: str, language: str, markets: list[str], machine: list[rv.MachineCue],
            source: list[rv.MachineCue]) -> dict:
    return {"format": rv.REVIEW_FORMAT, "episode": ctx.name, "sha256": ctx.sha256, "language": language,
            "markets": markets, "name": name, "version": rv.version_hash(machine), "timing": rv.timing_hash(machine),
            "source_version": rv.version_hash(source), "exported_at": time.time(),
            "cues": [{"index": c.index, "start": c.start, "end": c.end, "text": c.text} for c in machine]}


def _per_cue_notes(translation: Translation) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = {}
    for v in translation.glossary_violations:
        notes.setdefault(v["cue"], []).append(f"glossary: {v.get('term') or v.get('found', '')} {v['problem']}")
    for a in translation.adaptations:
        detail = a.get("detail") or f"{a['before']!r} -> {a['after']!r}"
        notes.setdefault(a["cue"], []).append(f"adapted {a['rule']}: {detail}")
    for a in translation.tm_approved:
        notes.setdefault(a["cue"], []).append(f"approved in {a['origin']}")
    for r in translation.reviewed:
        notes.setdefault(r["cue"], []).append(f"reviewed ({'+'.join(r['what'])})")
    return notes


def review_srt(cues: list[rv.MachineCue]) -> str:
    """The SRT a linguist edits, by the project's one SRT writer (numbered from 1, text defused)."""
    from locpipe.artifacts import SubtitleEvent
    from locpipe.media.subtitles import srt_string

    return srt_string([SubtitleEvent(start=c.start, end=c.end, lines=c.text.split("\n"), cue_index=c.index)
                       for c in cues])


def translation_files(ctx: EpisodeContext, rec: Recognition, market: Market, markets: list[str],
                      machine: Translation, final: Translation) -> dict[str, str]:
    """file name -> text of one language's review forms (SRT, TSV, record)."""
    language = market.config.language
    name, names, cps = stem(ctx.name, language), _characters(ctx, rec), max_cps(market)
    machine_cues, final_cues = translation_cues(machine), translation_cues(final)
    record = _record(ctx, name, language, markets, machine_cues, transcript_cues(rec.transcript.model))
    notes = _per_cue_notes(final)
    rows = [{"index": n, "start": rv.srt_time(f.start), "end": rv.srt_time(f.end),
             "speaker": _who(c.speaker, names.get(c.index)),
             "source": c.source_text, "machine": m.text, "final": f.text,
             "flags": rv.qc_flags(f.text, f.start, f.end, cps, notes.get(c.index, []))}
            for n, (c, m, f) in enumerate(zip(final.cues, machine_cues, final_cues, strict=True), 1)]
    header = {"episode": ctx.name, "language": language, "markets": ",".join(markets), "version": record["version"],
              "source": record["source_version"]}
    return {f"{name}.srt": review_srt(final_cues), f"{name}.tsv": rv.format_tsv(header, rows),
            f"{name}.review.json": json.dumps(record, indent=1, ensure_ascii=False)}


def source_files(ctx: EpisodeContext, rec: Recognition, machine: Transcript) -> dict[str, str]:
    """file name -> text of the transcript's review forms (Chinese text and times)."""
    final = rec.transcript.model
    name, names = stem(ctx.name, final.language, source=True), _characters(ctx, rec)
    from locpipe.stages.segment import rules_for

    cps = rules_for(final.language).max_chars_per_second
    machine_cues, final_cues = transcript_cues(machine), transcript_cues(final)
    record = _record(ctx, name, final.language, [], machine_cues, machine_cues)
    rows = [{"index": n, "start": rv.srt_time(f.start), "end": rv.srt_time(f.end),
             "speaker": _who(c.speaker, names.get(c.index)),
             "source": c.source, "machine": m.text, "final": f.text,
             "flags": rv.qc_flags(f.text, f.start, f.end, cps, c.flags + ([f"confidence {c.confidence:.2f}"]
                                                                         if c.confidence < 0.6 else []))}
            for n, (c, m, f) in enumerate(zip(final.cues, machine_cues, final_cues, strict=True), 1)]
    header = {"episode": ctx.name, "language": final.language, "version": record["version"]}
    return {f"{name}.srt": review_srt(final_cues), f"{name}.tsv": rv.format_tsv(header, rows),
            f"{name}.review.json": json.dumps(record, indent=1, ensure_ascii=False)}


def write_files(out_dir: Path, files: dict[str, str], state: Path | None) -> list[Path]:
    """Every file to a temp name then renamed (a failed export never leaves half a file or
    replaces a good one); each record also into the review folder's ``exported/``."""
    written = []
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
        if state is not None and name.endswith(".review.json"):
            try:
                atomic_write_text(state / EXPORTED_DIRNAME / name.replace(".review.json", ".json"), text)
            except OSError as exc:
                log.warning("%s: export not recorded (%s); `review status` will not list it", state, exc)
    return written


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ReviewState:
    episode: str
    language: str
    kind: str  # "translation" | "source"
    state: str  # machine-only | exported | reviewed
    edited: int = 0
    problems: int = 0
    file: str = ""
    exported_at: str = ""


def review_state(folder: Path, episode: str, language: str, *, source: bool = False) -> ReviewState:
    """Where one episode's language stands: machine-only, exported for review, or reviewed
    (a file in the review folder; edited lines counted against the exported version)."""
    name = stem(episode, language, source=source)
    kind = "source" if source else "translation"
    record = exported_record(folder, name)
    when = datetime.fromtimestamp(record["exported_at"], UTC).isoformat(timespec="seconds") if record else ""
    base = [rv.MachineCue(c["index"], c["start"], c["end"], c["text"]) for c in (record or {}).get("cues", [])]
    file = find_review(folder, name, base) if folder.is_dir() else None
    if file is None:
        return ReviewState(episode, language, kind, "exported" if record else "machine-only", exported_at=when)
    if not base:
        return ReviewState(episode, language, kind, "reviewed", file=file.path.name, problems=len(file.problems),
                           exported_at=when, edited=len(file.cues))
    out = rv.apply_review(base, file.cues, language=language, duration=0.0, max_cps=1e9)
    return ReviewState(episode, language, kind, "reviewed", edited=len(out.changes),
                       problems=len(out.problems) + len(file.problems), file=file.path.name, exported_at=when)


# --------------------------------------------------------------------------- one episode's export


def export_episode(path: Path, settings, resources, out_dir: Path) -> list[Path]:
    """Review files of one episode for every language of ``settings.markets``.

    The stages up to the translation go through the same store and keys as ``run``, so with
    the run's ``--work`` (and the same options) nothing is recomputed. Everything is made
    before the first file is written; a failure raises (StageError) and writes nothing.
    """
    from locpipe.core.context import as_stage
    from locpipe.core.market import translate_market
    from locpipe.core.names import episode_name
    from locpipe.core.recognition import probe, recognize

    name = episode_name(path, windows=settings.windows_names)
    info = probe(path, settings.work_dir)
    ctx = EpisodeContext(path, name, info.sha256, settings, resources, lambda *_e: None)
    machine_rec = recognize(ctx, info)
    with as_stage("review_source"):
        rec = apply_source_review(ctx, machine_rec)
    files = source_files(ctx, rec, machine_rec.transcript.model)
    by_language: dict[str, list[Market]] = {}
    for market in settings.markets:
        by_language.setdefault(market.config.language, []).append(market)
    for language, markets in by_language.items():
        market, store = markets[0], ArtifactStore(settings.work_dir)
        unit = UnitReport(episode=name, market=market.code)
        with as_stage("translate"):
            machine = translate_market(ctx, rec, market, unit, store)
        with as_stage("review"):
            final = apply_translation_review(ctx, rec, market, machine, unit, store)
        if len(markets) > 1:
            log.info("%s: one %s review file for markets %s (their translations differ only by adaptation)",
                     name, language, ", ".join(m.code for m in markets))
        files.update(translation_files(ctx, rec, market, [m.code for m in markets], machine.model, final.model))
    state: Path | None = _folder(ctx)
    try:
        state.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    except OSError as exc:
        log.warning("%s cannot be written (%s): the export is not recorded for `review status`", state, exc)
        state = None
    return write_files(out_dir, files, state)
