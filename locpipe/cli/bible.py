"""``locpipe bible suggest``: propose bible entries from a series' transcripts for a person to review.

The heuristics are simple and explainable, because a person decides: every suggestion says
how often it was seen and why it looks like a name or term.

* names: a common surname + 1-2 characters that is addressed directly (a clause of its own,
  "林晓，..." / "你姐？林薇？") or recurs; a 3-character form wins over its 2-character prefix
  when it is as frequent;
* titles: surname + 总/总裁/董/少/哥/姐/先生/小姐/夫人/太太/爷 ("陆总" -> "Mr. Lu", check gender);
* kinship words (哥, 姐, 弟弟, 妹妹, ...) -> honorific entries whose policy must be written;
* glossary: organisation names (…集团, …公司) and recurring plot terms from a short list
  (合同, 遗嘱, 股份, ...).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from locpipe.localize.terms import SURNAMES, romanize

log = logging.getLogger(__name__)

TITLE_SUFFIXES = ("总裁", "总", "董", "少", "先生", "小姐", "夫人", "太太", "爷")
TITLE_EN = {"总裁": "CEO {s}", "总": "Mr. {s}", "董": "Chairman {s}", "少": "Young Master {s}", "先生": "Mr. {s}",
            "小姐": "Miss {s}", "夫人": "Mrs. {s}", "太太": "Mrs. {s}", "爷": "Master {s}"}
KINSHIP = ("哥哥", "姐姐", "弟弟", "妹妹", "嫂子", "姐夫", "爷爷", "奶奶", "外婆", "叔叔", "阿姨",
           "哥", "姐", "爸", "妈")
PLOT_TERMS = {"合同": "contract", "遗嘱": "will", "股份": "shares", "董事会": "board of directors",
              "婚约": "engagement", "离婚协议": "divorce agreement", "协议": "agreement",
              "亲子鉴定": "paternity test", "继承人": "heir",
              "项目": "project", "证据": "evidence", "总裁": "CEO", "集团": "group", "公司": "company"}
ORG_RE = re.compile(r"([\u4e00-\u9fff]{1,4}?(?:集团|公司|酒店|医院|银行|科技|娱乐|大学))")
#: frequent words that start with a surname character but are not names
NOT_NAMES = set("马上 高兴 方便 文件 周末 白天 黄金 明天 江湖 金钱 钱包 王爷 安全 安排 安静 时间 时候 关系 关心 关于 "
                "成功 成为 可能 和好 师父 程序 毛病 林子 路上 路口 石头 龙头 常常 齐全 全部 全都 全是 连忙 连续 华丽 "
                "宁愿 应该 应当 包括 包里 司机 古代 简单 项目 米饭 宗教 单独 单纯 曲子 车上 车子 关键 康复 管理 甘心 "
                "许多 雷声 尤其 孔雀 毕竟 房间 房子 费用 解释 解决 冷静 冷笑 景色 向来 从来 万一 于是 何必 何况 "
                "任何 任务 苏醒 余额 程度 范围 戴上 叶子 谢谢 谢了 方法 方向 方面 易 舒服 童年 卫生 宫殿 尚未 "
                "代价 计划 刘海 段时 史上 左右 温柔 温暖 庄园 洪水 顾客 顾不 姜汤 齐声 申请 符合 甘愿 鲁莽 岳父 "
                "柳树 严重 严格 查到 查清 查一 查看 龙凤 连我 连你 和我 和你 和他 和她 向我 向你 于我 于他".split())


@dataclass
class Finding:
    count: int = 0
    files: set[str] = field(default_factory=set)
    reasons: Counter = field(default_factory=Counter)

    def see(self, file: str, reason: str, counted: bool = True) -> None:
        self.count += counted
        self.files.add(file)
        self.reasons[reason] += 1

    def why(self) -> str:
        how = ", ".join(f"{r} {n}x" for r, n in self.reasons.most_common())  # reasons may overlap
        return f"seen {self.count}x in {len(self.files)} file(s): {how}"


def _clauses(line: str) -> list[str]:
    return [c for c in re.split(r"[，,。.！!？?；;：:…、\s\"“”]+", line) if c]


def scan(lines_by_file: dict[str, list[str]]) -> dict[str, dict[str, Finding]]:
    """Count candidate names, titles, kinship words and terms; pure (texts in, findings out)."""
    found: dict[str, dict[str, Finding]] = {k: defaultdict(Finding) for k in ("names", "titles", "kinship", "terms")}
    sur = f"[{SURNAMES}]"
    title_re = re.compile(f"({sur})(" + "|".join(TITLE_SUFFIXES) + ")")
    for file, lines in lines_by_file.items():
        for line in lines:
            titles = set()
            for m in title_re.finditer(line):
                if m.group(0) not in NOT_NAMES:
                    found["titles"][m.group(0)].see(file, "surname+title")
                    titles.add(m.start())
            for clause in _clauses(line):
                if re.fullmatch(f"{sur}[\u4e00-\u9fff]{{1,2}}", clause) and clause not in NOT_NAMES \
                        and not title_re.fullmatch(clause):
                    found["names"][clause].see(file, "addressed (a clause of its own)", counted=False)
            for m in re.finditer(f"(?=({sur}[\u4e00-\u9fff]{{1,2}}))", line):
                cand = m.group(1)
                for form in (cand[:2], cand) if len(cand) == 3 else (cand,):
                    if form not in NOT_NAMES and m.start() not in titles and not title_re.fullmatch(form):
                        found["names"][form].see(file, "surname+given name")
            for kin in KINSHIP:
                if kin in line and not any(kin in k and kin != k and k in line for k in KINSHIP):
                    found["kinship"][kin].see(file, "kinship word")
            for m in ORG_RE.finditer(line):
                found["terms"][m.group(1)].see(file, "organisation")
            for term in PLOT_TERMS:
                if term in line:
                    found["terms"][term].see(file, "plot term")
    return found


def _keep_names(names: dict[str, Finding], min_count: int) -> dict[str, Finding]:
    """Addressed names always; others when frequent; a 3-char form shadows its as-frequent prefix."""
    keep = {n: f for n, f in names.items()
            if f.reasons.get("addressed (a clause of its own)") or f.count >= min_count}
    for name in [n for n in keep if len(n) == 3]:
        short = name[:2]
        if short in keep and keep[short].count <= keep[name].count:
            del keep[short]
    for name in [n for n in keep if len(n) == 2]:  # drop 3-char forms that are name + particle (林晓的)
        for longer in [n for n in keep if len(n) == 3 and n.startswith(name)]:
            if keep[longer].count < keep[name].count:
                del keep[longer]
    return keep


def _pinyin_name(chinese: str) -> str:
    syl = romanize(chinese)
    if not syl:
        return "TODO"
    return " ".join([syl[0].capitalize(), "".join(syl[1:]).capitalize()]).strip()


@dataclass(frozen=True)
class Proposal:
    """The model's reading of one name or title from the lines it occurs in."""

    gender: str
    render: str
    role: str


