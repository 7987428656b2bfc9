"""Speaker labels (real Resemblyzer embeddings on real audio) and persistent voices per character."""

from __future__ import annotations

import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLE, SAMPLE_SCRIPT

from locpipe.artifacts import Cue, DubTrack, SpeakerLabels, Transcript, TranslatedCue, Translation
from locpipe.backends.speaker import resemblyzer_encoder as enc
from locpipe.cli import main
from locpipe.config import DubConfig, Market, MarketConfig, RenderProfile
from locpipe.localize.voices import (
    VoiceMap,
    VoiceStyle,
    cast_market,
    load_voice_map,
    resolve_casting,
    series_state_dir,
    speak,
    voices_path,
)
from locpipe.media import audio
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.metrics import label_accuracy
from locpipe.stages import speakers as sp

VOICE = "piper:en_US-joe-medium"
SCRIPT = json.loads(SAMPLE_SCRIPT.read_text(encoding="utf-8"))["lines"]


def _write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("resemblyzer")
    return enc.load_encoder()


@pytest.fixture(scope="module")
def sample_audio(tmp_path_factory) -> np.ndarray:
    wav = tmp_path_factory.mktemp("audio") / "ep001.wav"
    run_ffmpeg(["-i", str(SAMPLE), "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(wav)])
    return audio.read_wav_16k(wav)


# --------------------------------------------------------------------------- pure decisions


def test_agglomerate_groups_by_similarity_and_numbers_by_first_appearance():
    rng = np.random.default_rng(0)
    a, b = sp._unit(rng.random(16)), sp._unit(rng.random(16) - 0.5)
    noisy = [sp._unit(v + 0.05 * rng.standard_normal(16)) for v in (b, a, b, a, a, b)]
    assert sp.agglomerate(np.array(noisy), 0.7) == [0, 1, 0, 1, 1, 0]
    assert sp.agglomerate(np.array(noisy), 1.01) == [0, 1, 2, 3, 4, 5]  # nothing is that similar
    assert sp.agglomerate(np.zeros((0, 16)), 0.7) == []


def test_clusters_match_stored_speakers_one_to_one_and_new_voices_get_new_labels():
    store = sp.SpeakerStore(speakers={"S1": sp.StoredSpeaker(centroid=[1, 0, 0]),
                                      "S2": sp.StoredSpeaker(centroid=[0, 1, 0])})
    cents = np.array([[0, 0.99, 0.1], [0, 0, 1], [0.98, 0.2, 0]])
    matched = sp.match_clusters(cents / np.linalg.norm(cents, axis=1, keepdims=True), store, 0.72)
    assert [label for label, _ in matched] == ["S2", "S3", "S1"]
    assert matched[1][1] is None and matched[0][1] > 0.9


def test_short_cues_take_the_nearest_embedded_label():
    cues = sp.assign_labels([(0, 0.0, 2.0), (1, 2.1, 2.4), (2, 5.0, 7.0)], {0: "S1", 2: "S2"})
    assert [(c.speaker, c.method) for c in cues] == [("S1", "embedded"), ("S1", "nearest"), ("S2", "embedded")]


def test_pitch_estimate_tells_a_low_voice_from_a_high_one():
    t = np.arange(16000) / 16000
    low = sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 6))
    high = sum(np.sin(2 * np.pi * 240 * k * t) / k for k in range(1, 6))
    assert abs(sp.estimate_pitch(low * 0.2) - 110) < 5 and abs(sp.estimate_pitch(high * 0.2) - 240) < 10
    assert sp.gender_from_pitch(110) == "male" and sp.gender_from_pitch(240) == "female"
    assert sp.estimate_pitch(np.zeros(16000)) is None


# --------------------------------------------------------------------------- real embeddings


def test_transcribe_json_labels_the_sample_episodes_two_speakers(encoder, tmp_path):
    """`locpipe transcribe` on the sample (its script as a sidecar): speakers as in the script."""
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(SAMPLE, series / "ep001.mp4")
    shutil.copy(ROOT / "samples" / "reference" / "ep001.zh.srt", series / "ep001.zh.srt")
    out = tmp_path / "ep001.json"
    assert main(["transcribe", str(series / "ep001.mp4"), "--no-ocr", "--json", str(out),
                 "--work", str(tmp_path / "work")]) == 0
    cues = json.loads(out.read_text(encoding="utf-8"))["cues"]
    predicted = [c["speaker"] for c in cues]
    assert len(cues) == len(SCRIPT) and set(predicted) == {"S1", "S2"}
    assert label_accuracy(predicted, [line["speaker"] for line in SCRIPT]) >= 12 / 13
    store = sp.load_store(series_state_dir(series) / sp.STORE_FILE)
    assert sorted(store.speakers) == ["S1", "S2"] and store.speakers["S1"].episodes == ["ep001"]


