"""Which bible character each diarized speaker is: explicit mappings first, then the dialogue's own evidence.

The speakers stage knows voices (S1, S2, ...), the series bible knows people (林晓, female;
陆总, male, the CEO). Casting by a pitch guess alone goes wrong whenever a voice is not
typical of its gender (the sample's CEO is a female TTS voice lowered to 217 Hz: by pitch,
a woman), so a speaker is linked to a character and cast with the bible's gender and age.

Order of trust, highest first:

1. ``voices.yaml`` ``episodes: {EPISODE: {S3: 林晓}}``: a loc op's fix for one episode
   (``locpipe voices SERIES --episode EPISODE --set S3=林晓``);
2. ``voices.yaml`` ``speakers: {S1: 林晓}``: the series-wide mapping (``--set S1=林晓``);
3. evidence from the episode's own lines, used only above ``threshold`` confidence:

   - addressed by name: "林晓，你被开除了！" (a name opening or closing a line, set off by
     punctuation) says the speaker is not 林晓, and the next other speaker (strongly) and the
     one just before (weakly) likely are;
   - self-reference: "我是林晓" / "我叫林晓" makes the speaker 林晓;
   - a name said in passing ("你姐？林薇？"): the speaker is probably not that person;
   - the bible's gender against the speaker's pitch estimate (weak: a voice's pitch is only
     a hint, the bible is the truth);
   - the same label matched to the character in earlier episodes of the series.

   Speakers and characters are matched one to one, strongest pair first. A pair's
   confidence is ``1 - 0.5 ** margin``, the margin being its score over the best competing
   pair of the same speaker or the same character, so one addressing with its answer
   (score 1.5) gives 0.65 and contradicted evidence gives little.

Everything here is pure: lines in, ``SpeakerMatch`` per speaker out, each with the reasons
a reviewer reads in QC (``dub_cast``) and ``locpipe voices``. ``cue_characters`` gives the
character of every cue, for a translation prompt that should know who speaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

#: default confidence an automatic match needs before casting uses it
DEFAULT_THRESHOLD = 0.6
#: evidence weights (a score of 1 is one clear clue)
W_ANSWERS = 1.0        # the next other speaker after someone addresses X by name
W_SPOKE_BEFORE = 0.5   # the other speaker just before someone addresses X by name
W_ADDRESSES = -1.0     # the speaker addresses X by name: not X
W_MENTIONS = -0.5      # the speaker says X's name in passing: probably not X
W_SELF = 2.0           # "我是X" / "我叫X"
W_GENDER_MATCH = 0.25
W_GENDER_CLASH = -0.5
W_EARLIER = 1.0        # this label was matched to X in an earlier episode
W_ELIMINATED = 0.5     # X is addressed in the episode and every other speaker is ruled out
#: how many cues ahead the addressed person may answer (an interjection between is common)
ANSWER_WINDOW = 2
#: punctuation that sets a name off as a form of address
_SEPARATORS = "，,！!？?、：:…~～ "
_END = "。.！!？?…~～"
_CLOSERS = "\"'”’」』）)"
_LEAD = re.compile(r"^[\s\"'“‘「『（(]*(?:(?:喂|哎|嘿|唉|哦|啊|诶|欸|呃|好|hey|hi)[\s，,！!、]*)?", re.IGNORECASE)
_SELF = re.compile(r"(?:我是|我叫|我就是|我乃|在下|本人)\s*$")
_NOT_AFTER_SELF = "的之家"

Method = Literal["episode", "series", "auto", "none"]


@dataclass(frozen=True)
class CharacterFacts:
    """What matching needs of one bible character: its key, the forms heard, its gender."""

    name: str
    #: the Chinese forms said in dialogue: the bible key and its aliases
    forms: tuple[str, ...]
    gender: str = "unknown"


@dataclass(frozen=True)
class Line:
    """One source cue: who speaks it (diarized label) and what is said (source language)."""

    index: int
    speaker: str
    text: str


@dataclass(frozen=True)
class Clue:
    speaker: str
    character: str
    weight: float
    reason: str


@dataclass(frozen=True)
class SpeakerMatch:
    """The character a speaker label is in one episode, how sure, and why."""

    speaker: str
    character: str | None
    confidence: float
    method: Method
    reasons: tuple[str, ...] = ()
    #: the best automatic candidate when it stayed below the threshold (for QC)
    rejected: str | None = None

    def describe(self) -> str:
        """One line for QC and the voices CLI: "S2 is 陆总 (auto 0.75: ...)"."""
        why = "; ".join(self.reasons)
        if self.character is None:
            guess = f" (best guess {self.rejected} at {self.confidence:.2f}, below the threshold" + \
                    (f": {why})" if why else ")") if self.rejected else ""
            return f"{self.speaker}: no character{guess}; cast by pitch"
        if self.method == "auto":
            return f"{self.speaker} is {self.character} (auto, confidence {self.confidence:.2f}: {why})"
        where = "this episode's mapping" if self.method == "episode" else "the series mapping"
        return f"{self.speaker} is {self.character} ({where} in voices.yaml)"


@dataclass(frozen=True)
class Mention:
    character: str
    start: int
    end: int
    kind: Literal["address", "self", "mention"]


@dataclass
class _Scores:
    total: dict[tuple[str, str], float] = field(default_factory=dict)
    reasons: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    supported: set[tuple[str, str]] = field(default_factory=set)

    def add(self, clue: Clue, textual: bool = True) -> None:
        key = (clue.speaker, clue.character)
        self.total[key] = self.total.get(key, 0.0) + clue.weight
        self.reasons.setdefault(key, []).append(f"{clue.reason} ({clue.weight:+g})")
        if textual and clue.weight > 0:
            self.supported.add(key)


# --------------------------------------------------------------------------- finding names


def facts_from_bible(bible) -> list[CharacterFacts]:
    """The bible's characters as CharacterFacts (empty without a bible)."""
    if bible is None:
        return []
    return [CharacterFacts(name, tuple(dict.fromkeys([name, *char.aliases])), char.gender)
            for name, char in bible.characters.items()]