GENDERS = ("female", "male", "unknown")
PROPOSAL_SYSTEM = """You help a localizer write a series bible for a Chinese short drama.
For each numbered Chinese name or title you get the lines it occurs in. Answer JSON only: \
{"1": "<gender>; <English rendering>; <role>", ...} where gender is female, male or unknown \
(judge from forms of address and pronouns: 他/她, 先生/小姐, 哥/姐), the English rendering is what \
English subtitles should call this person (pinyin names as "Lin Xiao", titles as "Mr. Lu", "Young Master Gu", \
"Your Highness"; never Chinese characters), and role is a few words (CEO, his sister, the prince).
Example: {"1": "female; Lin Xiao; employee", "2": "male; Mr. Lu; CEO"}"""


def parse_proposal(answer: str, fallback_render: str) -> Proposal:
    """``"female; Lin Xiao; employee"`` -> Proposal; anything unclear stays unknown/the pinyin guess."""
    fields = [f.strip() for f in answer.split(";")]
    gender = fields[0].lower() if fields and fields[0].lower() in GENDERS else "unknown"
    render = fields[1] if len(fields) > 1 and fields[1] and len(fields[1]) <= 40 else fallback_render
    if re.search(r"[\u3400-\u9fff]", render):  # left in Chinese: not a rendering
        render = fallback_render
    role = fields[2][:60] if len(fields) > 2 else ""
    return Proposal(gender=gender, render=render, role=role)


