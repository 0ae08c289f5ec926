"""Sentiment of news and social text: a finance lexicon model, daily aggregates, look-ahead-free bar features.

The model ships with its data (``features/lexicon/finance_lexicon.tsv``, documented in the README beside it),
so nothing is downloaded at run time. From raw text to features aligned with bars:

1. :func:`prepare_items` checks a frame of items (headlines, tweets) and gives each one ``available_at``: the
   time from which it may be used, and the ``symbol`` it is about (``"*"`` for market-wide items).
2. :class:`FinanceSentiment` scores texts (:meth:`~FinanceSentiment.score`); :func:`score_items` adds the
   scores to prepared items.
3. :func:`daily_sentiment` aggregates scored items per (day, symbol).
4. :func:`align_sentiment` turns items into one row per bar; :class:`SentimentStream` is its incremental twin
   (same rows to 1e-9 when fed the same items and bars in time order).

Scoring
-------
Text is normalised for the upstream quirks of our data (spaced-out punctuation such as ``"U . S ."`` and
``"4 . 6%"``, HTML entities, ``URL`` and ``@USER`` placeholders, retweet markers), lower-cased, and split into
words (hyphenated and ``n't`` forms kept whole, possessive ``'s`` dropped), emoji, emoticons, signed
percentages (``+2.5%``, ``-1.0%``) and clause punctuation. Cashtags (``$AAPL``), URLs, mentions and bare
numbers are removed: a ticker is not an opinion. Lexicon terms are then matched, phrases first (longest, then
leftmost), so ``"short squeeze"`` (positive) wins over ``"short"`` (negative) and ``"rate cut"`` over
``"cut"``. Each sentiment term of valence ``v`` in [-4, 4] contributes::

    v * (negation_factor if a negator is among the negation_scope terms before it in its clause, else 1)
      * max(0, 1 + sum of intensifier/diminisher values among the modifier_scope terms before it)
      * contrast weight (terms before the first "but" x contrast_before_weight, after it x
        contrast_after_weight; terms after "despite"/"although" in the same clause x concession_weight)

A clause ends at ``. , ; : ! ? |``, an ellipsis or a dash (en or em). The text's sum ``x`` gives
``compound = x / sqrt(x**2 + alpha)`` in (-1, 1); ``positive``, ``negative`` and ``neutral`` are the shares of
positive contributions, negative contributions (absolute) and sentiment-free terms (each counting 1), summing
to 1 (``neutral`` is 1 for a text with no terms). ``label`` is +1 / -1 where ``compound`` is at least
``neutral_threshold`` above / below zero, else 0. Text in other languages simply finds no lexicon terms
(``n_hits == 0``) and scores 0.

A text's scores depend on that text only, never on the batch it is scored in. Scoring is vectorised (a few
regex passes over the joined texts, then numpy over the token ids): about 100,000 texts a second on one core,
so the 173k headlines and tweets of the shared data take under 2 s.

Alignment (no look-ahead)
-------------------------
``available_at`` is the publication time when the item carries one (tweets). For a **date-only** item (the
headlines have a date and no time) the time of day is unknown, so it becomes available at the **end of its
date**: midnight after it in ``date_tz`` (UTC by default, i.e. ``date + 1 day 00:00 UTC``). Pass
``date_tz="America/New_York"`` for dates kept in New York time; that is later, hence safer, than UTC.

Bars are labelled by their **start** time. The features of the bar labelled ``ts`` use only items with
``available_at <= ts``: what is known when the bar opens, so they may drive a decision taken during that bar.
A date-only headline of day ``D`` therefore reaches the daily bar of ``D + 1`` at the earliest, never the bar
of ``D``; a tweet published at 14:00 reaches the bars starting at 14:00 or later (``available_at == ts``
counts). Bars labelled by their end time must be passed as their start times, or the features of a bar would
include items published during it.

Per bar ``k`` (``sent_*`` columns, :data:`ALIGNED_COLUMNS`):

``sent_count``
    Items with ``ts[k-1] < available_at <= ts[k]`` (the first bar takes every item up to ``ts[0]``).
``sent_mean``, ``sent_pos_share``, ``sent_neg_share``
    Mean ``compound`` and shares of items labelled +1 / -1 over those items; **0.0 when the bar has no item**
    (``sent_count == 0`` tells "no news" from "neutral news").
``sent_ewm``
    Exponentially weighted mean ``compound`` of every item so far, weights halving every ``ewm_halflife``
    bars (items of bar ``k`` weigh 1 at bar ``k``) or days (an item weighs ``2 ** -(age / half-life)``).
    0.0 before the first item.
``sent_ewm_weight``
    The sum of those weights: a decayed item count, which fades to 0 when the news stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import (
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    EmptyRangeError,
    UnknownSymbolError,
    did_you_mean,
)

__all__ = [
    "ALIGNED_COLUMNS",
    "LEXICON_KINDS",
    "MARKET_SYMBOL",
    "SCORE_COLUMNS",
    "FinanceSentiment",
    "Lexicon",
    "SentimentAlignConfig",
    "SentimentConfig",
    "SentimentRow",
    "SentimentStream",
    "align_sentiment",
    "daily_sentiment",
    "load_lexicon",
    "prepare_items",
    "score_items",
    "tokenize",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Symbol of market-wide items (headlines that name no ticker), unless another one is configured.
MARKET_SYMBOL = "*"
#: Columns :meth:`FinanceSentiment.score` returns, in order.
SCORE_COLUMNS: tuple[str, ...] = (
    "compound",
    "positive",
    "negative",
    "neutral",
    "n_hits",
    "n_tokens",
    "label",
)
#: Columns of :func:`align_sentiment` and fields of :class:`SentimentRow` (after ``ts``), in order.
ALIGNED_COLUMNS: tuple[str, ...] = (
    "sent_count",
    "sent_mean",
    "sent_pos_share",
    "sent_neg_share",
    "sent_ewm",
    "sent_ewm_weight",
)
#: Kinds of lexicon entries and what their ``value`` means.
LEXICON_KINDS: dict[str, str] = {
    "word": "valence in [-4, 4] of a single token",
    "phrase": "valence in [-4, 4] of two to five tokens, matched before single words",
    "marker": "valence in [-4, 4] of an emoji, emoticon or signed percentage (+% / -%)",
    "negator": "0 (flips the following terms by negation_factor)",
    "intensifier": "relative boost in (0, 1] of the following sentiment term",
    "diminisher": "relative cut in [-1, 0) of the following sentiment term",
    "contrast": "0 (the text after it weighs contrast_after_weight, before it contrast_before_weight)",
    "concession": "0 (the rest of its clause weighs concession_weight)",
}

_DEFAULT_LEXICON = "finance_lexicon.tsv"
_MAX_PHRASE_TOKENS = 5
_CHUNK_TEXTS = 20_000  # texts tokenised at once: bounds the memory of the token lists
_NS_PER_DAY = 86_400 * 10**9

# Unit kinds (int8 codes).
_NONE, _BOUNDARY, _SENT, _NEGATOR, _MODIFIER, _CONTRAST, _CONCESSION = range(7)
_KIND_CODE = {
    "word": _SENT,
    "phrase": _SENT,
    "marker": _SENT,
    "negator": _NEGATOR,
    "intensifier": _MODIFIER,
    "diminisher": _MODIFIER,
    "contrast": _CONTRAST,
    "concession": _CONCESSION,
}
_KIND_NAME = {
    _NONE: "",
    _BOUNDARY: "boundary",
    _SENT: "sentiment",
    _NEGATOR: "negator",
    _MODIFIER: "modifier",
    _CONTRAST: "contrast",
    _CONCESSION: "concession",
}
# Reserved token ids: other words, clause punctuation, the separator between texts.
_OTHER_ID, _BOUNDARY_ID, _SEP_ID = 0, 1, 2
_SEP = " \x00 "

# ---------------------------------------------------------------------------------------------- tokeniser
# Emoticons, signed percentages and hearts become characters of the supplementary private-use plane 16, so
# one token regex finds them and ordinary text does not collide with them. Every pattern starts with a
# literal or a rare character (look-behinds come after it): sre then skips ahead fast, which keeps scoring
# of the 170k texts in the shared data to a few seconds.
_EMOTICON_TEXT = {
    "\U00100000": ":)",
    "\U00100001": ";)",
    "\U00100002": ":(",
    "\U00100003": ":/",
    "\U00100004": ":p",
    "\U00100005": "<3",
    "\U00100006": "+%",
    "\U00100007": "-%",
}
_SMILE, _WINK, _FROWN, _SKEPTIC, _TONGUE, _HEART, _PCT_UP, _PCT_DOWN = (f" {c} " for c in _EMOTICON_TEXT)
_PLACEHOLDERS = re.compile(r"(?:https?://|www\.)\S*|@\w+|URL\b(?<!\wURL)|RT\b(?<!\wRT)")
_DECIMAL_MARK = re.compile(r"(\d) ?[.,] ?(?=\d)")  # "4 . 6" and "4.6" -> "4 6": numbers are not tokens
# "U . S ." -> "U S", "U.S." -> "US"
_SPACED_ABBREVIATION = re.compile(r"\.(?:(?<=\b[A-Za-z]\.)|(?<=\b[A-Za-z] \.)) ?([A-Za-z]) ?\.(?!\w)")
_SIGNED_PERCENT = re.compile(r"[+\-\u2212](?<![\w.][+\-\u2212]) ?(?:\d+(?: ?[.,] ?\d+)? ?)?%")
_EMOTICON = re.compile(
    r"(?:[:;=](?<!\S[:;=])[-o'^]?(?:[)\]dD}]+|[(\[{]+|[/\\|]|[pP])"
    r"|\((?<!\S\()\(*[-o'^]?[:=]|\)(?<!\S\))\)*[-o'^]?[:=]|<(?<![^\s]<)3+)(?=\s|$|[.,!?])"
)
_POSSESSIVE = re.compile(r"'s\b(?<=\w's)")
_CASHTAG = re.compile(r"\$(?<![\w$]\$)[^\W\d_][\w.\-]*")
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0e\ufe0f\u200d]")  # skin tones, VS15/16, ZWJ
_ENTITIES = (("&amp;", "&"), ("&gt;", ">"), ("&lt;", "<"), ("&quot;", '"'), ("&#39;", "'"), ("&apos;", "'"))
_BOUNDARY_CHARS = ".,;:!?\u2026|\u2013\u2014"
_TOKEN_RE = re.compile(
    "\x00"
    "|[\U00100000-\U001000ff]"
    "|[\U0001f300-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2190-\u21ff]"
    r"|[^\W\d_][^\W_]*(?:['\-][^\W_]+)*"
    r"|\d+(?:-[^\W_]+)+"
    f"|[{re.escape(_BOUNDARY_CHARS)}]"
)


def _emoticon(match: re.Match[str]) -> str:
    text = match.group()
    first, last = text[0], text[-1]
    if first == "<":
        return _HEART
    if first in "()":  # reversed, "(:" or "):"
        return _SMILE if first == "(" else _FROWN
    if last in "pP":
        return _TONGUE
    if last in "/\\|":
        return _SKEPTIC
    if last in "([{":
        return _FROWN
    return _WINK if first == ";" else _SMILE


def _normalise(joined: str) -> str:
    joined = joined.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for entity, char in _ENTITIES:
        joined = joined.replace(entity, char)
    joined = _PLACEHOLDERS.sub(" ", joined)
    joined = _SIGNED_PERCENT.sub(lambda m: _PCT_UP if m.group()[0] == "+" else _PCT_DOWN, joined)
    joined = _DECIMAL_MARK.sub(r"\1 ", joined)
    joined = _SPACED_ABBREVIATION.sub(r"\1", joined)
    joined = _EMOTICON.sub(_emoticon, joined).lower()
    joined = _POSSESSIVE.sub("", joined)
    joined = _CASHTAG.sub(" ", joined)
    return _EMOJI_MODIFIERS.sub("", joined)


def _raw_tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(_normalise(text))


def tokenize(text: str) -> list[str]:
    """The tokens the model sees in ``text`` (emoticons and signed percentages in their lexicon spelling).

    Parameters
    ----------
    text
        One text.

    Returns
    -------
    list of str
        Lower-cased words, emoji, emoticons (``":)"``, ``":("``...), signed percentages (``"+%"``,
        ``"-%"``) and clause punctuation, in order; cashtags, URLs, mentions and bare numbers removed.
    """
    if not isinstance(text, str):
        raise DataFormatError(f"tokenize takes one str, got {type(text).__name__}.")
    return [_EMOTICON_TEXT.get(tok, tok) for tok in _raw_tokens(text.replace("\x00", " "))]


# ---------------------------------------------------------------------------------------------- lexicon
@dataclass(frozen=True, eq=False)
class Lexicon:
    """A compiled lexicon: the entries plus the lookup tables the scorer uses.

    Attributes
    ----------
    entries
        One row per entry with columns ``term``, ``kind``, ``value`` (see :data:`LEXICON_KINDS`) and
        ``n_tokens``, in file order.
    source
        Where it was read from.
    vocabulary, token_kind, token_value, phrase_keys, phrase_kind, phrase_value
        The compiled lookup tables the scorer uses (token ids, per-token kind and value, phrase keys by
        length); internal, subject to change.
    """

    entries: pd.DataFrame
    source: str
    vocabulary: dict[str, int]
    token_kind: npt.NDArray[np.int8]
    token_value: FloatArray
    phrase_keys: dict[int, IntArray]
    phrase_kind: dict[int, npt.NDArray[np.int8]]
    phrase_value: dict[int, FloatArray]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        counts = self.entries["kind"].value_counts()
        kinds = ", ".join(f"{k} {n}" for k, n in counts.items())
        return f"Lexicon({len(self)} entries from {self.source}: {kinds})"


def _lexicon_error(source: str, line: int, problem: str) -> DataFormatError:
    return DataFormatError(
        f"lexicon {source}, line {line}: {problem}. Each line is 'term<TAB>kind<TAB>value' under the header "
        f"'term\\tkind\\tvalue'; kinds: {', '.join(LEXICON_KINDS)} (see features/lexicon/README.md)."
    )


def _check_entry(source: str, line: int, term: str, kind: str, value: float, tokens: list[str]) -> None:
    if kind not in LEXICON_KINDS:
        raise _lexicon_error(source, line, f"unknown kind {kind!r}.{did_you_mean(kind, LEXICON_KINDS)}")
    if not np.isfinite(value):
        raise _lexicon_error(source, line, f"value {value!r} is not finite")
    if not tokens:
        raise _lexicon_error(
            source, line, f"term {term!r} has no tokens (only punctuation, numbers or tickers)"
        )
    if any(tok in _BOUNDARY_CHARS for tok in tokens):
        raise _lexicon_error(source, line, f"term {term!r} contains clause punctuation, which never matches")
    if len(tokens) > _MAX_PHRASE_TOKENS:
        raise _lexicon_error(
            source, line, f"term {term!r} has {len(tokens)} tokens; at most {_MAX_PHRASE_TOKENS}"
        )
    single = len(tokens) == 1
    if kind == "word" and not single:
        raise _lexicon_error(source, line, f"word {term!r} tokenises to {tokens}; use kind 'phrase'")
    if kind == "phrase" and single:
        raise _lexicon_error(source, line, f"phrase {term!r} is a single token {tokens}; use kind 'word'")
    if kind == "marker" and not (single and not tokens[0][0].isalpha()):
        raise _lexicon_error(
            source, line, f"marker {term!r} must be one emoji or emoticon, got tokens {tokens}"
        )
    if kind in ("word", "phrase", "marker") and not -4.0 <= value <= 4.0:
        raise _lexicon_error(source, line, f"valence {value} of {term!r} is outside [-4, 4]")
    if kind == "intensifier" and not 0.0 < value <= 1.0:
        raise _lexicon_error(source, line, f"intensifier {term!r} needs a value in (0, 1], got {value}")
    if kind == "diminisher" and not -1.0 <= value < 0.0:
        raise _lexicon_error(source, line, f"diminisher {term!r} needs a value in [-1, 0), got {value}")
    if kind in ("negator", "contrast", "concession") and value != 0.0:
        raise _lexicon_error(source, line, f"{kind} {term!r} must have value 0 (its effect is configured)")


def _read_lexicon_text(path: Path | None) -> tuple[str, str]:
    if path is None:
        resource = resources.files("alphaloom.features").joinpath("lexicon", _DEFAULT_LEXICON)
        return resource.read_text(encoding="utf-8"), f"alphaloom/features/lexicon/{_DEFAULT_LEXICON}"
    if not path.is_file():
        raise DataNotFoundError(
            f"lexicon file {path} does not exist; pass an existing TSV, or lexicon_path=None for ours."
        )
    return path.read_text(encoding="utf-8"), str(path)


@lru_cache(maxsize=8)
def _load_lexicon_cached(path: Path | None) -> Lexicon:
    text, source = _read_lexicon_text(path)
    lines = text.splitlines()
    if not lines or lines[0].rstrip("\r").split("\t") != ["term", "kind", "value"]:
        got = lines[0] if lines else "an empty file"
        raise _lexicon_error(source, 1, f"expected the header 'term\\tkind\\tvalue', got {got!r}")
    terms: list[str] = []
    kinds: list[str] = []
    values: list[float] = []
    token_lists: list[list[str]] = []
    first_line: dict[tuple[str, ...], int] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise _lexicon_error(source, line_no, f"expected 3 tab-separated fields, got {len(fields)}")
        term, kind, raw_value = fields
        try:
            value = float(raw_value)
        except ValueError:
            raise _lexicon_error(source, line_no, f"value {raw_value!r} is not a number") from None
        tokens = _raw_tokens(term)
        _check_entry(source, line_no, term, kind, value, tokens)
        key = tuple(tokens)
        if key in first_line:
            raise _lexicon_error(
                source,
                line_no,
                f"term {term!r} repeats the term on line {first_line[key]} (same tokens {tokens})",
            )
        first_line[key] = line_no
        terms.append(term)
        kinds.append(kind)
        values.append(value)
        token_lists.append(tokens)
    if not terms:
        raise _lexicon_error(source, 2, "the lexicon has no entries")

    vocabulary = {"\x00": _SEP_ID, **dict.fromkeys(_BOUNDARY_CHARS, _BOUNDARY_ID)}
    n_ids = _SEP_ID + 1
    for tokens in token_lists:
        for tok in tokens:
            if tok not in vocabulary:
                vocabulary[tok] = n_ids
                n_ids += 1
    if n_ids**_MAX_PHRASE_TOKENS >= 2**62:
        raise _lexicon_error(
            source, len(lines), f"{n_ids} distinct tokens are too many for 64-bit phrase keys"
        )
    token_kind = np.zeros(n_ids, dtype=np.int8)
    token_kind[_BOUNDARY_ID] = _BOUNDARY
    token_value = np.zeros(n_ids, dtype=np.float64)
    phrases: dict[int, list[tuple[int, int, float]]] = {}
    for tokens, kind, value in zip(token_lists, kinds, values, strict=True):
        code = _KIND_CODE[kind]
        if len(tokens) == 1:
            tid = vocabulary[tokens[0]]
            token_kind[tid] = code
            token_value[tid] = value
        else:
            key = 0
            for tok in tokens:
                key = key * n_ids + vocabulary[tok]
            phrases.setdefault(len(tokens), []).append((key, code, value))
    phrase_keys, phrase_kind, phrase_value = {}, {}, {}
    for length, rows in sorted(phrases.items()):
        rows.sort()
        phrase_keys[length] = np.array([r[0] for r in rows], dtype=np.int64)
        phrase_kind[length] = np.array([r[1] for r in rows], dtype=np.int8)
        phrase_value[length] = np.array([r[2] for r in rows], dtype=np.float64)
    entries = pd.DataFrame(
        {
            "term": terms,
            "kind": kinds,
            "value": np.array(values, dtype=np.float64),
            "n_tokens": np.array([len(t) for t in token_lists], dtype=np.int64),
        }
    )
    return Lexicon(
        entries, source, vocabulary, token_kind, token_value, phrase_keys, phrase_kind, phrase_value
    )


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read and compile a lexicon TSV (cached per resolved path for the life of the process).

    Parameters
    ----------
    path
        A TSV with header ``term<TAB>kind<TAB>value``; ``None`` for the lexicon shipped with alphaloom.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        A malformed line: wrong header or field count, unknown kind, value out of range, a term that does not
        tokenise as its kind requires, or a repeated term (the message names the line).
    """
    return _load_lexicon_cached(None if path is None else Path(path).resolve())


