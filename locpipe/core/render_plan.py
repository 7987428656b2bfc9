"""The render of an episode's markets: one decode for every export, then each market adopts its output.

``plan_render`` says what a market's export depends on (the render stage's key parts).
``shared_render`` renders every market whose export is not cached in one ffmpeg run
(``locpipe.render.encode.run_shared``); each market's render stage then adopts its output
from the scratch folder, so the cache stays per market. If the shared run fails, each
market renders on its own in its stage: one market's bad font never costs another its export.
With several distributors a market's render is an A/B base (``locpipe.render.ab``) and each
distributor's copy is assembled from it.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from locpipe.artifacts import ABBase, RenderResult
from locpipe.core.context import EpisodeContext, as_stage, describe
from locpipe.core.market import MarketPlan
from locpipe.core.recognition import Recognition
from locpipe.core.store import ArtifactStore, StageRecord, Stored
from locpipe.render import ab, encode
from locpipe.render.mask import MASK_VERSION, place_subtitles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderPlan:
    """A market ready to render: its artifacts and the render stage's key parts."""

    plan: MarketPlan
    export_id: str
    parts: dict

    @property
    def ab(self) -> bool:
        """Several distributors: the render is an A/B base, copies are assembled per distributor."""
        return "ab" in self.parts

    @property
    def stage(self) -> str:
        return "render_ab" if self.ab else "render"

    @property
    def code(self) -> str:
        return self.plan.market.code


@dataclass(frozen=True)
class Prerendered:
    """A market's output of the shared run, waiting in ``folder`` to be adopted by its stage."""

    folder: Path
    result: RenderResult | ABBase


def plan_render(ctx: EpisodeContext, rec: Recognition, plan: MarketPlan, export_id: str) -> RenderPlan:
    """What a market's export depends on: the render stage's key parts."""
    c = plan.market.config
    parts: dict[str, object] = {
        "source": rec.info.sha256, "segment": plan.track.key, "mix": plan.mix.key,
        "profile": plan.market.profile.model_dump(), "style": c.subtitles.model_dump(),
        "watermark": c.watermark.model_dump(), "distributor": ctx.settings.distributor,
        "export_id": export_id, "source_subs": rec.source_subs_key,
        "source_mask": [MASK_VERSION, c.source_subtitles.model_dump()]}
    if len(ctx.settings.distributors) > 1:  # A/B base: the same for every distributor
        from locpipe.watermark.ab import AB_VERSION

        del parts["distributor"], parts["export_id"]
        parts["ab"] = AB_VERSION
    forensic = ctx.forensic(plan.market, ctx.own_distributor)
    if forensic:  # a new key or ledger means a new payload: render again
        from locpipe.watermark.forensic import FORENSIC_VERSION
        from locpipe.watermark.keys import key_fingerprint

        parts["forensic"] = {"v": FORENSIC_VERSION, "key": key_fingerprint(forensic.key),
                             "ledger": str(forensic.ledger)}
    return RenderPlan(plan=plan, export_id=export_id, parts=parts)


def render_version() -> str:
    from locpipe.media.ffmpeg import ffmpeg_version

    return f"ffmpeg {ffmpeg_version()}"


def export_job(ctx: EpisodeContext, rp: RenderPlan, out_dir: Path) -> encode.ExportJob:
    p = rp.plan
    forensic = ctx.forensic(p.market, ctx.own_distributor)
    return encode.ExportJob(p.market, p.mix.file(p.mix.model.wav), p.track.model, p.track.dir, ctx.name,
                            ctx.settings.distributor, rp.export_id, out_dir, forensic)


def base_job(ctx: EpisodeContext, rp: RenderPlan, out_dir: Path) -> ab.BaseJob:
    p = rp.plan
    return ab.BaseJob(p.market, p.mix.file(p.mix.model.wav), p.track.model, ctx.name, out_dir,
                      ctx.forensic(p.market))