def model_proposals(forms: list[str], lines: list[str], backend, per_form: int = 3) -> dict[str, Proposal]:
    """Gender, rendering and role for each name/title form, read by a language model from its lines.

    ``backend`` is an ``llm``-style backend (``local-llm`` or an OpenAI-compatible endpoint); its
    validated, repaired JSON path guarantees one answer per form. A person reviews the result.
    """
    if not forms:
        return {}
    ids = list(range(1, len(forms) + 1))
    items = [f"{n}. {form}: " + " / ".join([ln for ln in lines if form in ln][:per_form])
             for n, form in zip(ids, forms, strict=True)]
    got = backend.ask(PROPOSAL_SYSTEM, "\n".join(items), ids)
    if got is None:
        log.warning("the model gave no usable answer; keeping the pinyin guesses")
        return {}
    return {form: parse_proposal(answer, _pinyin_name(form)) for form, answer in zip(forms, got, strict=True)}


def suggest_yaml(lines_by_file: dict[str, list[str]], min_count: int = 2, series: str = "",
                 proposals: dict[str, Proposal] | None = None) -> str:
    """A bible skeleton (valid YAML that loads as a SeriesBible) with a comment per entry.

    ``proposals`` (from :func:`model_proposals`) replace the pinyin guess, the unknown gender and
    the empty role of the forms they cover; each such entry says it was proposed by the model.
    """
    found = scan(lines_by_file)
    names = _keep_names(found["names"], min_count)
    titles = {t: f for t, f in found["titles"].items()}
    proposals = proposals or {}
    out = [f"# Suggested by `locpipe bible suggest` from {len(lines_by_file)} transcript(s).",
           "# Review every entry: renderings are pinyin guesses, genders are unknown.",
           f"series: {json.dumps(series, ensure_ascii=False)}", "source_language: zh", "", "characters:"]
    for name, f in sorted(names.items(), key=lambda kv: -kv[1].count):
        out += [f"  # {f.why()}", f"  {name}:"] + _person(proposals.get(name), _pinyin_name(name))
    for title, f in sorted(titles.items(), key=lambda kv: -kv[1].count):
        surname, suffix = title[0], title[1:]
        s = _pinyin_name(surname)
        out += [f"  # {f.why()}; a title form: check gender (Mr./Ms.)", f"  {title}:"]
        out += _person(proposals.get(title), TITLE_EN.get(suffix, "{s}").format(s=s))
    if not names and not titles:
        out[-1] = "characters: {}"
    out += ["", "honorifics:" if found["kinship"] else "honorifics: {}"]
    for kin, f in sorted(found["kinship"].items(), key=lambda kv: -kv[1].count):
        out += [f"  # {f.why()}", f"  {kin}:", '    policy: {en: "TODO: how to render when addressing / referring"}']
    terms = {t: f for t, f in found["terms"].items() if f.count >= min_count or t in PLOT_TERMS}
    terms = {t: f for t, f in terms.items() if t not in names and t not in titles}
    out += ["", "glossary:" if terms else "glossary: {}"]
    for term, f in sorted(terms.items(), key=lambda kv: -kv[1].count):
        out += [f"  # {f.why()}", f"  {term}:", f"    render: {{en: {json.dumps(PLOT_TERMS.get(term, 'TODO'))}}}"]
    out += ["", "forbidden: {}", "notes: []", ""]
    return "\n".join(out)


def _person(proposal: Proposal | None, guess: str) -> list[str]:
    if proposal is None:
        return [f"    render: {{en: {json.dumps(guess)}}}", "    gender: unknown"]
    return ["    # proposed by the model: check",
            f"    render: {{en: {json.dumps(proposal.render, ensure_ascii=False)}}}",
            f"    gender: {proposal.gender}", f"    role: {json.dumps(proposal.role, ensure_ascii=False)}"]


