"""Render farm: ``locpipe farm submit | worker | status`` on Celery with Redis.

A unit is (episode, market, distributor, config hash). ``submit`` plans the units of a
series (``units``) and enqueues, per episode, the chain asr(episode) -> [tts(unit) ->
render(unit)] for every market (``app``): GPU nodes take the ``asr`` queue, CPU nodes
``tts`` and ``render``. Workers run the ordinary pipeline with the stage cache on a shared
work dir, so each phase resumes where the last one ended, on whichever machine.

Why this shape: Celery gives at-least-once delivery (late acks, retries with back-off; a
dead worker's units come back through its expired lease, ``lease``); the farm makes the
effect exactly once on the shared path (``phases``, ``state``): a per-unit lock, a no-op
for a unit whose outputs and record
are complete, exports written temp-then-rename under deterministic names, and one record
per unit as the commit point, from which ``manifest.json`` is merged.

Nothing here imports Celery at package import: ``locpipe run`` needs no ``farm`` extra.
"""