# ---------------------------------------------------------------------------------------------- model
class SentimentConfig(ComponentConfig):
    """Settings of :class:`FinanceSentiment` (see the module docstring for the scoring rule).

    Parameters
    ----------
    negation_scope
        How many terms before a sentiment term are searched for negators (same clause).
    negation_factor
        Factor applied when a negator is in scope, once however many there are (negative: "not good" scores
        as mildly bad).
    modifier_scope
        How many terms before a sentiment term are searched for intensifiers and diminishers.
    contrast_before_weight, contrast_after_weight
        Weights of the sentiment before and after the first contrast word ("but", "however").
    concession_weight
        Weight of the sentiment in the rest of a clause opened by "despite", "although"...
    alpha
        Normalisation of ``compound = x / sqrt(x**2 + alpha)``; larger values need more evidence.
    neutral_threshold
        ``|compound|`` below which the label is 0 (neutral).
    lexicon_path
        A lexicon TSV to use instead of the shipped one.
    """

    negation_scope: Annotated[int, Field(ge=0, le=10)] = 3
    negation_factor: Annotated[float, Field(ge=-1.0, le=0.0)] = -0.75
    modifier_scope: Annotated[int, Field(ge=0, le=5)] = 2
    contrast_before_weight: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5
    contrast_after_weight: Annotated[float, Field(ge=0.0, le=4.0)] = 1.5
    concession_weight: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5
    alpha: Annotated[float, Field(gt=0.0, le=1000.0)] = 15.0
    neutral_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    lexicon_path: Path | None = None