def read_lines(path: Path) -> list[str]:
    """Source lines from a Transcript JSON, a reference script JSON ({"lines": [...]}) or an SRT."""
    if path.suffix.lower() == ".srt":
        from locpipe.media.subtitles import read_srt_texts

        return [text.replace("\n", " ") for text in read_srt_texts(path)]
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data.get("cues") or data.get("lines") or []
    return [str(i.get("text", "")) for i in items if isinstance(i, dict)]


def collect(inputs: list[Path], settings_factory) -> dict[str, list[str]]:
    """Lines per input: transcript files are read, a series folder's episodes are transcribed (cached)."""
    out: dict[str, list[str]] = {}
    for item in inputs:
        files = sorted(item.glob("*.json")) + sorted(item.glob("*.srt")) if item.is_dir() else [item]
        readable = [f for f in files if f.suffix.lower() in (".json", ".srt")]
        for f in readable:
            out[str(f)] = read_lines(f)
        if item.is_dir() or item.suffix.lower() not in (".json", ".srt"):
            out.update(_transcribe_all(item, settings_factory))
    return out


def _transcribe_all(item: Path, settings_factory) -> dict[str, list[str]]:
    """The cue texts of every episode in ``item`` (the pipeline's cached shared stages)."""
    from locpipe.core.batch import discover_episodes
    from locpipe.core.pipeline import transcribe_episode

    return {str(episode): [c.text for c in transcribe_episode(episode, settings_factory()).cues]
            for episode in discover_episodes([item])}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bible", help="series bible tools")
    sub = p.add_subparsers(dest="bible_command", required=True)
    s = sub.add_parser("suggest", help="propose bible entries from transcripts (prints YAML for review)")
    s.add_argument("inputs", nargs="+", type=Path,
                   help="series folder(s), episode files, or transcript JSON/SRT files (`locpipe transcribe --json`)")
    s.add_argument("--min-count", type=int, default=2, help="occurrences needed for a name or term not addressed")
    s.add_argument("--out", type=Path, help="write the YAML here instead of standard output")
    s.add_argument("--series", default="", help="series name written into the skeleton")
    s.add_argument("--work", type=Path, help="stage cache folder for transcribing episodes")
    s.add_argument("--no-ocr", action="store_true", help="ASR only when transcribing episodes")
    s.add_argument("--model", default="local-llm",
                   help="translation backend that proposes genders, renderings and roles (local-llm, llm); "
                        "'none': pinyin guesses only (default: local-llm, skipped with a note where it cannot run)")


def run(args) -> int:
    from locpipe.cli.options import transcribe_settings
    from locpipe.exit_codes import ExitCode

    # a factory: the settings (and the asset cache behind them) are needed only to transcribe
    lines = collect(args.inputs, lambda: transcribe_settings(args))
    if not any(lines.values()):
        log.error("no dialogue found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    proposals = _proposals(lines, args.min_count, args.model)
    text = suggest_yaml(lines, min_count=args.min_count, series=args.series or args.inputs[0].stem,
                        proposals=proposals)
    yaml.safe_load(text)  # the skeleton must stay loadable
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        log.info("bible suggestions for %d file(s) -> %s", len(lines), args.out)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def _proposals(lines_by_file: dict[str, list[str]], min_count: int, model: str) -> dict[str, Proposal]:
    """The model's proposals for the names and titles found, or none (with the reason logged)."""
    if model == "none":
        return {}
    from locpipe.backends.mt.base import get_mt_backend
    from locpipe.errors import BackendUnavailable

    found = scan(lines_by_file)
    forms = sorted(_keep_names(found["names"], min_count)) + sorted(found["titles"])
    try:
        backend = get_mt_backend(model)
        backend.check_available()
        if not hasattr(backend, "ask"):
            raise BackendUnavailable(f"{model} is not a language-model backend")
        return model_proposals(forms, [ln for file in lines_by_file.values() for ln in file], backend)
    except BackendUnavailable as exc:
        log.warning("bible suggest: %s cannot propose renderings (%s); pinyin guesses only", model, exc)
        return {}
