"""``locpipe review export|status``: files for a linguist's pass, and where each episode stands.

``export`` writes per episode and language an SRT (the translation as cue text), a TSV
(source, speaker, machine text, QC flags) and the same for the Chinese transcript; the
edited files dropped into SERIES_DIR/.locpipe/review/ (or ``--review DIR``) are the final
word of the next ``run``/``watch``/farm unit. ``status`` lists machine-only, exported and
reviewed episodes. The work is in ``locpipe.core.review``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from locpipe.cli import options
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("review", help="review files for a linguist, and the review state of a series")
    actions = p.add_subparsers(dest="review_command", required=True)
    ex = actions.add_parser("export", help="write editable review files (SRT + TSV) per episode and language")
    options.add_run_options(ex)
    ex.description = ("Use the same options (and --work) as the `locpipe run` whose cache to reuse; --out is the "
                      "folder the review files go to. Drop edited files into SERIES_DIR/.locpipe/review/ "
                      "(or pass --review DIR to run/watch/farm).")
    st = actions.add_parser("status", help="machine-only / exported / reviewed, per episode and language")
    st.add_argument("series", type=Path, help="series folder")
    st.add_argument("--markets", help="comma-separated market codes (default: the languages found in the review "
                                      "folder)")
    st.add_argument("--review", type=Path, help="review folder (default SERIES_DIR/.locpipe/review/)")
    st.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    return _export(args) if args.review_command == "export" else _status(args)


def _export(args) -> int:
    """Every episode's review files; one failing episode never stops the others."""
    from locpipe.core.batch import check_unique_names, discover_episodes
    from locpipe.core.context import describe
    from locpipe.core.resources import Resources
    from locpipe.core.review import export_episode

    settings = options.run_settings(args)
    episodes = discover_episodes(args.inputs)
    if not episodes:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    check_unique_names(episodes, windows=settings.windows_names)
    resources, failed = Resources(), 0
    for path in episodes:
        try:
            written = export_episode(path, settings, resources, settings.out_dir)
        except Exception as exc:  # a bad episode is reported; the others are exported
            failed += 1
            log.error("%s: review export failed: %s", path, describe(exc))
            continue
        for f in written:
            print(f)
    return ExitCode.UNITS_FAILED if failed else ExitCode.OK


def _languages(args, folder: Path) -> list[str]:
    if args.markets:
        from locpipe.config import load_markets

        return list(dict.fromkeys(m.config.language for m in load_markets(options.config_dir(args),
                                                                          args.markets.split(","))))
    found = {p.name.rsplit(".", 2)[-2] for p in (folder / "exported").glob("*.json")} if folder.is_dir() else set()
    return sorted(found)


def _status(args) -> int:
    from locpipe.core.batch import discover_episodes
    from locpipe.core.names import episode_name
    from locpipe.core.review import review_folder, review_state

    folder = review_folder(args.series.resolve(), args.review)
    languages = [lang for lang in _languages(args, folder) if lang != "zh"]
    rows = []
    for path in discover_episodes([args.series]):
        name = episode_name(path)
        rows.append(review_state(folder, name, "zh", source=True))
        rows += [review_state(folder, name, lang) for lang in languages]
    if args.json:
        sys.stdout.write(json.dumps([r.__dict__ for r in rows], indent=1, ensure_ascii=False) + "\n")
        return ExitCode.OK
    print(f"review folder: {folder}")
    print(f"{'episode':<24} {'language':<10} {'kind':<12} {'state':<13} {'edited':>6} {'problems':>8}  file")
    for r in rows:
        print(f"{r.episode:<24} {r.language:<10} {r.kind:<12} {r.state:<13} {r.edited:>6} {r.problems:>8}  {r.file}")
    return ExitCode.OK