def find_mentions(text: str, characters: Iterable[CharacterFacts]) -> list[Mention]:
    """Every character name in ``text``, longest form first (陆总裁 before 陆总), each classified.

    "address": the name opens the line (after an interjection like 喂) or closes it, set off
    by punctuation; "self": after 我是/我叫 and not followed by 的 (我是林晓的姐姐 is not
    林晓); "mention": anything else.
    """
    forms = sorted(((form, c.name) for c in characters for form in c.forms if form), key=lambda f: -len(f[0]))
    taken = [False] * len(text)
    found: list[Mention] = []
    for form, name in forms:
        for m in re.finditer(re.escape(form), text):
            if any(taken[m.start():m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append(Mention(name, m.start(), m.end(), _kind(text, m.start(), m.end())))
    return sorted(found, key=lambda x: x.start)


def _kind(text: str, start: int, end: int) -> Literal["address", "self", "mention"]:
    after = text[end:end + 1]
    if _SELF.search(text[:start]) and after not in tuple(_NOT_AFTER_SELF):
        return "self"
    lead = _LEAD.match(text)
    opens = start == (lead.end() if lead else 0)
    if opens and (after == "" or after in _SEPARATORS):
        return "address"
    before = text[:start].rstrip()
    closes = all(ch in _END or ch in _CLOSERS or ch.isspace() for ch in text[end:])
    if closes and before and before[-1] in "，,、":
        return "address"
    return "mention"


# --------------------------------------------------------------------------- evidence


def clues(lines: list[Line], characters: list[CharacterFacts]) -> list[Clue]:
    """What the dialogue says about who is who (see the module docstring), in line order."""
    out: list[Clue] = []
    for pos, line in enumerate(lines):
        for m in find_mentions(line.text, characters):
            if m.kind == "self":
                out.append(Clue(line.speaker, m.character, W_SELF, f"says \"{line.text.strip()}\" (cue {line.index})"))
                continue
            if m.kind == "mention":
                out.append(Clue(line.speaker, m.character, W_MENTIONS, f"names {m.character} in passing (cue "
                                                                       f"{line.index})"))
                continue
            out.append(Clue(line.speaker, m.character, W_ADDRESSES, f"addresses {m.character} (cue {line.index})"))
            answer = next((ln for ln in lines[pos + 1:pos + 1 + ANSWER_WINDOW] if ln.speaker != line.speaker), None)
            if answer is not None:
                out.append(Clue(answer.speaker, m.character, W_ANSWERS,
                                f"answers {line.speaker}'s \"{line.text.strip()}\" (cue {answer.index})"))
            before = lines[pos - 1] if pos > 0 else None
            if before is not None and before.speaker != line.speaker:
                out.append(Clue(before.speaker, m.character, W_SPOKE_BEFORE,
                                f"spoke just before {line.speaker} addressed {m.character} (cue {before.index})"))
    return out


def gender_clue(speaker: str, pitch_gender: str, pitch_hz: float | None, char: CharacterFacts) -> Clue | None:
    """The bible's gender against the speaker's pitch guess; None when either is unknown."""
    if pitch_gender not in ("male", "female") or char.gender not in ("male", "female"):
        return None
    heard = f"pitch {pitch_hz:.0f} Hz" if pitch_hz else "pitch"
    if pitch_gender == char.gender:
        return Clue(speaker, char.name, W_GENDER_MATCH, f"{heard} reads {pitch_gender}, as the bible's {char.name}")
    return Clue(speaker, char.name, W_GENDER_CLASH, f"{heard} reads {pitch_gender}, the bible says {char.gender}")


# --------------------------------------------------------------------------- matching


def _evidence(lines: list[Line], characters: list[CharacterFacts], speakers: Mapping[str, tuple[str, float | None]],
              earlier: Mapping[str, str]) -> _Scores:
    """Scores of (speaker, character) pairs still open: the dialogue's clues, earlier links, then gender."""
    names = {c.name for c in characters}
    scores = _Scores()
    for clue in clues(lines, characters):
        if clue.speaker in speakers:
            scores.add(clue)
    for label, name in earlier.items():
        if label in speakers and name in names:
            scores.add(Clue(label, name, W_EARLIER, f"was {name} in an earlier episode"))
    for label, (gender, hz) in speakers.items():
        for char in characters:
            if (label, char.name) in scores.supported and (pitch := gender_clue(label, gender, hz, char)):
                scores.add(pitch, textual=False)
    return scores


def confidence(margin: float) -> float:
    """A score margin as a 0-1 confidence: 1 clue 0.5, 1.5 clues 0.65, 2 clues 0.75."""
    return 0.0 if margin <= 0 else round(1.0 - 0.5 ** margin, 3)


def match_speakers(lines: list[Line], characters: list[CharacterFacts],
                   speakers: Mapping[str, tuple[str, float | None]], *, series: Mapping[str, str] | None = None,
                   episode: Mapping[str, str] | None = None, earlier: Mapping[str, str] | None = None,
                   threshold: float = DEFAULT_THRESHOLD) -> dict[str, SpeakerMatch]:
    """The character of every speaker of an episode (``SpeakerMatch.character`` None: unknown).

    ``speakers``: label -> (gender guessed from pitch, pitch Hz or None); ``series`` and
    ``episode``: the explicit mappings of voices.yaml (episode wins); ``earlier``: label ->
    character matched automatically in earlier episodes (one more clue, not enough alone).
    Explicit characters are taken first and are not given to another speaker of the episode.
    """
    out: dict[str, SpeakerMatch] = {}
    for label in speakers:
        for method, table in (("episode", episode or {}), ("series", series or {})):
            if table.get(label):
                out[label] = SpeakerMatch(label, table[label], 1.0, method)  # type: ignore[arg-type]
                break
    taken = {m.character for m in out.values()}
    free_labels = [s for s in speakers if s not in out]
    free_chars = [c for c in characters if c.name not in taken]
    scores = _evidence(lines, free_chars, {s: speakers[s] for s in free_labels}, earlier or {})
    pairs = {k: v for k, v in scores.total.items() if k in scores.supported}
    best_guess: dict[str, tuple[str, float]] = {}
    while pairs:
        (label, char), score = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if score <= 0:
            break
        others = [sp for sp in speakers if sp != label]
        ruled_out = [sp for sp in others if scores.total.get((sp, char), 0.0) < 0]
        if others and all(sp not in free_labels or sp in ruled_out for sp in others) and ruled_out and \
                not any("every other speaker" in r for r in scores.reasons[(label, char)]):
            scores.add(Clue(label, char, W_ELIMINATED, f"every other speaker is ruled out as {char} "
                                                       f"({', '.join(sorted(ruled_out))} speak to or of them)"),
                       textual=False)
            score = pairs[(label, char)] = scores.total[(label, char)]
        rivals = [v for (sp, ch), v in scores.total.items() if (sp == label) != (ch == char)
                  and (sp in free_labels and ch not in taken)]
        conf = confidence(score - max([0.0, *rivals]))
        if conf >= threshold:
            out[label] = SpeakerMatch(label, char, conf, "auto", tuple(scores.reasons[(label, char)]))
            taken.add(char)
            free_labels.remove(label)
            pairs = {k: v for k, v in pairs.items() if k[0] != label and k[1] != char}
        else:
            best_guess.setdefault(label, (char, conf))
            pairs.pop((label, char))
    for label in speakers:
        if label not in out:
            guess = best_guess.get(label)
            out[label] = SpeakerMatch(label, None, guess[1] if guess else 0.0, "none",
                                      tuple(scores.reasons.get((label, guess[0]), ())) if guess else (),
                                      rejected=guess[0] if guess else None)
    return out


def lines_of(transcript) -> list[Line]:
    """The labelled cues of a Transcript (``cue.speaker`` set by the speakers stage) as Lines."""
    return [Line(c.index, c.speaker, c.text) for c in sorted(transcript.cues, key=lambda c: c.start) if c.speaker]


def cue_characters(cue_speakers: Mapping[int, str], matches: Mapping[str, SpeakerMatch]) -> dict[int, str]:
    """Cue index -> character name for every cue whose speaker is matched (for a translation prompt)."""
    return {i: m.character for i, label in cue_speakers.items()
            if (m := matches.get(label)) is not None and m.character}
