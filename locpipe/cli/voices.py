"""``locpipe voices SERIES_DIR``: show and edit which voice speaks each speaker of a series.

    locpipe voices SERIES_DIR                          # speakers heard, their characters and voices
    locpipe voices SERIES_DIR --set S2=林晓            # speaker S2 is the bible character 林晓
    locpipe voices SERIES_DIR --market us --set 林晓=piper:en_US-joe-medium,pitch=1.3
    locpipe voices SERIES_DIR --market us --set S3=piper:en_US-joe-medium
    locpipe voices SERIES_DIR --unset S2               # S2 is no longer mapped to a character
    locpipe voices SERIES_DIR --episode ep007 --set S3=林晓  # in ep007 only, S3 is 林晓
    locpipe voices SERIES_DIR --json

Without a mapping each episode's speakers are linked to characters from the dialogue itself
(who is addressed by name, who says "我是..."; locpipe.localize.characters) when the evidence
is strong enough; the table shows each link with its confidence, ``--json`` its reasons.

The file edited is SERIES_DIR/.locpipe/voices.yaml (see locpipe.localize.voices); the next
``locpipe run`` of any episode of the series uses it (changed voices re-synthesize only the
dubs they affect).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from locpipe.cli import options
from locpipe.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("voices", help="show and edit the voices per speaker/character of a series")
    p.add_argument("series", type=Path, help="the series folder (its episodes' folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="S2=CHARACTER maps a speaker to a bible character; KEY=BACKEND:VOICE[,pitch=X,length_scale=Y] "
                        "sets the voice of a speaker or character in --market")
    p.add_argument("--unset", action="append", default=[], metavar="KEY",
                   help="remove a speaker's character mapping (and, with --market, the voice of KEY there)")
    p.add_argument("--market", help="market code the voice assignments apply to (e.g. us)")
    p.add_argument("--episode", help="speaker -> character edits apply to this episode only (its file name "
                                     "without extension, e.g. ep007): labels that differ in one episode")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _bible(series: Path, config_dir: Path | None):
    from locpipe.localize.bible import find_bible, load_bible

    path = find_bible(series.resolve(), config_dir)
    return load_bible(path) if path else None


def _market_language(market: str | None, config_dir: Path) -> str | None:
    """The language of ``market`` for checking voices (None without --market); unknown markets fail."""
    if not market:
        return None
    from locpipe.config import load_market

    return load_market(config_dir, market).config.language


def apply_edits(vm, sets: list[str], unsets: list[str], market: str | None, characters: set[str] | None,
                language: str | None = None, episode: str | None = None):
    """The voice map with ``--set``/``--unset`` applied; ConfigError naming the bad argument.

    With the market's ``language`` a voice is checked too: an unknown voice fails listing the
    backend's voices, one speaking another language fails saying which it speaks. With
    ``episode`` speaker -> character edits go to that episode's mapping only.
    """
    from locpipe.localize.voices import cast_key, check_style, parse_style

    episodes = {k: dict(v) for k, v in vm.episodes.items()}
    speakers = episodes.setdefault(episode, {}) if episode else dict(vm.speakers)
    markets = {k: dict(v) for k, v in vm.markets.items()}
    for item in sets:
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not key or not value:
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. S2=林晓 or S2=piper:en_US-joe-medium")
        if ":" in value.split(",")[0]:  # a voice
            if not market:
                raise ConfigError("--set", item, "a voice is set per market: add --market CODE")
            try:
                style = parse_style(value)
            except ValueError as exc:
                raise ConfigError("--set", item, str(exc)) from None
            problem = check_style(style, language) if language else None
            if problem:
                raise ConfigError("--set", item, problem)
            target = cast_key(vm, key, {**vm.speakers, **speakers})
            markets.setdefault(market, {})[target] = style
        else:  # a character
            if characters is not None and value not in characters:
                raise ConfigError("--set", item, f"{value!r} is not a character of the series bible "
                                                 f"(characters: {', '.join(sorted(characters)) or 'none'})")
            speakers[key] = value
    for key in unsets:
        speakers.pop(key, None)
        if market:
            markets.get(market, {}).pop(key, None)
    if episode:
        return vm.model_copy(update={"episodes": {k: v for k, v in episodes.items() if v}, "markets": markets})
    return vm.model_copy(update={"speakers": speakers, "markets": markets})


def character_of(vm, label: str) -> tuple[str, str]:
    """(character, how the table shows it) of a speaker: the series mapping, else its latest link in an episode."""
    if vm.speakers.get(label):
        return vm.speakers[label], vm.speakers[label]
    links = [(ep, rec) for ep, recs in sorted(vm.matched.items()) if (rec := recs.get(label)) and rec.character]
    if not links:
        return "", ""
    ep, rec = links[-1]
    how = "set for the episode" if rec.method == "episode" else f"auto {rec.confidence:.2f}"
    return rec.character, f"{rec.character} ({how}, {ep})"


def run(args) -> int:
    from locpipe.exit_codes import ExitCode
    from locpipe.localize.voices import cast_key, load_voice_map, save_voice_map, series_state_dir, voices_path
    from locpipe.stages.speakers import STORE_FILE, load_store, locked

    series = args.series
    if not series.is_dir():
        raise ConfigError(series, "", "not a folder: pass the series folder (where its episodes are)")
    bible = _bible(series, options.config_dir(args).resolve())
    state = series_state_dir(series.resolve())
    path = voices_path(state)
    if args.set or args.unset:
        with locked(path):
            vm = load_voice_map(path)
            vm = apply_edits(vm, args.set, args.unset, args.market,
                             set(bible.characters) if bible is not None else None,
                             _market_language(args.market, options.config_dir(args).resolve()), args.episode)
            save_voice_map(path, vm)
        log.info("voices saved: %s", path)
    vm = load_voice_map(path)
    store = load_store(state / STORE_FILE)
    matched = {label for recs in vm.matched.values() for label in recs}
    labels = sorted(set(store.speakers) | set(vm.speakers) | matched, key=lambda x: (len(x), x))
    markets = [args.market] if args.market else sorted(vm.markets)
    rows = []
    for label in labels:
        heard = store.speakers.get(label)
        char, shown = character_of(vm, label)
        key = char or cast_key(vm, label)
        rows.append({"speaker": label, "character": shown,
                     "matched": {ep: recs[label].model_dump() for ep, recs in sorted(vm.matched.items())
                                 if label in recs},
                     "seconds": heard.seconds if heard else 0.0, "episodes": len(heard.episodes) if heard else 0,
                     "pitch_hz": heard.pitch_hz if heard else None,
                     "voices": {m: (vm.markets.get(m, {}).get(key).describe() + (" (auto)" if vm.markets[m][key].auto
                                                                                 else ""))
                                if key in vm.markets.get(m, {}) else "" for m in markets}})
    if args.json:
        sys.stdout.write(json.dumps({"file": str(path), "speakers": rows, "voices": vm.model_dump(mode="json")},
                                    indent=1, ensure_ascii=False) + "\n")
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"voices of {series} ({path})")
    for col in ("speaker", "character", "heard", "pitch", *markets):
        table.add_column(col)
    for r in rows:
        table.add_row(r["speaker"], r["character"], f"{r['seconds']:.0f} s in {r['episodes']} ep.",
                      f"{r['pitch_hz']:.0f} Hz" if r["pitch_hz"] else "", *[r["voices"][m] for m in markets])
    console = Console() if Console().is_terminal else Console(width=200)
    console.print(table)
    return ExitCode.OK