def _episode(audio: np.ndarray, lines: list[dict], path: Path) -> tuple[Transcript, Path]:
    """A new 'episode': the given script lines cut from the sample, 0.5 s apart."""
    parts, cues, t = [], [], 0.0
    for i, line in enumerate(lines):
        seg = audio[int(line["start"] * 16000):int(line["end"] * 16000)]
        parts += [seg, np.zeros(8000, dtype=np.float32)]
        cues.append(Cue(index=i, start=round(t, 3), end=round(t + seg.size / 16000, 3), text=line["text"]))
        t += seg.size / 16000 + 0.5
    return Transcript(cues=cues, backend="test", model="test"), _write_wav(path, np.concatenate(parts))


def test_a_later_episode_gets_the_same_labels_from_the_series_store(encoder, sample_audio, tmp_path):
    """Episode 1 opens with B (-> S1); episode 2 opens with A, who must stay S2, not become S1."""
    store = tmp_path / "state" / sp.STORE_FILE
    tr1, wav1 = _episode(sample_audio, SCRIPT[:7], tmp_path / "e1.wav")
    tr2, wav2 = _episode(sample_audio, SCRIPT[7:], tmp_path / "e2.wav")
    assert SCRIPT[0]["speaker"] == "B" and SCRIPT[7]["speaker"] == "A"
    first = sp.label_speakers(tr1, wav1, store, "e1", encoder=encoder)
    second = sp.label_speakers(tr2, wav2, store, "e2", encoder=encoder)
    names = {"B": "S1", "A": "S2"}
    assert [c.speaker for c in first.cues] == [names[x["speaker"]] for x in SCRIPT[:7]]
    assert [c.speaker for c in second.cues] == [names[x["speaker"]] for x in SCRIPT[7:]]
    assert all(s.matched is not None and s.matched >= 0.72 for s in second.speakers)
    saved = sp.load_store(store)
    assert sorted(saved.speakers) == ["S1", "S2"] and saved.speakers["S2"].episodes == ["e1", "e2"]
    # on its own (no series store) episode 2 would have called A "S1": the store is what keeps it
    alone = sp.label_speakers(tr2, wav2, None, "e2", encoder=encoder)
    assert alone.cues[0].speaker == "S1"


def test_automatic_voices_sound_like_different_people_to_the_speaker_model(encoder):
    """Two auto-cast voices from the one packaged Piper voice: the embeddings cluster apart."""
    casting, _ = resolve_casting(VoiceMap(), [("S1", "male"), ("S2", "female")], "us",
                                 [(VOICE, "male")], {}, {}, piper=True)
    assert casting["S1"].sound() != casting["S2"].sound()
    lines = ["Where were you last night?", "I checked every single page of that contract.",
             "Give me three days and I will find the truth."]
    backends: dict = {}
    prints, truth = [], []
    for label in ("S1", "S2"):
        for text in lines:
            prints.append(encoder.embed_utterance(enc.preprocess(speak(casting[label], text, 16000, backends))))
            truth.append(label)
    ids = sp.agglomerate(np.array(prints), sp.SpeakerOptions().cluster_threshold)
    assert label_accuracy([f"c{i}" for i in ids], truth) == 1.0 and len(set(ids)) == 2


# --------------------------------------------------------------------------- fallback


def test_without_resemblyzer_every_cue_is_s1_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # import now raises ImportError
    tr = Transcript(cues=[Cue(index=0, start=0, end=2, text="a"), Cue(index=1, start=3, end=4, text="b")],
                    backend="t", model="t")
    labels = sp.label_speakers(tr, tmp_path / "never-read.wav", tmp_path / "speakers.json", "e1")
    assert not labels.available and [c.speaker for c in labels.cues] == ["S1", "S1"]
    assert "locpipe[speakers]" in labels.notes[0] and not (tmp_path / "speakers.json").exists()
    from locpipe.artifacts import QCReport
    from locpipe.stages.qc import speaker_check, with_checks

    report = with_checks(QCReport(episode="e1", market="us", passed=True), [speaker_check(labels)])
    check = report.checks[-1]
    assert report.passed
    assert check.name == "speaker_labels" and check.passed and "Resemblyzer" in check.detail
    assert [c.speaker for c in sp.apply_labels(tr, labels).cues] == ["S1", "S1"]