def _check_texts(texts: Any, what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise DataFormatError(f"{what} must be a sequence of str, got a single str; wrap it: [text].")
    if isinstance(texts, pd.DataFrame):
        raise DataFormatError(
            f"{what} must be a sequence of str, got a DataFrame; pass one column, e.g. df['text']."
        )
    try:
        values = texts.tolist() if isinstance(texts, pd.Series | np.ndarray) else list(texts)
    except TypeError:
        raise DataFormatError(f"{what} must be a sequence of str, got {type(texts).__name__}.") from None
    bad = [i for i, t in enumerate(values) if not isinstance(t, str)]
    if bad:
        first = bad[0]
        label = texts.index[first] if isinstance(texts, pd.Series) else first
        raise DataFormatError(
            f"{what} must all be str, but {len(bad)} of {len(values)} are not (first at {label!r}: "
            f"{type(values[first]).__name__} {values[first]!r}). Missing text is not silently scored as "
            "neutral: drop those rows or fill them, e.g. texts.fillna('')."
        )
    return values


class _Units(NamedTuple):
    doc: IntArray
    token_start: IntArray
    n_tokens: IntArray
    kind: npt.NDArray[np.int8]
    value: FloatArray
    n_negators: IntArray
    multiplier: FloatArray
    weight: FloatArray
    contribution: FloatArray


class FinanceSentiment:
    """Lexicon sentiment model for finance news and social text (scikit-learn style, nothing to fit).

    Parameters
    ----------
    config
        Scoring settings; ``None`` takes the defaults.

    Examples
    --------
    >>> model = FinanceSentiment()
    >>> texts = ["Dish results beat estimates , shares jump", "Boeing warns of job cuts"]
    >>> model.score(texts)["label"].tolist()
    [1, -1]
    """

    def __init__(self, config: SentimentConfig | None = None) -> None:
        if config is None:
            config = SentimentConfig()
        if not isinstance(config, SentimentConfig):
            raise ConfigError(f"FinanceSentiment takes a SentimentConfig, got {type(config).__name__}.")
        self.config = config
        self._lexicon = load_lexicon(config.lexicon_path)

    def __repr__(self) -> str:
        return f"FinanceSentiment({self.config!r})"

    @property
    def lexicon(self) -> Lexicon:
        """The compiled lexicon."""
        return self._lexicon

    def fit(self, X: Any = None, y: Any = None) -> Self:
        """Nothing is learned (the lexicon is fixed); returns ``self`` so the model fits in pipelines."""
        return self

    def score(self, texts: Sequence[str] | pd.Series) -> pd.DataFrame:
        """Score texts.

        Parameters
        ----------
        texts
            Shape ``(n,)``, every element a str.

        Returns
        -------
        pandas.DataFrame
            Shape ``(n, 7)``, columns :data:`SCORE_COLUMNS`: ``compound`` in (-1, 1); ``positive``,
            ``negative``, ``neutral`` shares summing to 1; ``n_hits`` (sentiment terms found), ``n_tokens``
            (terms, punctuation excluded); ``label`` in {-1, 0, 1}. The index is that of ``texts`` when it
            is a Series, else a range.

        Raises
        ------
        DataFormatError
            An element is not a str (the message names the first).
        """
        values = _check_texts(texts)
        index = texts.index if isinstance(texts, pd.Series) else pd.RangeIndex(len(values))
        parts = [self._score_chunk(values[i : i + _CHUNK_TEXTS]) for i in range(0, len(values), _CHUNK_TEXTS)]
        columns = {}
        for j, name in enumerate(SCORE_COLUMNS):
            col = np.concatenate([p[j] for p in parts]) if parts else np.zeros(0)
            columns[name] = col.astype(np.int64 if name in ("n_hits", "n_tokens", "label") else np.float64)
        return pd.DataFrame(columns, index=index)

    def transform(self, texts: Sequence[str] | pd.Series) -> FloatArray:
        """``compound``, ``positive``, ``negative``, ``neutral`` as an array of shape ``(n, 4)``."""
        return self.score(texts)[list(SCORE_COLUMNS[:4])].to_numpy(dtype=np.float64)

    def predict(self, texts: Sequence[str] | pd.Series) -> IntArray:
        """Labels in {-1, 0, 1}, shape ``(n,)``."""
        return self.score(texts)["label"].to_numpy(dtype=np.int64)

    def explain(self, text: str) -> pd.DataFrame:
        """How ``text`` was scored: one row per matched term and its contribution to the sum ``x``.

        Returns
        -------
        pandas.DataFrame
            Columns ``term``, ``kind`` (sentiment, negator, modifier, contrast, concession or "" for other
            words), ``valence``, ``negators`` (in scope), ``multiplier`` (intensifiers), ``weight``
            (contrast) and ``contribution``; punctuation rows are left out.
        """
        if not isinstance(text, str):
            raise DataFormatError(f"explain takes one str, got {type(text).__name__}.")
        tokens = tokenize(text)
        ids = self._ids(_raw_tokens(text.replace("\x00", " ")))
        units = self._units(ids, np.zeros(len(ids), dtype=np.int64), 1)
        keep = units.kind != _BOUNDARY
        terms = [
            " ".join(tokens[s : s + n])
            for s, n in zip(units.token_start[keep], units.n_tokens[keep], strict=True)
        ]
        return pd.DataFrame(
            {
                "term": terms,
                "kind": [_KIND_NAME[int(k)] for k in units.kind[keep]],
                "valence": units.value[keep],
                "negators": units.n_negators[keep],
                "multiplier": units.multiplier[keep],
                "weight": units.weight[keep],
                "contribution": units.contribution[keep],
            }
        )

    # ------------------------------------------------------------------------------------- internals
    def _ids(self, tokens: list[str]) -> IntArray:
        get = self._lexicon.vocabulary.get
        return np.array([get(t, _OTHER_ID) for t in tokens], dtype=np.int64)

    def _score_chunk(self, texts: list[str]) -> tuple[np.ndarray, ...]:
        n_docs = len(texts)
        joined = _SEP.join(texts)
        if n_docs and joined.count("\x00") != n_docs - 1:  # a text held the separator: blank it out
            joined = _SEP.join(t.replace("\x00", " ") for t in texts)
        ids = self._ids(_TOKEN_RE.findall(_normalise(joined)))
        is_sep = ids == _SEP_ID
        doc = np.cumsum(is_sep)
        keep = ~is_sep
        units = self._units(ids[keep], doc[keep], n_docs)
        return self._aggregate(units, n_docs)

    def _units(self, ids: IntArray, doc: IntArray, n_docs: int) -> _Units:
        lex, cfg = self._lexicon, self.config
        n = len(ids)
        covered = np.zeros(n, dtype=bool)
        start_kind = lex.token_kind[ids].copy()
        start_value = lex.token_value[ids].copy()
        span = np.ones(n, dtype=np.int64)
        n_ids = len(lex.token_kind)
        for length in sorted(lex.phrase_keys, reverse=True):
            if n < length:
                continue
            m = n - length + 1
            key = ids[:m].copy()
            for j in range(1, length):
                key = key * n_ids + ids[j : m + j]
            table = lex.phrase_keys[length]
            pos = np.minimum(np.searchsorted(table, key), len(table) - 1)
            found = (table[pos] == key) & (doc[:m] == doc[length - 1 :])
            cand = np.flatnonzero(found)
            if cand.size == 0:
                continue
            filled = np.concatenate(([0], np.cumsum(covered)))
            cand = cand[filled[cand + length] == filled[cand]]
            kept: list[int] = []
            end = -1
            for c in cand.tolist():  # leftmost wins among overlapping matches of one length
                if c >= end:
                    kept.append(c)
                    end = c + length
            starts = np.asarray(kept, dtype=np.int64)
            covered[(starts[:, None] + np.arange(length)).ravel()] = True
            start_kind[starts] = lex.phrase_kind[length][pos[starts]]
            start_value[starts] = lex.phrase_value[length][pos[starts]]
            span[starts] = length
        # A phrase becomes one unit at its first token; its other tokens disappear.
        unit_mask = ~covered | (span > 1)
        pos_u = np.flatnonzero(unit_mask)
        kind = start_kind[pos_u]
        value = start_value[pos_u]
        doc_u = doc[pos_u]
        m = len(pos_u)
        idx = np.arange(m)

        new_doc = np.ones(m, dtype=bool)
        new_doc[1:] = doc_u[1:] != doc_u[:-1]
        doc_first = np.maximum.accumulate(np.where(new_doc, idx, 0)) if m else idx
        last_break = np.maximum.accumulate(np.where(kind == _BOUNDARY, idx, -1)) if m else idx
        clause_lo = np.maximum(doc_first, last_break + 1)

        is_neg = (kind == _NEGATOR).astype(np.int64)
        neg_cum = np.concatenate(([0], np.cumsum(is_neg)))
        lo = np.minimum(np.maximum(clause_lo, idx - cfg.negation_scope), idx)
        n_neg = neg_cum[idx] - neg_cum[lo]

        mod_value = np.where(kind == _MODIFIER, value, 0.0)
        mod_sum = np.zeros(m)
        for k in range(
            1, cfg.modifier_scope + 1
        ):  # shifted adds keep each text's sum independent of the batch
            prev = idx - k
            ok = prev >= clause_lo
            mod_sum[k:] += np.where(ok[k:], mod_value[: m - k], 0.0)
        multiplier = np.maximum(0.0, 1.0 + mod_sum)

        weight = np.ones(m)
        is_con = kind == _CONTRAST
        if is_con.any():
            first_con = np.full(max(n_docs, 1), m, dtype=np.int64)
            np.minimum.at(first_con, doc_u[is_con], idx[is_con])
            fc = first_con[doc_u]
            has = fc < m
            weight = np.where(has & (idx < fc), cfg.contrast_before_weight, weight)
            weight = np.where(has & (idx > fc), cfg.contrast_after_weight, weight)
        is_conc = kind == _CONCESSION
        if is_conc.any():
            last_conc = np.maximum.accumulate(np.where(is_conc, idx, -1))
            in_conc = (last_conc >= clause_lo) & (last_conc < idx)
            weight = np.where(in_conc, weight * cfg.concession_weight, weight)

        is_sent = kind == _SENT
        # One flip however many negators are in scope: "haven't and won't upgrade" is still negative.
        factor = np.where(n_neg > 0, cfg.negation_factor, 1.0)
        contribution = np.where(is_sent, value * factor * multiplier * weight, 0.0)
        return _Units(
            doc_u,
            pos_u,
            span[pos_u],
            kind,
            np.where(kind == _BOUNDARY, 0.0, value),
            np.where(is_sent, n_neg, 0),
            np.where(is_sent, multiplier, 1.0),
            np.where(is_sent, weight, 1.0),
            contribution,
        )

    def _aggregate(self, units: _Units, n_docs: int) -> tuple[np.ndarray, ...]:
        cfg = self.config
        doc, c = units.doc, units.contribution
        is_term = units.kind != _BOUNDARY
        raw = np.bincount(doc, weights=c, minlength=n_docs)
        pos = np.bincount(doc, weights=np.maximum(c, 0.0), minlength=n_docs)
        neg = np.bincount(doc, weights=np.maximum(-c, 0.0), minlength=n_docs)
        hits = np.bincount(doc[(units.kind == _SENT) & (units.value != 0.0)], minlength=n_docs)
        n_tokens = np.bincount(doc[is_term], minlength=n_docs)
        n_neutral = np.bincount(doc[is_term & (c == 0.0)], minlength=n_docs).astype(np.float64)
        total = pos + neg + n_neutral
        safe = np.where(total > 0.0, total, 1.0)
        compound = raw / np.sqrt(raw * raw + cfg.alpha)
        thr = cfg.neutral_threshold
        label = np.where(compound >= thr, 1, np.where(compound <= -thr, -1, 0))
        if thr == 0.0:
            label = np.sign(compound).astype(np.int64)
        return (
            compound,
            np.where(total > 0.0, pos / safe, 0.0),
            np.where(total > 0.0, neg / safe, 0.0),
            np.where(total > 0.0, n_neutral / safe, 1.0),
            hits,
            n_tokens,
            label,
        )


# ---------------------------------------------------------------------------------------------- items
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _frame(frame: Any, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}.")
    return frame


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str, hint: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hints = "".join(did_you_mean(c, map(str, frame.columns)) for c in missing)
        raise DataFormatError(
            f"{what} is missing column(s) {', '.join(map(repr, missing))}.{hints} {hint} "
            f"Got columns: {', '.join(map(str, frame.columns)) or 'none'}."
        )


def _zone(date_tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(date_tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"date_tz {date_tz!r} is not a known time zone; use an IANA name such as 'UTC' or "
            "'America/New_York'."
        ) from exc


def _first_bad(mask: np.ndarray, values: pd.Series) -> str:
    i = int(np.flatnonzero(mask)[0])
    return f"{int(mask.sum())} row(s), first at index {values.index[i]!r}: {values.iloc[i]!r}"


def _parse_dates(values: pd.Series, time_col: str) -> pd.DatetimeIndex:
    """Calendar dates (strings, date objects or naive midnights) as naive midnight timestamps."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        raise DataFormatError(
            f"'{time_col}' holds timezone-aware timestamps but date_only=True; pass date_only=False to use "
            "their times, or give plain dates (YYYY-MM-DD)."
        )
    if pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = pd.DatetimeIndex(values)
    else:
        text = values.map(lambda v: v.isoformat() if _is_date(v) else v)
        ok = text.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool, copy=True)
        ok[ok] = text[ok].str.fullmatch(_DATE_RE).to_numpy(dtype=bool)
        if not ok.all():
            raise DataFormatError(
                f"'{time_col}' must hold dates written YYYY-MM-DD when date_only=True, but "
                f"{_first_bad(~ok, values)} is not one."
            )
        parsed = pd.DatetimeIndex(pd.to_datetime(text, format="%Y-%m-%d"))
    if parsed.hasnans:
        raise DataFormatError(f"'{time_col}' has missing dates: {_first_bad(parsed.isna(), values)}.")
    off_midnight = parsed != parsed.normalize()
    if off_midnight.any():
        raise DataFormatError(
            f"'{time_col}' should be dates when date_only=True, but {_first_bad(off_midnight, values)} has a "
            "time of day; pass aware timestamps with date_only=False instead."
        )
    return parsed


def _parse_times(values: pd.Series, time_col: str) -> pd.DatetimeIndex:
    """Timezone-aware timestamps as a UTC index; naive ones are refused."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = pd.DatetimeIndex(values).tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        raise DataFormatError(
            f"'{time_col}' has no timezone; localise it first, e.g. items['{time_col}'] = "
            f"items['{time_col}'].dt.tz_localize('UTC'), or pass date_only=True for dates without a time."
        )
    else:
        is_str = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if is_str.all():
            has_offset = values.str.strip().str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
            if not has_offset.all():
                raise DataFormatError(
                    f"'{time_col}' has timestamps without a UTC offset ({_first_bad(~has_offset, values)}); "
                    "we never guess a zone. Write them with an offset (2014-01-02 14:00:00+00:00), localise "
                    "parsed values with .dt.tz_localize('UTC'), or pass date_only=True for plain dates."
                )
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
        except (ValueError, TypeError) as exc:
            raise DataFormatError(
                f"could not parse '{time_col}' as timestamps ({str(exc).splitlines()[0]}); expected ISO-8601 "
                "with an offset or timezone-aware datetimes."
            ) from exc
        if not is_str.all():
            naive = values.map(lambda v: isinstance(v, datetime) and v.tzinfo is None).to_numpy(dtype=bool)
            if naive.any():
                raise DataFormatError(
                    f"'{time_col}' holds naive datetimes ({_first_bad(naive, values)}); attach a zone, e.g. "
                    "datetime(..., tzinfo=datetime.UTC)."
                )
    if parsed.hasnans:
        raise DataFormatError(f"'{time_col}' has missing timestamps: {_first_bad(parsed.isna(), values)}.")
    return parsed


def _is_date(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _looks_date_only(values: pd.Series) -> bool:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return False
    sample = values.dropna()
    if sample.empty:
        return False
    if all(_is_date(v) for v in sample.head(1000)):
        return True
    is_str = sample.map(lambda v: isinstance(v, str))
    return bool(is_str.all() and sample.str.fullmatch(_DATE_RE).all())


def prepare_items(
    frame: pd.DataFrame,
    *,
    text_col: str = "text",
    time_col: str = "timestamp",
    symbol_col: str | None = "symbol",
    date_only: bool | None = None,
    date_tz: str = "UTC",
    market_symbol: str = MARKET_SYMBOL,
) -> pd.DataFrame:
    """Check news or social items and give each one ``available_at``, ``day``, ``symbol`` and ``text``.

    Parameters
    ----------
    frame
        One row per item with a text column and a time column (and optionally a symbol column).
    text_col, time_col
        Names of the text and time columns.
    symbol_col
        Name of the symbol column; when it is ``None`` or absent every item is market-wide
        (``market_symbol``).
    date_only
        Whether ``time_col`` holds dates without a time of day. ``None`` decides from the values: strings
        all written ``YYYY-MM-DD`` (or :class:`datetime.date` objects) are dates.
    date_tz
        Zone in which the dates are calendar dates (date-only items only).
    market_symbol
        Symbol given to items without one.

    Returns
    -------
    pandas.DataFrame
        ``frame``'s rows in their order and index, with ``available_at`` (UTC): the publication time, or for
        date-only items the end of the date (midnight after it in ``date_tz``); ``day`` (UTC midnight of the
        publication date: the UTC date of timed items, the given date of date-only ones); ``symbol`` (str);
        ``text`` (str); then the other columns of ``frame``.

    Raises
    ------
    DataFormatError
        Not a frame, missing columns, a text that is not a str, a missing or empty symbol, a missing, naive or
        unparsable timestamp (the message names the first bad row and says how to fix it).
    ConfigError
        An unknown ``date_tz`` or an empty ``market_symbol``.
    """
    frame = _frame(frame, "items")
    if not isinstance(market_symbol, str) or not market_symbol:
        raise ConfigError(f"market_symbol must be a non-empty str, got {market_symbol!r}.")
    _require_columns(
        frame,
        (time_col, text_col),
        "items",
        "Name them with text_col= and time_col= (the headlines file uses text_col='headline').",
    )
    texts = frame[text_col]
    _check_texts(texts, what=f"items['{text_col}']")
    values = frame[time_col]
    if date_only is None:
        date_only = _looks_date_only(values)
    if date_only:
        zone = _zone(date_tz)
        dates = _parse_dates(values, time_col)
        end = (dates + pd.Timedelta(days=1)).tz_localize(zone, ambiguous="raise", nonexistent="shift_forward")
        available_at = end.tz_convert("UTC")
        day = dates.tz_localize("UTC")
    else:
        available_at = _parse_times(values, time_col)
        day = available_at.floor("D")
    if symbol_col is not None and symbol_col in frame.columns:
        raw = frame[symbol_col]
        ok = raw.map(lambda v: isinstance(v, str) and v.strip() != "").to_numpy(dtype=bool)
        if not ok.all():
            raise DataFormatError(
                f"items['{symbol_col}'] must be a non-empty str per row, but {_first_bad(~ok, raw)} is not. "
                f"Market-wide items take the symbol {market_symbol!r}: items['{symbol_col}'].fillna"
                f"({market_symbol!r})."
            )
        symbols = raw.astype(object).to_numpy()
    else:
        symbols = np.full(len(frame), market_symbol, dtype=object)
    out = pd.DataFrame(  # arrays, not Series: built by position, so a repeated index label is harmless
        {
            "available_at": available_at,
            "day": day,
            "symbol": symbols,
            "text": texts.to_numpy(dtype=object),
        },
        index=frame.index,
    )
    rest = [c for c in frame.columns if c not in (text_col, time_col, symbol_col) and c not in out.columns]
    for column in rest:
        out[column] = frame[column].array
    return out


def score_items(items: pd.DataFrame, model: FinanceSentiment | None = None) -> pd.DataFrame:
    """``items`` (from :func:`prepare_items`) with the :data:`SCORE_COLUMNS` of their ``text`` appended.

    Raises
    ------
    DataFormatError
        Not a frame, no ``text`` column, or a text that is not a str.
    """
    items = _frame(items, "items")
    _require_columns(items, ("text",), "items", "Prepare them with prepare_items(frame, text_col=...).")
    model = FinanceSentiment() if model is None else model
    scores = model.score(items["text"])
    out = items.copy()
    for column in SCORE_COLUMNS:  # by position: the index may repeat labels
        out[column] = scores[column].to_numpy()
    return out


def _prepared(items: Any, what: str) -> pd.DataFrame:
    frame = _frame(items, what)
    if "available_at" not in frame.columns and any(c in frame.columns for c in ("timestamp", "time", "ts")):
        raise DataFormatError(
            f"{what} have no 'available_at' column; run prepare_items(frame, ...) first: it decides when "
            "each item becomes available (date-only items at the end of their date)."
        )
    _require_columns(frame, ("available_at", "symbol"), what, "Prepare them with prepare_items(frame, ...).")
    return frame


def _scored(items_or_scores: pd.DataFrame, model: FinanceSentiment | None, what: str) -> pd.DataFrame:
    frame = _prepared(items_or_scores, what)
    if "compound" not in frame.columns or "label" not in frame.columns:
        _require_columns(frame, ("text",), what, "Give texts to score or 'compound' and 'label' scores.")
        frame = score_items(frame, model)
    if not isinstance(frame["available_at"].dtype, pd.DatetimeTZDtype):
        raise DataFormatError(
            f"{what}['available_at'] must be timezone-aware, got dtype {frame['available_at'].dtype}; build "
            "it with prepare_items, or localise it with .dt.tz_localize('UTC')."
        )
    if frame["available_at"].isna().any():
        raise DataFormatError(
            f"{what}['available_at'] has missing values: "
            f"{_first_bad(frame['available_at'].isna().to_numpy(), frame['available_at'])}."
        )
    compound = pd.to_numeric(frame["compound"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(compound) | (np.abs(compound) > 1.0)
    if bad.any():
        raise DataFormatError(
            f"{what}['compound'] must be finite and in [-1, 1]: {_first_bad(bad, frame['compound'])}."
        )
    label = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(label, (-1.0, 0.0, 1.0))
    if bad.any():
        raise DataFormatError(f"{what}['label'] must be -1, 0 or 1: {_first_bad(bad, frame['label'])}.")
    return frame


def daily_sentiment(items_or_scores: pd.DataFrame, model: FinanceSentiment | None = None) -> pd.DataFrame:
    """Aggregate items per (day, symbol).

    Parameters
    ----------
    items_or_scores
        Items from :func:`prepare_items`, scored (:func:`score_items`) or not (they are scored with
        ``model``).
    model
        Model for unscored items; ``None`` takes the default.

    Returns
    -------
    pandas.DataFrame
        One row per (``day``, ``symbol``) with at least one item, sorted by both: ``available_at`` (when the
        whole day is known: the latest ``available_at`` of its items), ``sent_count``, ``sent_mean`` (mean
        ``compound``), ``sent_pos_share``, ``sent_neg_share`` (shares labelled +1 / -1) and ``sent_hit_share``
        (share with at least one lexicon term, where the scores carry ``n_hits``). A day's aggregate uses the
        whole day: join it to bars on ``available_at``, never on ``day``, or it looks ahead.
    """
    frame = _scored(items_or_scores, model, "items")
    if "day" not in frame.columns:
        raise DataFormatError("items have no 'day' column; build them with prepare_items(frame, ...).")
    work = pd.DataFrame(
        {
            "day": frame["day"].to_numpy(),
            "symbol": frame["symbol"].astype(object).to_numpy(),
            "available_at": frame["available_at"].to_numpy(),
            "compound": frame["compound"].to_numpy(dtype=np.float64),
            "pos": (frame["label"].to_numpy() == 1).astype(np.float64),
            "neg": (frame["label"].to_numpy() == -1).astype(np.float64),
            "hit": (frame["n_hits"].to_numpy() > 0).astype(np.float64) if "n_hits" in frame else np.nan,
        }
    )
    grouped = work.groupby(["day", "symbol"], sort=True)
    out = grouped.agg(
        available_at=("available_at", "max"),
        sent_count=("compound", "size"),
        sent_mean=("compound", "mean"),
        sent_pos_share=("pos", "mean"),
        sent_neg_share=("neg", "mean"),
        sent_hit_share=("hit", "mean"),
    ).reset_index()
    out["available_at"] = (
        pd.DatetimeIndex(out["available_at"]).tz_convert("UTC") if len(out) else out["available_at"]
    )
    out["sent_count"] = out["sent_count"].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------------- alignment
class SentimentAlignConfig(ComponentConfig):
    """Smoothing of the aligned sentiment (see the module docstring for every column).

    Parameters
    ----------
    ewm_halflife
        Half-life of ``sent_ewm`` in ``ewm_unit``.
    ewm_unit
        ``"bars"``: the weights halve every ``ewm_halflife`` bars (items of one bar weigh alike);
        ``"days"``: an item's weight halves every ``ewm_halflife`` days of its age at the bar's timestamp.
    """

    ewm_halflife: Annotated[float, Field(gt=0.0, le=1e6)] = 5.0
    ewm_unit: Literal["bars", "days"] = "bars"


class SentimentRow(NamedTuple):
    """Sentiment features of one bar (see the module docstring)."""

    ts: pd.Timestamp
    sent_count: int
    sent_mean: float
    sent_pos_share: float
    sent_neg_share: float
    sent_ewm: float
    sent_ewm_weight: float


def _bar_sums(
    group: IntArray, compound: FloatArray, label: FloatArray, decay: FloatArray, n_groups: int
) -> tuple[FloatArray, ...]:
    # np.bincount adds in item order, so a bar's sums do not depend on the other bars (batch == stream).
    count = np.bincount(group, minlength=n_groups).astype(np.float64)
    total = np.bincount(group, weights=compound, minlength=n_groups)
    pos = np.bincount(group, weights=(label == 1.0).astype(np.float64), minlength=n_groups)
    neg = np.bincount(group, weights=(label == -1.0).astype(np.float64), minlength=n_groups)
    decayed = np.bincount(group, weights=compound * decay, minlength=n_groups)
    weight = np.bincount(group, weights=decay, minlength=n_groups)
    return count, total, pos, neg, decayed, weight


def _item_decay(bar_ns: IntArray, avail_ns: IntArray, config: SentimentAlignConfig) -> FloatArray:
    if config.ewm_unit == "bars":
        return np.ones(len(avail_ns))
    age_days = (bar_ns - avail_ns).astype(np.float64) / _NS_PER_DAY
    return np.exp2(-age_days / config.ewm_halflife)


def _step_decay(gap_ns: int, config: SentimentAlignConfig) -> float:
    if config.ewm_unit == "bars":
        return float(np.exp2(-1.0 / config.ewm_halflife))
    return float(np.exp2(-(gap_ns / _NS_PER_DAY) / config.ewm_halflife))


def _bar_row(
    count: float, total: float, pos: float, neg: float, ewm_sum: float, ewm_weight: float
) -> tuple[int, float, float, float, float, float]:
    if count > 0:
        mean, pos_share, neg_share = total / count, pos / count, neg / count
    else:
        mean = pos_share = neg_share = 0.0
    ewm = ewm_sum / ewm_weight if ewm_weight > 0.0 else 0.0
    return int(count), mean, pos_share, neg_share, ewm, ewm_weight


def _bar_index(bar_ts: Any) -> pd.DatetimeIndex:
    if isinstance(bar_ts, pd.DataFrame):
        if "ts" not in bar_ts.columns:
            raise DataFormatError(
                "bar_ts was given as a DataFrame without a 'ts' column; pass the bars' timestamps, "
                "e.g. bars['ts']."
            )
        bar_ts = bar_ts["ts"]
    try:
        index = pd.DatetimeIndex(bar_ts)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"bar_ts must be timestamps, got {type(bar_ts).__name__} ({exc}).") from exc
    if index.tz is None:
        raise DataFormatError(
            "bar_ts has no timezone; localise it first, e.g. bars['ts'].dt.tz_localize('UTC') (bars are "
            "labelled by their start time in UTC)."
        )
    if len(index) == 0:
        raise EmptyRangeError("bar_ts is empty; pass at least one bar timestamp.")
    if index.hasnans:
        raise DataFormatError(f"bar_ts has {int(index.isna().sum())} missing timestamps.")
    index = index.tz_convert("UTC").as_unit("ns")  # asi8 below must be nanoseconds whatever the input unit
    steps = np.diff(index.asi8)
    if (steps <= 0).any():
        first = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise DataFormatError(
            f"bar_ts must be strictly increasing, but element {first} ({index[first].isoformat()}) is not "
            f"after element {first - 1} ({index[first - 1].isoformat()}); sort and de-duplicate the bars."
        )
    return index.rename("ts")


def _check_symbol(symbol: Any, known: Iterable[str], what: str) -> str:
    if not isinstance(symbol, str) or not symbol:
        raise ConfigError(f"symbol must be a non-empty str, got {symbol!r}.")
    known = sorted(set(known))
    if symbol not in known:
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
        raise UnknownSymbolError(
            f"no {what} carry the symbol {symbol!r}.{did_you_mean(symbol, known)} Symbols present: "
            f"{shown or 'none'}. Market-wide items (headlines) use {MARKET_SYMBOL!r} unless prepare_items "
            "was given another market_symbol."
        )
    return symbol


def align_sentiment(
    items_or_scores: pd.DataFrame,
    bar_ts: pd.DatetimeIndex | pd.Series | Sequence[pd.Timestamp] | pd.DataFrame,
    *,
    symbol: str,
    config: SentimentAlignConfig | None = None,
    model: FinanceSentiment | None = None,
) -> pd.DataFrame:
    """Sentiment features of one symbol at each bar, without look-ahead.

    Parameters
    ----------
    items_or_scores
        Items from :func:`prepare_items`, scored or not (unscored ones are scored with ``model``).
    bar_ts
        Bar timestamps (bar start times), timezone-aware, strictly increasing, shape ``(n_bars,)``; or a
        bars frame with a ``ts`` column.
    symbol
        Which items to use: a ticker, or :data:`MARKET_SYMBOL` for market-wide headlines.
    config
        Smoothing; ``None`` takes the defaults.
    model
        Model for unscored items; ``None`` takes the default.

    Returns
    -------
    pandas.DataFrame
        Index ``ts`` (the bars, UTC), columns :data:`ALIGNED_COLUMNS`. Row ``k`` uses only the items with
        ``available_at <= ts[k]``; ``sent_count`` counts those that arrived since the previous bar.
        ``attrs["n_after_last_bar"]`` counts the symbol's items that arrive after the last bar (they belong
        to bars not given yet).

    Raises
    ------
    DataFormatError
        Malformed items (missing columns, naive ``available_at``, non-str text, scores out of range) or bar
        timestamps (naive, unsorted, duplicated).
    EmptyRangeError
        ``bar_ts`` is empty.
    UnknownSymbolError
        No item carries ``symbol`` (the message suggests the closest).
    """
    config = SentimentAlignConfig() if config is None else config
    if not isinstance(config, SentimentAlignConfig):
        raise ConfigError(f"config must be a SentimentAlignConfig, got {type(config).__name__}.")
    bars = _bar_index(bar_ts)
    frame = _prepared(items_or_scores, "items")
    _check_symbol(symbol, frame["symbol"].astype(object).unique(), "items")
    frame = _scored(frame[(frame["symbol"] == symbol).to_numpy(dtype=bool)], model, "items")

    avail = pd.DatetimeIndex(frame["available_at"]).tz_convert("UTC").as_unit("ns").asi8
    order = np.argsort(avail, kind="stable")
    avail = avail[order]
    compound = frame["compound"].to_numpy(dtype=np.float64)[order]
    label = frame["label"].to_numpy(dtype=np.float64)[order]
    bar_ns = bars.asi8
    group = np.searchsorted(bar_ns, avail, side="left")
    inside = group < len(bar_ns)
    group, avail, compound, label = group[inside], avail[inside], compound[inside], label[inside]
    decay = _item_decay(bar_ns[group], avail, config)
    count, total, pos, neg, decayed, weight = _bar_sums(group, compound, label, decay, len(bar_ns))

    rows = np.empty((len(bar_ns), len(ALIGNED_COLUMNS)), dtype=np.float64)
    ewm_sum = ewm_weight = 0.0
    for k in range(len(bar_ns)):
        if k:
            f = _step_decay(int(bar_ns[k] - bar_ns[k - 1]), config)
            ewm_sum, ewm_weight = ewm_sum * f, ewm_weight * f
        ewm_sum += decayed[k]
        ewm_weight += weight[k]
        rows[k] = _bar_row(count[k], total[k], pos[k], neg[k], ewm_sum, ewm_weight)
    out = pd.DataFrame(rows, index=bars, columns=list(ALIGNED_COLUMNS))
    out["sent_count"] = out["sent_count"].astype(np.int64)
    out.attrs["n_after_last_bar"] = int((~inside).sum())
    return out


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").isoformat()


def _utc_ns(ts: Any, what: str) -> int:
    try:
        stamp = pd.Timestamp(ts)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{what} must be a timestamp, got {ts!r} ({exc}).") from exc
    if stamp is pd.NaT:
        raise DataFormatError(f"{what} is missing (NaT).")
    if stamp.tzinfo is None:
        raise DataFormatError(
            f"{what} {stamp.isoformat()} has no timezone; pass an aware time, e.g. "
            "pd.Timestamp(..., tz='UTC')."
        )
    return int(stamp.tz_convert("UTC").as_unit("ns").value)


class SentimentStream:
    """Incremental twin of :func:`align_sentiment`: feed items and bar times in time order.

    Call :meth:`add_item` (or :meth:`add_score`) for each item as it becomes available and :meth:`on_bar`
    when a bar opens; an item whose ``available_at`` equals a bar's timestamp must be added before that
    :meth:`on_bar`. The rows equal :func:`align_sentiment`'s for the same items and bars (to 1e-9).

    Parameters
    ----------
    symbol
        The symbol whose items count; items of other symbols are ignored (and counted in ``n_ignored``).
    config
        Smoothing; ``None`` takes the defaults.
    model
        Scores the texts given to :meth:`add_item`; ``None`` takes the default.
    """

    def __init__(
        self, symbol: str, config: SentimentAlignConfig | None = None, model: FinanceSentiment | None = None
    ) -> None:
        if not isinstance(symbol, str) or not symbol:
            raise ConfigError(f"symbol must be a non-empty str, got {symbol!r}.")
        config = SentimentAlignConfig() if config is None else config
        if not isinstance(config, SentimentAlignConfig):
            raise ConfigError(f"config must be a SentimentAlignConfig, got {type(config).__name__}.")
        self.symbol = symbol
        self.config = config
        self._model = model
        self._pending_ns: list[int] = []
        self._pending_compound: list[float] = []
        self._pending_label: list[float] = []
        self._last_item_ns: int | None = None
        self._last_bar_ns: int | None = None
        self._ewm_sum = 0.0
        self._ewm_weight = 0.0
        self.n_items = 0
        self.n_ignored = 0

    def add_item(self, available_at: Any, text: str, symbol: str) -> None:
        """Score ``text`` and add it (see :meth:`add_score`)."""
        if not isinstance(text, str):
            raise DataFormatError(f"text must be a str, got {type(text).__name__} {text!r}.")
        if self._model is None:
            self._model = FinanceSentiment()
        scores = self._model.score([text])
        self.add_score(available_at, float(scores["compound"].iloc[0]), int(scores["label"].iloc[0]), symbol)

    def add_score(self, available_at: Any, compound: float, label: int, symbol: str) -> None:
        """Add a scored item available from ``available_at`` (aware timestamp).

        Raises
        ------
        DataFormatError
            A naive or missing time, an item older than the previous item or not after the last bar (it
            would change a bar already emitted), a score out of range, a non-str symbol.
        """
        ns = _utc_ns(available_at, "available_at")
        if not isinstance(symbol, str) or not symbol:
            raise DataFormatError(f"symbol must be a non-empty str, got {symbol!r}.")
        if self._last_item_ns is not None and ns < self._last_item_ns:
            raise DataFormatError(
                f"items must arrive in time order: {_iso(ns)} is before the previous "
                f"item ({_iso(self._last_item_ns)}). Sort items by available_at."
            )
        if self._last_bar_ns is not None and ns <= self._last_bar_ns:
            raise DataFormatError(
                f"item available at {_iso(ns)} arrived after the bar of "
                f"{_iso(self._last_bar_ns)} was emitted; add items before on_bar "
                "for every bar they precede (late items are not dropped silently)."
            )
        compound = float(compound)
        if not (np.isfinite(compound) and -1.0 <= compound <= 1.0):
            raise DataFormatError(f"compound must be finite and in [-1, 1], got {compound!r}.")
        if label not in (-1, 0, 1):
            raise DataFormatError(f"label must be -1, 0 or 1, got {label!r}.")
        self._last_item_ns = ns
        if symbol != self.symbol:
            self.n_ignored += 1
            return
        self.n_items += 1
        self._pending_ns.append(ns)
        self._pending_compound.append(compound)
        self._pending_label.append(float(label))

    def on_bar(self, ts: Any) -> SentimentRow:
        """Features of the bar starting at ``ts`` (aware, after the previous bar)."""
        ns = _utc_ns(ts, "bar ts")
        if self._last_bar_ns is not None and ns <= self._last_bar_ns:
            raise DataFormatError(
                f"bar ts {_iso(ns)} is not after the previous bar "
                f"({_iso(self._last_bar_ns)}); bars must be strictly increasing."
            )
        if self._pending_ns and self._pending_ns[-1] > ns:
            raise DataFormatError(
                f"an item available at {_iso(self._pending_ns[-1])} was added before "
                f"the bar of {_iso(ns)}; it belongs to a later bar. Call on_bar "
                "before adding items that are not yet available."
            )
        avail = np.asarray(self._pending_ns, dtype=np.int64)
        group = np.zeros(len(avail), dtype=np.int64)
        decay = _item_decay(np.full(len(avail), ns, dtype=np.int64), avail, self.config)
        count, total, pos, neg, decayed, weight = _bar_sums(
            group,
            np.asarray(self._pending_compound, dtype=np.float64),
            np.asarray(self._pending_label, dtype=np.float64),
            decay,
            1,
        )
        if self._last_bar_ns is not None:
            f = _step_decay(ns - self._last_bar_ns, self.config)
            self._ewm_sum, self._ewm_weight = self._ewm_sum * f, self._ewm_weight * f
        self._ewm_sum += decayed[0]
        self._ewm_weight += weight[0]
        self._last_bar_ns = ns
        self._pending_ns, self._pending_compound, self._pending_label = [], [], []
        values = _bar_row(count[0], total[0], pos[0], neg[0], self._ewm_sum, self._ewm_weight)
        return SentimentRow(pd.Timestamp(ns, tz="UTC"), *values)
