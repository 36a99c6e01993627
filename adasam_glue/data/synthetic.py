"""Synthetic GLUE: small, learnable versions of the eight tasks in the exact original TSV formats.

Every example is built from an *event* (subject, verb, object, optional adjectives, place, time) over a
small vocabulary of real English words with synonyms and antonyms, so a pretrained encoder recognises
the words and a tiny random model can still learn the task from scratch:

- CoLA: a well-formed sentence (1) vs the same words in a broken order (0).
- SST-2: a short review; sentiment words decide, with negation ("is not dull") and "X but Y" clauses.
- MRPC/QQP: sentence2 is a paraphrase of sentence1 (synonym swaps, passive voice, moved time phrase)
  or not: MRPC the same event negated ("never") or a different event (changed participants/action);
  QQP a different event or a different question word.
- STS-B: sentence2 changes k of sentence1's 4 content slots; score = 5 (1 - k/4) + small noise.
- MNLI/RTE/QNLI: the hypothesis restates part of the premise (entailment), adds a fact the premise does
  not state (neutral), or negates / flips an adjective / swaps the subject (contradiction); QNLI asks
  who/what/where/when and the sentence does or does not contain the answer.

Classes are balanced, so chance accuracy is 1/num_labels. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from adasam_glue.data.glue_tsv import SPLIT_FILES
from adasam_glue.tasks import get_task

GENERATOR_VERSION = "1"  #: bump when the generated text changes (invalidates cached synthetic data)

# (word, synonym) pairs. Verbs: (past, participle, base) per synonym.
SUBJECTS = [
    ("doctor", "physician"),
    ("child", "kid"),
    ("teacher", "tutor"),
    ("lawyer", "attorney"),
    ("woman", "lady"),
    ("student", "pupil"),
    ("boss", "manager"),
    ("soldier", "trooper"),
    ("friend", "companion"),
    ("chef", "cook"),
    ("author", "writer"),
    ("farmer", "grower"),
]
OBJECTS = [
    ("car", "automobile"),
    ("house", "home"),
    ("book", "novel"),
    ("gift", "present"),
    ("boat", "ship"),
    ("picture", "photo"),
    ("shop", "store"),
    ("rock", "stone"),
    ("couch", "sofa"),
    ("film", "movie"),
    ("bag", "sack"),
    ("road", "street"),
]
VERBS = [
    (("bought", "bought", "buy"), ("purchased", "purchased", "purchase")),
    (("fixed", "fixed", "fix"), ("repaired", "repaired", "repair")),
    (("found", "found", "find"), ("discovered", "discovered", "discover")),
    (("liked", "liked", "like"), ("enjoyed", "enjoyed", "enjoy")),
    (("built", "built", "build"), ("constructed", "constructed", "construct")),
    (("saw", "seen", "see"), ("noticed", "noticed", "notice")),
    (("cleaned", "cleaned", "clean"), ("washed", "washed", "wash")),
    (("took", "taken", "take"), ("grabbed", "grabbed", "grab")),
    (("sold", "sold", "sell"), ("traded", "traded", "trade")),
    (("painted", "painted", "paint"), ("decorated", "decorated", "decorate")),
]
# (word, synonym, antonym index)
ADJECTIVES = [
    ("big", "large", 1),
    ("small", "little", 0),
    ("happy", "glad", 3),
    ("sad", "unhappy", 2),
    ("old", "ancient", 5),
    ("new", "modern", 4),
    ("quiet", "silent", 7),
    ("loud", "noisy", 6),
    ("rich", "wealthy", 9),
    ("poor", "needy", 8),
    ("clean", "tidy", 11),
    ("dirty", "messy", 10),
]
PLACES = [
    "in the park",
    "at the market",
    "near the river",
    "in the city",
    "at the school",
    "in the kitchen",
    "on the farm",
    "at the station",
]
TIMES = ["yesterday", "last week", "in the morning", "on monday", "at night", "last year"]

POSITIVE = [
    "wonderful",
    "brilliant",
    "charming",
    "moving",
    "delightful",
    "funny",
    "beautiful",
    "gripping",
    "clever",
    "fresh",
]
NEGATIVE = [
    "boring",
    "dull",
    "awful",
    "terrible",
    "clumsy",
    "tedious",
    "bland",
    "messy",
    "predictable",
    "stale",
]
REVIEW_TOPICS = [
    "the film",
    "the movie",
    "the story",
    "the acting",
    "the plot",
    "the script",
    "the soundtrack",
    "the ending",
    "the cast",
    "the dialogue",
    "this picture",
    "the direction",
]


@dataclass(frozen=True)
class Event:
    subj: int
    verb: int
    obj: int
    sadj: int | None = None
    oadj: int | None = None
    place: int | None = None
    time: int | None = None


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    # ---- building blocks
    def event(self, place: bool | None = None, time: bool | None = None) -> Event:
        r = self.rng
        return Event(
            subj=r.randrange(len(SUBJECTS)),
            verb=r.randrange(len(VERBS)),
            obj=r.randrange(len(OBJECTS)),
            sadj=r.randrange(len(ADJECTIVES)) if r.random() < 0.5 else None,
            oadj=r.randrange(len(ADJECTIVES)) if r.random() < 0.6 else None,
            place=r.randrange(len(PLACES)) if (r.random() < 0.5 if place is None else place) else None,
            time=r.randrange(len(TIMES)) if (r.random() < 0.5 if time is None else time) else None,
        )

    def _other(self, n: int, k: int) -> int:
        return (k + self.rng.randrange(1, n)) % n

    def change(self, e: Event, slots: list[str]) -> Event:
        """A different event: each named slot gets another value (adjectives flip to antonyms)."""
        new = {}
        for s in slots:
            if s == "subj":
                new[s] = self._other(len(SUBJECTS), e.subj)
            elif s == "verb":
                new[s] = self._other(len(VERBS), e.verb)
            elif s == "obj":
                new[s] = self._other(len(OBJECTS), e.obj)
            elif s in ("sadj", "oadj"):
                cur = getattr(e, s)
                new[s] = ADJECTIVES[cur][2] if cur is not None else self.rng.randrange(len(ADJECTIVES))
            elif s == "place":
                new[s] = (
                    self._other(len(PLACES), e.place)
                    if e.place is not None
                    else self.rng.randrange(len(PLACES))
                )
            elif s == "time":
                new[s] = (
                    self._other(len(TIMES), e.time) if e.time is not None else self.rng.randrange(len(TIMES))
                )
        return replace(e, **new)

    def _syn(self, pair, p: float) -> str:
        return pair[1] if self.rng.random() < p else pair[0]

    def noun_phrase(self, noun_pair, adj: int | None, p: float, det: str = "the") -> list[str]:
        words = [det]
        if adj is not None:
            words.append(self._syn(ADJECTIVES[adj], p))
        words.append(self._syn(noun_pair, p))
        return words

    def realize(
        self,
        e: Event,
        p_syn: float = 0.0,
        passive: bool = False,
        time_front: bool = False,
        negate: bool = False,
        drop_adj: bool = False,
        drop_extras: bool = False,
    ) -> list[str]:
        r = self.rng
        vform = VERBS[e.verb][1 if r.random() < p_syn else 0]
        sadj, oadj = (None, None) if drop_adj else (e.sadj, e.oadj)
        subj = self.noun_phrase(SUBJECTS[e.subj], sadj, p_syn)
        obj = self.noun_phrase(OBJECTS[e.obj], oadj, p_syn)
        neg = ["never"] if negate else []
        if passive:
            core = [*obj, "was", *neg, vform[1], "by", *subj]
        else:
            core = [*subj, *neg, vform[0], *obj]
        place = [] if drop_extras or e.place is None else PLACES[e.place].split()
        time = [] if drop_extras or e.time is None else TIMES[e.time].split()
        if time and time_front:
            return [*time, ",", *core, *place]
        return [*core, *place, *time]

    def paraphrase(self, e: Event, p_syn: float = 0.3) -> list[str]:
        return self.realize(
            e, p_syn=p_syn, passive=self.rng.random() < 0.3, time_front=self.rng.random() < 0.5
        )

    def question(self, e: Event, wh: str, p_syn: float = 0.0, style: int = 0) -> list[str]:
        r = self.rng
        vform = VERBS[e.verb][1 if r.random() < p_syn else 0]
        subj = self.noun_phrase(SUBJECTS[e.subj], e.sadj, p_syn)
        obj = self.noun_phrase(OBJECTS[e.obj], e.oadj, p_syn)
        if wh == "who":
            return ["who", vform[0], *obj, "?"]
        if wh == "what":
            return ["what", "did", *subj, vform[2], "?"]
        lead = {"where": ["where"], "when": ["when"], "why": ["why"], "how": ["how"]}[wh]
        if style == 1:
            lead = {
                "where": ["in", "which", "place"],
                "when": ["at", "what", "time"],
                "why": ["for", "what", "reason"],
                "how": ["in", "what", "way"],
            }[wh]
        return [*lead, "did", *subj, vform[2], *obj, "?"]


def _sent(words: list[str], capitalize: bool = False) -> str:
    text = " ".join(words)
    text = text.replace(" , ", ", ") if capitalize else text
    if capitalize:
        return text[0].upper() + text[1:] + "."
    return text + " ."


# ----------------------------------------------------------------------------------- per-task examples
def _cola(g: _Gen, label: int) -> tuple[str, ...]:
    words = g.realize(g.event(), p_syn=0.3, passive=g.rng.random() < 0.2)
    if label == 0:
        bad = list(words)
        while bad == words:
            if g.rng.random() < 0.5:
                g.rng.shuffle(bad)
            else:  # move one word elsewhere: a subtler error
                w = bad.pop(g.rng.randrange(len(bad)))
                bad.insert(g.rng.randrange(len(bad) + 1), w)
        words = bad
    return (_sent([w for w in words if w != ","], capitalize=True),)


def _sst2(g: _Gen, label: int) -> tuple[str, ...]:
    r = g.rng
    good, bad = r.choice(POSITIVE), r.choice(NEGATIVE)
    t1, t2 = r.sample(REVIEW_TOPICS, 2)
    kind = r.random()
    if kind < 0.5:  # plain: "the plot is clever"
        words = [*t1.split(), "is", good if label else bad]
        if r.random() < 0.5:
            words += ["and", *t2.split(), "is", r.choice(POSITIVE if label else NEGATIVE)]
    elif kind < 0.75:  # negation flips: "the plot is not dull" is positive
        words = [*t1.split(), "is", "not", bad if label else good]
    else:  # contrast: the clause after "but" decides
        first = r.choice(NEGATIVE if label else POSITIVE)
        words = [*t1.split(), "is", first, "but", *t2.split(), "is", good if label else bad]
    return (" ".join(words) + " . ",)  # SST-2 style: lowercased, tokenized, trailing space


def _mrpc(g: _Gen, label: int) -> tuple[str, ...]:
    e = g.event()
    s1 = g.realize(e, p_syn=0.2, time_front=g.rng.random() < 0.3)
    if label == 1:
        s2 = g.paraphrase(e)
    elif g.rng.random() < 0.4:  # contradicting: the same event negated
        s2 = g.realize(e, p_syn=0.3, negate=True, time_front=g.rng.random() < 0.5)
    else:  # unrelated: other participants / action
        slots = g.rng.choice([["subj", "obj"], ["verb", "obj"], ["subj", "verb"], ["subj", "verb", "obj"]])
        s2 = g.paraphrase(g.change(e, slots))
    return _sent(s1), _sent(s2)


def _qqp(g: _Gen, label: int) -> tuple[str, ...]:
    e = g.event(place=False, time=False)
    wh = g.rng.choice(["who", "what", "where", "when", "why", "how"])
    q1 = g.question(e, wh, p_syn=0.2)
    if label == 1:
        q2 = g.question(e, wh, p_syn=0.3, style=1)
    elif g.rng.random() < 0.4 and wh not in ("who", "what"):
        q2 = g.question(e, g.rng.choice([w for w in ("where", "when", "why", "how") if w != wh]), p_syn=0.3)
    else:
        q2 = g.question(
            g.change(e, g.rng.choice([["verb", "obj"], ["subj", "obj"], ["verb"]])), wh, p_syn=0.3
        )
    return " ".join(q1), " ".join(q2)


def _stsb(g: _Gen) -> tuple[str, str, float]:
    e = g.event()
    k = g.rng.randrange(5)
    e2 = g.change(e, g.rng.sample(["subj", "verb", "obj", "oadj"], k))
    score = min(5.0, max(0.0, 5.0 * (1 - k / 4) + g.rng.uniform(-0.4, 0.4)))
    return _sent(g.realize(e, p_syn=0.2), True), _sent(g.paraphrase(e2, 0.2), True), score


def _nli(g: _Gen, label: str) -> tuple[str, str]:
    """premise, hypothesis for an NLI label (entailment / neutral / contradiction)."""
    r = g.rng
    e = g.event(place=r.random() < 0.5, time=r.random() < 0.5)
    premise = g.realize(e, p_syn=0.2, time_front=r.random() < 0.3)
    if label == "entailment":  # restate with less detail / synonyms / passive
        hyp = g.realize(
            e, p_syn=0.3, passive=r.random() < 0.3, drop_adj=r.random() < 0.5, drop_extras=r.random() < 0.5
        )
    elif label == "neutral":  # add a fact the premise does not state
        extra = [s for s in ("place", "time") if getattr(e, s) is None]
        if extra:
            hyp = g.realize(g.change(e, [r.choice(extra)]), p_syn=0.3)
        else:
            hyp = g.realize(e, p_syn=0.3, drop_extras=True) + ["because", "it", "was", "cheap"]
    else:  # contradiction
        kind = r.random()
        if kind < 0.4:
            hyp = g.realize(e, p_syn=0.3, negate=True, drop_extras=r.random() < 0.5)
        elif kind < 0.7 and e.oadj is not None:
            hyp = g.realize(g.change(e, ["oadj"]), p_syn=0.3, drop_extras=True)
        else:
            hyp = g.realize(g.change(e, ["subj"]), p_syn=0.3, drop_adj=True)
    return _sent(premise, True), _sent(hyp, True)


def _qnli(g: _Gen, label: int) -> tuple[str, str]:
    r = g.rng
    e = g.event(place=True, time=True)
    wh = r.choice(["who", "what", "where", "when"])
    question = g.question(e, wh, p_syn=0.2)
    if label == 0:  # entailment: the sentence answers the question
        answer = e
    elif wh in ("where", "when") and r.random() < 0.5:  # same event, the asked-for detail is missing
        answer = replace(e, **{"place" if wh == "where" else "time": None})
    else:  # a different event
        answer = g.change(e, r.choice([["verb"], ["obj"], ["verb", "obj"]]))
    return " ".join(question), _sent(g.realize(answer, p_syn=0.2, passive=r.random() < 0.2), True)


# ------------------------------------------------------------------------------------------ writers
_CAPTION_META = ("main-captions", "MSRvid", "2012test")
_MNLI_GENRES = {
    "validation_matched": ["fiction", "government", "slate", "telephone", "travel"],
    "validation_mismatched": ["facetoface", "letters", "nineeleven", "oup", "verbatim"],
}
_MNLI_LABELS = ["entailment", "neutral", "contradiction"]


def _parse(text: str) -> tuple[str, str]:
    words = text.split()
    return "( " + " ".join(words) + " )", "(ROOT (S " + " ".join(f"(X {w})" for w in words) + "))"


def _rows(task: str, split: str, n: int, g: _Gen) -> list[list[str]]:
    """Data rows (header excluded) of one split in the task's original column layout."""
    info = get_task(task)
    test = split.startswith("test")
    rows: list[list[str]] = []
    for i in range(n):
        label = i % max(info.num_labels, 1)  # balanced classes, order shuffled below
        if task == "cola":
            (s,) = _cola(g, label)
            src = g.rng.choice(["gj04", "bc01", "ks08", "r-67", "c_13"])
            rows.append([str(i), s] if test else [src, str(label), "" if label else "*", s])
        elif task == "sst2":
            (s,) = _sst2(g, label)
            rows.append([str(i), s] if test else [s, str(label)])
        elif task == "mrpc":
            s1, s2 = _mrpc(g, label)
            ids = [str(1000000 + 2 * i), str(1000001 + 2 * i)]
            rows.append([str(i), *ids, s1, s2] if test else [str(label), *ids, s1, s2])
        elif task == "qqp":
            q1, q2 = _qqp(g, label)
            rows.append(
                [str(i), q1, q2] if test else [str(i), str(2 * i + 1), str(2 * i + 2), q1, q2, str(label)]
            )
        elif task == "stsb":
            s1, s2, score = _stsb(g)
            meta = [str(i), *_CAPTION_META, f"{i:04d}", "none", "none", s1, s2]
            rows.append(meta if test else [*meta, f"{score:.3f}"])
        elif task in ("mnli", "rte"):
            name = (_MNLI_LABELS if task == "mnli" else ["entailment", "contradiction"])[label]
            if task == "rte" and label == 1:
                name = g.rng.choice(["neutral", "contradiction"])
            p, h = _nli(g, name)
            if task == "rte":
                gold = "entailment" if name == "entailment" else "not_entailment"
                rows.append([str(i), p, h] if test else [str(i), p, h, gold])
            else:
                genre = g.rng.choice(
                    _MNLI_GENRES.get(split.replace("test", "validation"), _MNLI_GENRES["validation_matched"])
                )
                (pb, pp), (hb, hp) = _parse(p), _parse(h)
                row = [str(i), str(10000 + i), f"{10000 + i}{name[0]}", genre, pb, hb, pp, hp, p, h]
                if not test:
                    row += [name] * (5 if split.startswith("validation") else 1) + [name]
                rows.append(row)
        elif task == "qnli":
            q, s = _qnli(g, label)
            rows.append([str(i), q, s] if test else [str(i), q, s, info.label_names[label]])
    if not test:  # keep the original files' "index" column in order; shuffle the examples instead
        order = list(range(n))
        g.rng.shuffle(order)
        rows = [rows[j] for j in order]
        if task not in ("cola", "sst2", "mrpc"):
            for i, row in enumerate(rows):
                row[0] = str(i)
    return rows