@contextmanager
def shared_render(ctx: EpisodeContext, rec: Recognition, plans: list[RenderPlan]) -> Iterator[dict[str, Prerendered]]:
    """Render every due market from one decode; yields market code -> its output. The scratch
    folder (and whatever no stage adopted) is removed when the block ends."""
    due = [rp for rp in plans if not ctx.has(rp.stage, rp.parts)]
    scratch = ctx.settings.work_dir / ctx.scope / "render" / f".shared.{os.getpid()}.tmp"
    try:
        yield _run_shared(ctx, rec, due, scratch) if len(due) >= 2 else {}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_shared(ctx: EpisodeContext, rec: Recognition, due: list[RenderPlan], scratch: Path) -> dict[str, Prerendered]:
    for rp in due:
        ctx.progress(ctx.name, rp.code, rp.stage, "start")
    folders = [scratch / rp.code for rp in due]
    makers: list[Callable[[], encode.Prepared]] = [
        functools.partial(_prepare_task, ctx, rec, rp, d) for rp, d in zip(due, folders)
    ]
    started = time.perf_counter()
    try:
        tasks = encode.prepare_all(makers)
        results = encode.run_shared(rec.info, tasks, source_subs=rec.onscreen)
    except Exception as exc:
        log.warning("%s: shared render of %s failed (%s); rendering each market on its own", ctx.name,
                    ", ".join(rp.code for rp in due), describe(exc))
        return {}
    # the markets' render stages only adopt these outputs: the run's own time goes on record here
    ctx.store.records.append(StageRecord("render_shared", "+".join(rp.code for rp in due), False,
                                         time.perf_counter() - started))
    return {rp.code: Prerendered(folder, result) for rp, folder, result in zip(due, folders, results)}


def placed(rec: Recognition, rp: RenderPlan) -> RenderPlan:
    """``rp`` with its market's subtitles moved onto the source's subtitle band (style
    ``position: source-band``; see locpipe.render.mask.place_subtitles)."""
    market = place_subtitles(rp.plan.market, rec.onscreen, rec.info)
    return rp if market is rp.plan.market else replace(rp, plan=replace(rp.plan, market=market))


def _prepare_task(ctx: EpisodeContext, rec: Recognition, rp: RenderPlan, out_dir: Path) -> encode.Prepared:
    """A market's task in the shared run: its A/B base, or its one export."""
    rp = placed(rec, rp)
    if rp.ab:
        return ab.prepare_base(rec.info, base_job(ctx, rp, out_dir))
    return encode.prepare_export(rec.info, export_job(ctx, rp, out_dir))


def _adopt(pre: Prerendered, d: Path):
    """Move a market's output of the shared render into its stage folder."""
    for item in pre.folder.iterdir():
        os.replace(item, d / item.name)
    return pre.result


def render_market(ctx: EpisodeContext, rec: Recognition, rp: RenderPlan, pre: Prerendered | None) -> Stored:
    """The market's render stage (its export, or with several distributors its A/B base):
    adopt the shared render's output, else render the same task alone."""
    def make(d: Path):
        if pre:
            return _adopt(pre, d)
        return encode.run_shared(rec.info, [_prepare_task(ctx, rec, rp, d)], source_subs=rec.onscreen)[0]

    stored = ctx.stage(rp.code, rp.stage, rp.parts, ABBase if rp.ab else RenderResult, make, rp.plan.store)
    _finalize_payload(ctx, rp, stored.model)
    return stored


def _finalize_payload(ctx: EpisodeContext, rp: RenderPlan, result: object) -> None:
    """The render is complete (made or cached): its forensic payload is final in the ledger.
    Until then it is pending, so a render killed mid-way leaves a payload the next issue of
    the same export takes over (or the ledger voids), never a second serial beside it."""
    hex_ = (result.batch_payload if isinstance(result, ABBase)
            else result.forensic_payload if isinstance(result, RenderResult) else "")
    forensic = ctx.forensic(rp.plan.market, None if rp.ab else ctx.own_distributor)
    if not hex_ or forensic is None:
        return
    from locpipe.watermark.ledger import Ledger
    from locpipe.watermark.payload import Payload

    with as_stage(rp.stage):
        Ledger(forensic.ledger).finalize(Payload.from_hex(hex_))


def assemble_copy(ctx: EpisodeContext, rec: Recognition, rp: RenderPlan, base: Stored[ABBase], distributor: str,
                  export_id: str, store: ArtifactStore) -> Stored[RenderResult]:
    """One distributor's copy of an A/B market: its windows rendered, the rest stream-copied."""
    p = placed(rec, rp).plan
    parts = {"base": base.key, "distributor": distributor, "export_id": export_id, "segment": p.track.key,
             "windows": p.market.config.watermark.model_dump()}
    job = ab.DistributorJob(p.market, base.model, base.dir, p.track.model, p.track.dir, ctx.name, distributor,
                            export_id, Path(), ctx.forensic(p.market, distributor))
    return ctx.stage(rp.code, "render", parts, RenderResult,
                     lambda d: ab.assemble(rec.info, replace(job, out_dir=d), source_subs=rec.onscreen), store)


__all__ = ["RenderPlan", "Prerendered", "plan_render", "shared_render", "render_market", "assemble_copy",
           "render_version"]