def test_episode_goes_on_when_speaker_labelling_breaks(monkeypatch, tmp_path):
    """Pipeline level: a failing (or missing) speaker model leaves S1 everywhere, never an error."""
    from locpipe.artifacts import IngestResult, MediaInfo
    from locpipe.core.context import EpisodeContext
    from locpipe.core.market import casting
    from locpipe.core.recognition import Recognition, label_speakers
    from locpipe.core.resources import Resources
    from locpipe.core.settings import RunSettings
    from locpipe.core.store import Stored

    def broken(*_a, **_k):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(sp, "label_speakers", broken)
    (tmp_path / "series").mkdir()
    ctx = EpisodeContext(tmp_path / "series" / "ep.mp4", "ep", "0" * 64,
                         RunSettings(out_dir=tmp_path, work_dir=tmp_path / "w", markets=()), Resources(),
                         lambda *a: None)
    info = MediaInfo(path="ep.mp4", sha256="0" * 64, size=1, duration=5, width=9, height=16, display_width=9,
                     display_height=16, fps=30)
    tr = Transcript(cues=[Cue(index=0, start=0, end=2, text="a"), Cue(index=1, start=3, end=4, text="b")],
                    backend="t", model="t")
    ing = Stored(IngestResult(info=info), tmp_path, "k")
    labels, key = label_speakers(ctx, ing, Stored(tr, tmp_path, "k"))
    assert key is None and not labels.available and "encoder exploded" in labels.notes[0]
    assert [c.speaker for c in sp.apply_labels(tr, labels).cues] == ["S1", "S1"]
    rec = Recognition(info=info, ingest=ing, source_subs=None, transcript=Stored(tr, tmp_path, "k"), speakers=labels,
                      speakers_key=key)
    assert casting(ctx, rec, None, VOICE) == ({}, {})  # no labels by voice: the market's voice speaks every line


# --------------------------------------------------------------------------- voices per character


@pytest.fixture
def series(tmp_path) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copy(ROOT / "configs" / "series" / "samples.yaml", folder / "bible.yaml")
    return folder


def _bible(series: Path):
    from locpipe.localize.bible import load_bible

    return load_bible(series / "bible.yaml")


def test_voices_persist_across_episodes_and_new_speakers_get_distinct_ones(series):
    state = series_state_dir(series)
    first = cast_market(state, "us", "en", VOICE, [("S1", "female"), ("S2", "unknown")], _bible(series))
    assert first["S1"].auto and first["S1"].sound() != first["S2"].sound()
    assert first["S1"].pitch > 1.2  # a female speaker on the male Piper voice is raised
    second = cast_market(state, "us", "en", VOICE, [("S2", "unknown"), ("S3", "male")], _bible(series))
    assert second["S2"] == first["S2"]
    assert second["S3"].sound() not in {first["S1"].sound(), first["S2"].sound()}
    saved = load_voice_map(voices_path(state))
    assert set(saved.markets["us"]) == {"S1", "S2", "S3"}


def test_of_two_speakers_the_higher_voice_gets_the_higher_automatic_voice():
    high, low = ("S1", "female", 262.0), ("S2", "female", 219.0)
    for order in ([high, low], [low, high]):  # whoever comes first
        casting, vm = resolve_casting(VoiceMap(), order, "us", [(VOICE, "male")], {}, {}, piper=True)
        assert casting["S1"].pitch > casting["S2"].pitch > 1.1
        assert vm.markets["us"]["S1"] == casting["S1"]