def _header(task: str, split: str) -> str | None:
    test = split.startswith("test")
    if task == "cola":
        return "index\tsentence" if test else None
    if task == "mnli":
        base = (
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
        )
        if test:
            return base
        labels = "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5" if split.startswith("validation") else "\tlabel1"
        return base + labels + "\tgold_label"
    return {
        "sst2": ("sentence\tlabel", "index\tsentence"),
        "mrpc": (
            "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        ),
        "stsb": (
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
        ),
        "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "id\tquestion1\tquestion2"),
        "qnli": ("index\tquestion\tsentence\tlabel", "index\tquestion\tsentence"),
        "rte": ("index\tsentence1\tsentence2\tlabel", "index\tsentence1\tsentence2"),
    }[task][int(test)]


def make_synthetic_glue(
    task: str, out_dir: str | Path, num_train: int = 512, num_eval: int = 128, seed: int = 0
) -> Path:
    """Write ``out_dir/<GlueDir>/`` (e.g. ``MRPC/``) in the task's original GLUE TSV format.

    Splits: ``train`` (num_train rows), each dev split (num_eval rows), each test split (num_eval rows,
    unlabelled). Returns the task folder. Deterministic in ``seed``.
    """
    info = get_task(task)
    task_dir = Path(out_dir) / info.glue_dir
    task_dir.mkdir(parents=True, exist_ok=True)
    splits = ("train", *info.eval_splits, *(s.replace("validation", "test") for s in info.eval_splits))
    for k, split in enumerate(splits):
        g = _Gen(seed * 1000 + k)
        rows = _rows(info.name, split, num_train if split == "train" else num_eval, g)
        header = _header(info.name, split)
        lines = ([header] if header is not None else []) + ["\t".join(r) for r in rows]
        (task_dir / SPLIT_FILES[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return task_dir
