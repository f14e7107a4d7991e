"""Duplicates inside a split and leakage between train and eval: exact, near (MinHash/LSH), contained, n-gram.

    from tunesmith.data.audit_dups import duplicates, leakage
    duplicates(rows, threshold=0.85); leakage(train_rows, eval_rows, threshold=0.85, ngram=13)

Texts are compared after `normalize` (Unicode NFKC, case folded, punctuation and whitespace runs made one space),
so "The movie." and "the  movie" are one text. Near duplicates are pairs whose word 5-gram shingle sets have a
Jaccard similarity of at least the threshold: datasketch's MinHash LSH proposes candidates, and each candidate is
confirmed with the exact Jaccard of the two shingle sets, so a reported pair is never a hashing accident. Texts
shorter than one shingle can only be exact duplicates. "Contained" catches phrase-level leakage: a text of at least
`CONTAIN_MIN_WORDS` words that appears, word for word, inside a longer text of the other split. "N-gram" catches
an eval text that shares any sequence of N words (13 by default) with a training text, the test contamination
studies use: it sees a 40-word question copied with one word changed in its middle, whose 5-gram shingle sets have
a Jaccard similarity of 31/41 = 0.76, below the near-duplicate threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SHINGLE_WORDS = 5
NUM_PERM = 128
CONTAIN_MIN_WORDS = 8  # a shorter phrase found inside a row of the other split is reported, but is not leakage
CONTAIN_REPORT_WORDS = 3
CONTAIN_BUCKETS = ((3, 4), (5, 7), (8, None))
NGRAM_WORDS = 13  # shared word sequence that marks an eval row contaminated (GPT-3's n); config: audit.ngram
TEMPLATE_WORDS = 5  # a word inside a 5-gram that many training texts repeat is template, not content
TEMPLATE_SHARE = 0.1  # "many": this share of the distinct training texts ...
NGRAM_COMMON_TEXTS = 10  # ... and at least this many of them
MAX_EXAMPLES = 20
SNIPPET_CHARS = 240
_NON_WORD = re.compile(r"[\W_]+")


@dataclass
class TextRow:
    """One row as the duplicate checks see it: its reference (FILE:LINE), the normalised text compared, and the
    text shown in examples."""

    ref: str
    key: str
    shown: str


def normalize(text: str) -> str:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def mask_pii(text: str) -> str:
    """The text with every personal datum or secret replaced by its masked form (unchanged without the scanner)."""
    try:
        from tunesmith.data.pii import scan_text
    except ImportError:
        return text
    for hit in sorted(scan_text(text), key=lambda h: h.start, reverse=True):
        text = text[: hit.start] + hit.masked + text[hit.end :]
    return text


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A row's text as the report shows it: personal data masked (before cutting, so no value is half-shown),
    whitespace collapsed, at most `limit` characters."""
    text = " ".join(mask_pii(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shingles(key: str) -> set[str]:
    words = key.split()
    if len(words) < SHINGLE_WORDS:
        return {key}
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class _Sketcher:
    """MinHashes that share one set of permutations (building them per object costs more than the hashing)."""

    def __init__(self) -> None:
        from datasketch import MinHash  # imported here: only the audit needs datasketch (and scipy behind it)

        self._cls = MinHash
        base = MinHash(num_perm=NUM_PERM, seed=1)
        self._perms, self._scheme = base.permutations, base.scheme

    def __call__(self, shingle_set: set[str]):
        sketch = self._cls(num_perm=NUM_PERM, permutations=self._perms, scheme=self._scheme)
        sketch.update_batch([s.encode("utf-8") for s in shingle_set])
        return sketch


def _lsh(threshold: float):
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=NUM_PERM)


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _groups_by_key(rows: list[TextRow]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.key].append(i)
    return groups


def _example(rows: list[TextRow], members: Iterable[int]) -> dict:
    members = list(members)
    return {"rows": [rows[i].ref for i in members[:10]], "size": len(members), "text": snippet(rows[members[0]].shown)}


def duplicates(rows: list[TextRow], threshold: float) -> dict:
    """Exact and near duplicate groups in one split. Counts are of rows beyond the first of their group (the rows
    a deduplication would drop), so they add up with the row count."""
    by_key = _groups_by_key(rows)
    verbatim = len(rows) - len({row.shown for row in rows})
    exact = [members for members in by_key.values() if len(members) > 1]
    exact.sort(key=len, reverse=True)
    keys = list(by_key)  # one representative per normalised text
    sets = [shingles(k) for k in keys]
    sketch = _Sketcher()
    index = _lsh(threshold)
    found = UnionFind()
    pairs = 0
    for i, (key, shingle_set) in enumerate(zip(keys, sets, strict=True)):
        if len(key.split()) < SHINGLE_WORDS:
            continue  # one shingle: only an exact duplicate can match it
        mh = sketch(shingle_set)
        for j in index.query(mh):
            if jaccard(shingle_set, sets[j]) >= threshold:
                found.union(i, j)
                pairs += 1
        index.insert(i, mh)
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in list(found.parent):
        clusters[found.find(i)].append(i)
    near = [sorted(c) for c in clusters.values() if len(c) > 1]
    near.sort(key=lambda c: sum(len(by_key[keys[k]]) for k in c), reverse=True)
    near_rows = [[m for k in cluster for m in by_key[keys[k]]] for cluster in near]
    return {
        "rows": len(rows),
        "verbatim_rows": verbatim,  # byte-identical copies, before normalisation
        "exact_groups": len(exact),
        "exact_rows": sum(len(g) - 1 for g in exact),
        "exact_examples": [_example(rows, g) for g in exact[:MAX_EXAMPLES]],
        "near_threshold": threshold,
        "near_groups": len(near),
        "near_rows": sum(len(c) - 1 for c in near),  # distinct texts beyond the first, exact copies not counted again
        "near_examples": [
            {
                **_example(rows, members),
                "variants": [snippet(rows[by_key[keys[k]][0]].shown, 160) for k in cluster[:4]],
            }
            for cluster, members in list(zip(near, near_rows, strict=True))[:MAX_EXAMPLES]
        ],
    }


def _ngram_index(keys: list[str], n: int) -> dict[int, set[int]]:
    # Keyed by the n-gram's hash, not the string: the substring test confirms every candidate anyway.
    index: dict[int, set[int]] = defaultdict(set)
    for i, key in enumerate(keys):
        words = key.split()
        for j in range(len(words) - n + 1):
            index[hash(" ".join(words[j : j + n]))].add(i)
    return index


def _contained(needles: list[str], haystacks: list[str], n: int) -> list[tuple[int, int, int]]:
    """(needle, haystack, words) for each distinct needle of at least n words that occurs word for word inside a
    longer haystack (the first such haystack). Candidates share the needle's first and last n-gram; a substring
    test on the space-padded texts confirms them."""
    index = _ngram_index(haystacks, n)
    padded_hay = [f" {h} " for h in haystacks]
    out, seen = [], set()
    for i, needle in enumerate(needles):
        words = needle.split()
        if len(words) < n or needle in seen:
            continue
        seen.add(needle)
        padded = f" {needle} "
        candidates = index.get(hash(" ".join(words[:n])), set()) & index.get(hash(" ".join(words[-n:])), set())
        for j in sorted(candidates):
            if len(haystacks[j]) > len(needle) and padded in padded_hay[j]:
                out.append((i, j, len(words)))
                break
    return out


def _ngram_hashes(words: list[str], n: int) -> list[int]:
    # Each word hashed once, each n-gram as the hash of its words' hashes: no n-gram string is ever built.
    ids = [hash(w) for w in words]
    return [hash(tuple(ids[j : j + n])) for j in range(len(ids) - n + 1)]


def _template_words(train: list[list[str]]) -> Callable[[list[str]], list[str]]:
    """A function that drops a text's template words: those inside a TEMPLATE_WORDS-gram that at least
    TEMPLATE_SHARE of the distinct training texts (and NGRAM_COMMON_TEXTS of them) hold. A prompt template or
    instruction every row repeats is not a copied row, and would otherwise join a few shared words of content into a
    long shared sequence."""
    spread: Counter[int] = Counter()
    for words in train:
        spread.update(set(_ngram_hashes(words, TEMPLATE_WORDS)))
    least = max(NGRAM_COMMON_TEXTS, TEMPLATE_SHARE * len(train))
    template = {h for h, count in spread.items() if count >= least}

    def content(words: list[str]) -> list[str]:
        if not template:
            return words
        keep = [True] * len(words)
        for j, h in enumerate(_ngram_hashes(words, TEMPLATE_WORDS)):
            if h in template:
                keep[j : j + TEMPLATE_WORDS] = [False] * TEMPLATE_WORDS
        return [w for w, k in zip(words, keep, strict=True) if k]

    return content


def shared_ngrams(train: list[str], eval: list[str], n: int) -> list[tuple[int, int, str]]:
    """(eval text, train text, shared span) for each eval text that shares a sequence of `n` words with a training
    text: the overlap test of contamination studies (GPT-3 used n = 13), which sees a copy with one word changed that
    a Jaccard threshold misses. The span is the longest shared word sequence found around such an n-gram.

    Texts are compared without their template words (_template_words). Training n-grams are indexed by hash (first
    text and position), so a lookup per eval n-gram is all the matching costs; a hit is confirmed word for word."""
    distinct = list(dict.fromkeys(train))  # duplicates would count a template's spread twice
    split = [key.split() for key in distinct]
    content = _template_words(split)
    position: dict[str, int] = {}  # distinct text -> its first row
    for t, key in enumerate(train):
        position.setdefault(key, t)
    train_words = [content(words) for words in split]
    index: dict[int, tuple[int, int]] = {}  # n-gram hash -> (distinct train text, word position) of its first use
    for t, words in enumerate(train_words):
        for pos, h in enumerate(_ngram_hashes(words, n)):
            index.setdefault(h, (t, pos))

    def longest(words: list[str]) -> tuple[int, str] | None:
        best: tuple[int, int, int] | None = None  # (distinct train text, start, end) of the longest span so far
        hashes = _ngram_hashes(words, n)
        j = 0
        while j < len(hashes):
            hit = index.get(hashes[j])
            if hit is None:
                j += 1
                continue
            t, pos = hit
            other = train_words[t]
            if other[pos : pos + n] != words[j : j + n]:  # two n-grams with one hash
                j += 1
                continue
            start, end, before, after = j, j + n, pos, pos + n
            while start > 0 and before > 0 and words[start - 1] == other[before - 1]:
                start, before = start - 1, before - 1
            while end < len(words) and after < len(other) and words[end] == other[after]:
                end, after = end + 1, after + 1
            if best is None or end - start > best[2] - best[1]:
                best = (t, start, end)
            j = end - n + 1  # the next n-gram that is not inside this span
        if best is None:
            return None
        return position[distinct[best[0]]], " ".join(words[best[1] : best[2]])

    out: list[tuple[int, int, str]] = []
    found: dict[str, tuple[int, str] | None] = {}
    for e, key in enumerate(eval):
        if key not in found:
            found[key] = longest(content(key.split())) if index else None
        hit = found[key]
        if hit is not None:
            out.append((e, hit[0], hit[1]))
    return out


def _buckets(found: list[tuple[int, int, int]]) -> dict[str, int]:
    out = {}
    for low, high in CONTAIN_BUCKETS:
        name = f"{low}-{high} words" if high else f"{low}+ words"
        out[name] = sum(1 for _, _, w in found if w >= low and (high is None or w <= high))
    return out


def leakage(train: list[TextRow], eval: list[TextRow], threshold: float, ngram: int = NGRAM_WORDS) -> dict:
    """Train rows whose input also appears in eval: exactly, near-exactly, contained word for word, or sharing a
    sequence of `ngram` words (counted per eval row that is not an exact copy)."""
    eval_keys = _groups_by_key(eval)
    exact = [(i, eval_keys[row.key][0]) for i, row in enumerate(train) if row.key in eval_keys]
    exact_train = {i for i, _ in exact}

    # Near: index the distinct eval texts, query each distinct train text not already an exact match.
    eval_list = list(eval_keys)
    eval_sets = [shingles(k) for k in eval_list]
    sketch = _Sketcher()
    index = _lsh(threshold)
    for j, key in enumerate(eval_list):
        if len(key.split()) >= SHINGLE_WORDS:
            index.insert(j, sketch(eval_sets[j]))
    near: list[tuple[int, int, float]] = []
    if not index.is_empty():
        seen: dict[str, tuple[int, float] | None] = {}
        for i, row in enumerate(train):
            if i in exact_train or len(row.key.split()) < SHINGLE_WORDS:
                continue
            if row.key not in seen:
                shingle_set = shingles(row.key)
                best = None
                for j in index.query(sketch(shingle_set)):
                    sim = jaccard(shingle_set, eval_sets[j])
                    if sim >= threshold and (best is None or sim > best[1]):
                        best = (j, sim)
                seen[row.key] = best
            hit = seen[row.key]
            if hit is not None:
                near.append((i, eval_keys[eval_list[hit[0]]][0], hit[1]))

    train_keys = [row.key for row in train]
    train_set = set(train_keys)
    eval_only = [row.key for row in eval]
    # Phrases of 3+ words are found and bucketed by length; only those of CONTAIN_MIN_WORDS+ count as leakage.
    train_phrases = _contained(train_keys, eval_only, CONTAIN_REPORT_WORDS)
    eval_phrases = _contained(eval_only, train_keys, CONTAIN_REPORT_WORDS)
    train_in_eval = [(i, j) for i, j, w in train_phrases if w >= CONTAIN_MIN_WORDS]
    eval_in_train = [(i, j) for i, j, w in eval_phrases if w >= CONTAIN_MIN_WORDS]
    exact_eval = {j for _, j in exact} | {j for j, row in enumerate(eval) if row.key in train_set}
    shared = [(j, i, span) for j, i, span in shared_ngrams(train_keys, eval_only, ngram) if j not in exact_eval]
    leaked = exact_train | {i for i, _, _ in near} | {i for i, _ in train_in_eval} | {j for _, j in eval_in_train}
    leaked |= {i for _, i, _ in shared}
    eval_hit = exact_eval | {j for _, j, _ in near} | {j for _, j in train_in_eval} | {i for i, _ in eval_in_train}
    eval_hit |= {j for j, _, _ in shared}

    def pair(i: int, j: int, **more: object) -> dict:
        return {
            "train": train[i].ref,
            "eval": eval[j].ref,
            "train_text": snippet(train[i].shown),
            "eval_text": snippet(eval[j].shown),
            **more,
        }

    longest_train = sorted(train_phrases, key=lambda f: -f[2])[: MAX_EXAMPLES // 2]
    longest_eval = sorted(eval_phrases, key=lambda f: -f[2])[: MAX_EXAMPLES // 2]
    longest_shared = sorted(shared, key=lambda f: -len(f[2].split()))
    return {
        "checked": True,
        "train_rows": len(leaked),
        "eval_rows": len(eval_hit),
        "exact": len(exact),
        "near": len(near),
        "near_threshold": threshold,
        "contained_min_words": CONTAIN_MIN_WORDS,
        "train_in_eval": len(train_in_eval),
        "eval_in_train": len(eval_in_train),
        "ngram_words": ngram,
        "ngram": len(shared),
        "ngram_common_texts": NGRAM_COMMON_TEXTS,
        "phrases": {"train_in_eval": _buckets(train_phrases), "eval_in_train": _buckets(eval_phrases)},
        "exact_examples": [pair(i, j) for i, j in exact[:MAX_EXAMPLES]],
        "near_examples": [pair(i, j, similarity=round(s, 3)) for i, j, s in near[:MAX_EXAMPLES]],
        "phrase_examples": [pair(i, j, words=w, where="train row inside eval row") for i, j, w in longest_train]
        + [pair(j, i, words=w, where="eval row inside train row") for i, j, w in longest_eval],
        "ngram_examples": [
            pair(i, j, words=len(span.split()), span=snippet(span)) for j, i, span in longest_shared[:MAX_EXAMPLES]
        ],
    }