def test_locpipe_voices_maps_speakers_to_characters_and_sets_voices(series, capsys):
    state = series_state_dir(series)
    cast_market(state, "us", "en", VOICE, [("S1", "female"), ("S2", "female")], _bible(series))
    assert main(["voices", str(series), "--set", "S2=陆总"]) == 0
    # 陆总 is male in the bible: S2 is recast as him, with a voice no one else has
    recast = cast_market(state, "us", "en", VOICE, [("S1", "female"), ("S2", "female")], _bible(series))
    assert recast["S2"].pitch < 1.2 and recast["S2"].sound() != recast["S1"].sound()
    assert main(["voices", str(series), "--market", "us", "--set", "陆总=piper:en_US-joe-medium,pitch=0.9"]) == 0
    chosen = cast_market(state, "us", "en", VOICE, [("S2", "female")], _bible(series))["S2"]
    assert chosen == VoiceStyle(voice=VOICE, pitch=0.9)
    capsys.readouterr()
    assert main(["voices", str(series), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["voices"]["speakers"] == {"S2": "陆总"}
    assert shown["voices"]["markets"]["us"]["陆总"]["pitch"] == 0.9
    # mistakes are configuration errors that name the problem, and change nothing
    assert main(["voices", str(series), "--set", "S3=Nobody"]) == 2
    assert main(["voices", str(series), "--set", "S3=piper:en_US-joe-medium"]) == 2
    assert load_voice_map(voices_path(state)).speakers == {"S2": "陆总"}


def test_dub_speaks_each_speaker_in_their_voice(tmp_path):
    from locpipe.backends.tts.base import get_tts_backend
    from locpipe.stages.synthesize import synthesize_dub

    market = Market(config=MarketConfig(code="us-test", name="t", language="en",
                                        dub=DubConfig(enabled=True, voice=VOICE)),
                    profile=RenderProfile(name="app"), source=Path("us-test.yaml"))
    text = "I checked every single page of that contract."
    translation = Translation(language="en", backend="t", cues=[
        TranslatedCue(index=0, start=0.2, end=3.5, source_text="…", text=text),
        TranslatedCue(index=1, start=4.0, end=7.5, source_text="…", text=text)])
    # Piper samples its noise: without it the voice is deterministic and a pitch estimate of
    # one line cannot drift by chance (an unlucky sample once read 137 Hz instead of ~95)
    calm = {"noise_scale": 0.0, "noise_w_scale": 0.0}
    voices = {"S1": VoiceStyle(voice=VOICE, **calm),
              "S2": VoiceStyle(voice=VOICE, pitch=1.32, length_scale=0.94, **calm)}
    dub = synthesize_dub(translation, market, 8.0, tmp_path, get_tts_backend("piper"),
                         speakers={0: "S1", 1: "S2"}, voices=voices)
    assert [(ln.speaker, ln.voice) for ln in dub.lines] == [("S1", voices["S1"].describe()),
                                                            ("S2", voices["S2"].describe())]
    assert dub.voices == {label: style.describe() for label, style in voices.items()}
    with wave.open(str(tmp_path / dub.wav)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    one, two = ([audio[int(ln.placed_start * rate):int(ln.placed_end * rate)] for ln in dub.lines])
    p1, p2 = sp.estimate_pitch(one, rate), sp.estimate_pitch(two, rate)
    assert p2 > 1.2 * p1  # the second speaker is heard ~1.3x higher


def test_series_state_lives_beside_the_series_but_never_in_a_hidden_folder(tmp_path):
    from locpipe.localize.voices import writable_state_dir

    series = tmp_path / "my-series"
    series.mkdir()
    assert writable_state_dir(series, tmp_path / "work") == series / ".locpipe"
    claimed = tmp_path / "inbox" / ".processing"  # a watch daemon's claim folder must stay clean
    claimed.mkdir(parents=True)
    assert writable_state_dir(claimed, tmp_path / "work") == tmp_path / "work" / "series" / "processing"
    assert not any(claimed.iterdir())


def test_labels_artifact_round_trips():
    labels = sp.fallback_labels(Transcript(cues=[Cue(index=0, start=0, end=1, text="x")], backend="t", model="t"),
                                "why")
    assert SpeakerLabels.model_validate_json(labels.model_dump_json()) == labels


# --------------------------------------------------------------------------- speakers -> bible characters


def _facts():
    from locpipe.localize.characters import CharacterFacts

    return [CharacterFacts("苏婉", ("苏婉", "婉婉"), "female"), CharacterFacts("周总", ("周总", "周总裁"), "male"),
            CharacterFacts("王强", ("王强",), "male"), CharacterFacts("老周", ("老周",), "male")]


def _lines(script: list[tuple[str, str]]):
    from locpipe.localize.characters import Line

    return [Line(i, speaker, text) for i, (speaker, text) in enumerate(script)]


#: a generated scene (not the sample): labels numbered as a later episode might give them, the boss's
#: voice high-pitched, a third speaker who is never named
SCENE = [("S4", "周总裁，您找我？"), ("S7", "婉婉，坐。"), ("S4", "谢谢。"), ("S7", "这个项目，你来负责。"),
         ("S9", "我是王强，新来的助理。"), ("S4", "你好。"), ("S7", "王强，带她去看看办公室。"),
         ("S9", "好的，周总。"), ("S4", "周总，明天见。")]


def test_addressing_by_name_and_self_reference_link_speakers_to_characters():
    from locpipe.localize.characters import match_speakers

    heard = {"S4": ("female", 236.0), "S7": ("female", 214.0), "S9": ("male", 128.0)}
    found = match_speakers(_lines(SCENE), _facts(), heard)
    assert {k: m.character for k, m in found.items()} == {"S4": "苏婉", "S7": "周总", "S9": "王强"}
    assert all(m.method == "auto" and m.confidence >= 0.6 for m in found.values())
    boss = found["S7"]
    # the high pitch speaks against a male character but the dialogue outweighs it, and the reasons say so
    assert any("the bible says male" in r for r in boss.reasons)
    assert any("周总裁，您找我？" in r for r in boss.reasons)
    assert "S7 is 周总 (auto, confidence" in boss.describe()
    assert any("我是王强" in r for r in found["S9"].reasons)


def test_names_are_found_longest_form_first_and_classified():
    from locpipe.localize.characters import find_mentions

    facts = _facts()
    kinds = [(m.character, m.kind) for m in find_mentions("周总裁，老周的女儿叫婉婉。", facts)]
    assert kinds == [("周总", "address"), ("老周", "mention"), ("苏婉", "mention")]
    assert [m.kind for m in find_mentions("喂，王强！", facts)] == ["address"]
    assert [m.kind for m in find_mentions("你好啊，苏婉。", facts)] == ["address"]  # closing the line
    assert [m.kind for m in find_mentions("我叫苏婉。", facts)] == ["self"]
    assert [m.kind for m in find_mentions("我是苏婉的妹妹。", facts)] == ["mention"]  # not 苏婉 herself


def test_weak_or_missing_evidence_links_nobody_and_pitch_alone_never_does():
    from locpipe.localize.characters import match_speakers

    heard = {"S1": ("male", 120.0), "S2": ("female", 230.0)}
    quiet = [("S1", "今天天气不错。"), ("S2", "是啊。"), ("S1", "走吧。")]
    found = match_speakers(_lines(quiet), _facts(), heard)
    assert all(m.character is None and m.method == "none" for m in found.values())
    assert found["S1"].describe() == "S1: no character; cast by pitch"
    # one addressing with a reply, a third speaker who might be her too: a hint (0.5), reported, not used
    once = [("S1", "苏婉，过来。"), ("S2", "来了。"), ("S3", "我也去。")]
    three = {"S1": ("unknown", None), "S2": ("unknown", None), "S3": ("unknown", None)}
    hint = match_speakers(_lines(once), _facts(), three)["S2"]
    assert hint.character is None and hint.rejected == "苏婉" and hint.confidence == 0.5
    assert "best guess 苏婉 at 0.50" in hint.describe()
    # the series may trust weaker evidence
    assert match_speakers(_lines(once), _facts(), three, threshold=0.5)["S2"].character == "苏婉"
    # with two speakers the one who addressed her is ruled out: she is the other one
    pair = match_speakers(_lines(once[:2]), _facts(), {"S1": ("unknown", None), "S2": ("unknown", None)})["S2"]
    assert pair.character == "苏婉" and any("ruled out" in r for r in pair.reasons)


def test_explicit_mappings_win_and_their_characters_go_to_no_one_else():
    from locpipe.localize.characters import match_speakers

    heard = {"S4": ("female", 236.0), "S7": ("female", 214.0), "S9": ("male", 128.0)}
    found = match_speakers(_lines(SCENE), _facts(), heard, series={"S9": "老周", "S7": "苏婉"},
                           episode={"S9": "王强"})
    assert (found["S9"].character, found["S9"].method) == ("王强", "episode")  # the episode's fix over the series'
    assert (found["S7"].character, found["S7"].method) == ("苏婉", "series")
    assert found["S4"].character != "苏婉"  # taken by S7 explicitly
    # an earlier episode's link is one more clue: enough with a single addressing
    once = [("S1", "苏婉，过来。"), ("S2", "来了。"), ("S3", "我也去。")]
    three = {"S1": ("unknown", None), "S2": ("unknown", None), "S3": ("unknown", None)}
    assert match_speakers(_lines(once), _facts(), three)["S2"].character is None
    assert match_speakers(_lines(once), _facts(), three, earlier={"S2": "苏婉"})["S2"].character == "苏婉"


def test_a_character_keeps_its_voice_whatever_label_it_has_and_the_bible_gender_decides(tmp_path, monkeypatch):
    """Episode 1: S1 is 林晓, S2 the CEO 陆总 (whose voice pitch reads female); episode 2 diarizes them as
    S5 and S6. The CEO gets a male voice, each character the same voice in both episodes, and QC's notes
    say who was linked to whom and why."""
    import locpipe.localize.voices as lv
    from locpipe.localize.characters import Line
    from locpipe.stages.qc import check_dub_cast

    pool = [lv.as_cast_voice(v) for v in (("kokoro:af_heart", "female"), ("kokoro:af_bella", "female"),
                                          ("kokoro:am_fenrir", "male"), ("kokoro:am_michael", "male"))]
    monkeypatch.setattr(lv, "market_voices", lambda *_a: pool)
    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copy(ROOT / "configs" / "series" / "samples.yaml", folder / "bible.yaml")
    bible, state = _bible(folder), series_state_dir(folder)
    state.mkdir()
    # before any link: cast by pitch alone, both female (what the sample got), kept under the labels
    old = cast_market(state, "us", "en", "kokoro:af_heart", [("S1", "female", 240.0), ("S2", "female", 217.0)])
    assert old["S1"].voice == "kokoro:af_heart" and old["S2"].voice == "kokoro:af_bella"

    def episode(name, lead, boss):
        script = [(lead, "陆总，您找我？"), (boss, "林晓，这份合同是你签的？"), (lead, "是我签的。"),
                  (boss, "公司亏了五百万。"), (lead, "陆总，给我三天时间。"), (boss, "好。")]
        lines = [Line(i, s, t) for i, (s, t) in enumerate(script)]
        people = [(lead, "female", 240.0), (boss, "female", 217.0)]
        return cast_market(state, "us", "en", "kokoro:af_heart", people, bible, episode=name, lines=lines)

    first = episode("ep001", "S1", "S2")
    assert first["S1"].voice == "kokoro:af_heart"  # the lead keeps the voice she had under her label
    assert first["S2"].voice == "kokoro:am_fenrir"  # the CEO is male in the bible: recast, not af_bella
    second = episode("ep002", "S5", "S6")
    assert second["S5"] == first["S1"] and second["S6"] == first["S2"]
    vm = load_voice_map(voices_path(state))
    assert set(vm.markets["us"]) == {"林晓", "陆总"}
    assert vm.matched["ep002"]["S6"].character == "陆总" and vm.matched["ep002"]["S6"].method == "auto"
    notes = lv.market_cast_notes(state, "us", bible, "ep002")
    assert notes[0].startswith("S5 is 林晓 (auto") and notes[1].startswith("S6 is 陆总 (auto")
    dub = DubTrack(language="en", voice="af_heart", backend="kokoro", sample_rate=24000,
                   voices={k: v.describe() for k, v in second.items()}, cast_notes=notes)
    (check,) = check_dub_cast(dub)
    assert check.passed and "S6 is 陆总" in check.detail and "the bible says male" in check.detail
    # the translation side gets each cue's character
    tr = Transcript(cues=[Cue(index=i, start=i, end=i + 0.9, text=t, speaker=s) for i, (s, t) in
                          enumerate([("S5", "陆总，您找我？"), ("S6", "林晓，这份合同是你签的？"), ("S5", "是我签的。"),
                                     ("S6", "好。"), ("S5", "陆总，给我三天时间。")])], backend="t", model="t")
    assert lv.episode_characters(state, "ep002", tr, bible) == {0: "林晓", 1: "陆总", 2: "林晓", 3: "陆总", 4: "林晓"}


def test_locpipe_voices_maps_a_speaker_for_one_episode_only(series, capsys):
    state = series_state_dir(series)
    assert main(["voices", str(series), "--episode", "ep007", "--set", "S3=林薇"]) == 0
    vm = load_voice_map(voices_path(state))
    assert vm.episodes == {"ep007": {"S3": "林薇"}} and vm.speakers == {}
    assert main(["voices", str(series), "--episode", "ep007", "--unset", "S3"]) == 0
    assert load_voice_map(voices_path(state)).episodes == {}
    assert main(["voices", str(series), "--episode", "ep007", "--set", "S3=Nobody"]) == 2
