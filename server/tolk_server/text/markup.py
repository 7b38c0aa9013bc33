"""HTML and XML translation that keeps the markup byte for byte.

The stdlib parser (`html.parser`, tolerant of broken markup) finds tags, text, entities and
comments; each event's source text is sliced from the input by offset, so the output is the
input with only translatable text replaced. Text between block boundaries is one unit:
inline tags (`<b>`, `<a>`, …) stay inside it. A unit's translation is laid back over its text
runs in proportion to their lengths, at word boundaries, so every inline tag keeps its place.
Not translated: `<code>`, `<pre>`, `<script>`, `<style>`, `translate="no"`, `ignore_tags`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Tags that do not break a sentence (HTML mode). Everything else is a unit boundary.
INLINE = frozenset(
    "a abbr b bdi bdo cite code data del dfn em font i ins kbd mark q s samp small span "
    "strong sub sup time u var".split()
)
# Elements whose content is never translated (HTML mode).
SKIP = frozenset("code kbd pre samp script style textarea".split())
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_REF = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?\Z")
_WORDS = re.compile(r"\S+\s*")
_BROKEN = re.compile(r"<[A-Za-z/!?]")


# HTML elements whose end tag may be left out (`<li>a<li>b`, `<p>a<p>b`): a browser closes
# them itself, so they do not count towards the depth cap (the stack keeps them, as before).
OPTIONAL_END = frozenset("p li dt dd tr td th thead tbody tfoot option optgroup colgroup "
                         "caption rb rt rtc rp".split())
# After a `&#` that starts no reference the stdlib parser stops, as if more input were to
# come; it is resumed this many times (each resume costs the rest's length), then what is
# left is taken as the unparsed tail.
_RESUMES = 64


class MarkupTooDeep(ValueError):
    """The markup nests more elements than the cap allows."""


@dataclass(slots=True)
class _Event:
    kind: str  # "data" | "ref" | "tag" | "other"
    start: int
    data: str = ""
    inline: bool = False
    skip: bool = False


class _Scanner(HTMLParser):
    """The parser's events, with the open elements kept so that every event costs O(1):
    `index` holds each open tag name's positions in `stack`, `ignored` counts the open
    elements whose content is not translated, `depth` those that count towards the cap."""

    def __init__(self, source: str, xml: bool, ignore: frozenset[str],
                 inline: frozenset[str], max_depth: int | None) -> None:
        super().__init__(convert_charrefs=False)
        self.xml, self.ignore, self.inline = xml, ignore, inline
        self.max_depth = max_depth
        self.events: list[_Event] = []
        self.stack: list[tuple[str, bool]] = []
        self.index: dict[str, list[int]] = {}
        self.ignored = 0
        self.depth = 0  # open elements that count towards `max_depth`
        self._lines = [0] + [m.end() for m in re.finditer("\n", source)]

    def scan(self, source: str) -> None:
        """Parse `source` whole. What the parser leaves unparsed at the end (an unclosed
        `<!--`, `<div …`, `<script>`) is taken in one pass: the stdlib's own end-of-input
        handling rescans the rest once per unclosed construct (quadratic)."""
        try:
            self.feed(source)
            for _ in range(_RESUMES):  # it stops after a `&#` that starts no reference
                if not self._stopped_at_bad_charref(source):
                    break
                self.feed("")
            start = len(source) - len(self.rawdata)
        except AssertionError:  # the stdlib gives up on some declarations (`<![<![`)
            start = self._pos()  # where the construct it gave up on starts
        rest = source[start:]
        if rest:
            kind = "other" if self.cdata_elem else "data"  # an unclosed script stays as it is
            self.events.append(_Event(kind, start, rest, skip=self.ignored > 0))

    def _stopped_at_bad_charref(self, source: str) -> bool:
        at = len(source) - len(self.rawdata)
        return (bool(self.rawdata) and not self.cdata_elem and at >= 2
                and source.startswith("&#", at - 2) and not self.rawdata.startswith("&#")
                and bool(self.events) and self.events[-1].data == "&#")

    def _pos(self) -> int:
        line, col = self.getpos()
        return self._lines[line - 1] + col

    def _add(self, kind: str, data: str = "", inline: bool = False) -> None:
        self.events.append(_Event(kind, self._pos(), data, inline, self.ignored > 0))

    def _counts(self, tag: str) -> bool:
        return self.xml or tag not in OPTIONAL_END

    def _close_to(self, pos: int) -> None:
        """Close the open elements from `pos` (a position in `stack`) up."""
        while len(self.stack) > pos:
            tag, skip = self.stack.pop()
            self.index[tag].pop()
            self.ignored -= skip
            self.depth -= self._counts(tag)

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], void: bool) -> None:
        self._add("tag", inline=tag in self.inline)
        if void or (not self.xml and tag in VOID):
            return
        skip = (tag in self.ignore or (not self.xml and tag in SKIP)
                or any(k == "translate" and (v or "").lower() == "no" for k, v in attrs))
        counts = self._counts(tag)
        if counts and self.max_depth is not None and self.depth >= self.max_depth:
            raise MarkupTooDeep(f"markup nests deeper than {self.max_depth} elements")
        self.index.setdefault(tag, []).append(len(self.stack))
        self.stack.append((tag, skip))
        self.ignored += skip
        self.depth += counts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, void=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, void=True)

    def handle_endtag(self, tag: str) -> None:
        self._add("tag", inline=tag in self.inline)
        open_at = self.index.get(tag)
        if open_at:  # tolerate unclosed inner tags; ignore stray end tags
            self._close_to(open_at[-1])

    def handle_data(self, data: str) -> None:
        self._add("data", data)

    def handle_entityref(self, name: str) -> None:
        self._add("ref")

    def handle_charref(self, name: str) -> None:
        self._add("ref")

    def handle_comment(self, data: str) -> None:
        self._add("other")

    def handle_decl(self, decl: str) -> None:
        self._add("other")

    def handle_pi(self, data: str) -> None:
        self._add("other")

    def unknown_decl(self, data: str) -> None:
        self._add("other")


@dataclass(slots=True)
class _Slot:
    """A run of translatable text inside a unit: its raw source and decoded text."""

    raw: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    entities: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Unit:
    pieces: list[str | _Slot] = field(default_factory=list)

    def slots(self) -> list[_Slot]:
        return [p for p in self.pieces if isinstance(p, _Slot)]

    def plain(self) -> str:
        return "".join("".join(s.text) for s in self.slots())


class Markup:
    """A parsed HTML/XML fragment: `segments` to translate, `render` to put them back."""

    def __init__(self, source: str, *, xml: bool = False, ignore_tags: Iterable[str] = (),
                 non_splitting_tags: Iterable[str] = (), splitting_tags: Iterable[str] = (),
                 max_depth: int | None = None) -> None:
        """Parse `source` (time linear in its length, whatever its nesting); raise
        `MarkupTooDeep` if more than `max_depth` elements are open at once."""
        self.source = source
        ignore = frozenset(t.lower() for t in ignore_tags)
        inline = ((frozenset() if xml else INLINE) | {t.lower() for t in non_splitting_tags}
                  ) - {t.lower() for t in splitting_tags}
        scanner = _Scanner(source, xml, ignore, inline, max_depth)
        scanner.scan(source)
        self._items: list[str | _Unit] = []
        self._build(_tidy(scanner.events))
        self._units = [u for u in self._items if isinstance(u, _Unit) and _wants(u.plain())]
        self.segments = [u.plain().strip() for u in self._units]

    def _build(self, events: list[_Event]) -> None:
        src = self.source
        if events and events[0].start > 0:
            self._items.append(src[: events[0].start])
        unit = _Unit()
        for k, ev in enumerate(events):
            raw = src[ev.start: events[k + 1].start if k + 1 < len(events) else len(src)]
            text = _text_of(ev, raw)
            if text is not None and not ev.skip:
                last = unit.pieces[-1] if unit.pieces else None
                slot = last if isinstance(last, _Slot) else _Slot()
                if slot is not last:
                    unit.pieces.append(slot)
                slot.raw.append(raw)
                slot.text.append(text)
                if ev.kind == "ref" and _keeps(text, raw):
                    slot.entities.setdefault(text, raw)
            elif (ev.kind == "tag" and ev.inline) or text is not None:
                unit.pieces.append(raw)  # inline tag, or text that stays as it is
            else:  # a block boundary: close the unit
                if unit.pieces:
                    self._items.append(unit)
                    unit = _Unit()
                self._items.append(raw)
        if unit.pieces:
            self._items.append(unit)

    def render(self, translations: Sequence[str]) -> str:
        """The source with each segment replaced by its translation, markup untouched."""
        if len(translations) != len(self._units):
            raise ValueError("one translation per segment")
        done = dict(zip(map(id, self._units), translations, strict=True))
        out: list[str] = []
        for item in self._items:
            if isinstance(item, str):
                out.append(item)
            elif id(item) not in done or done[id(item)].strip() == item.plain().strip():
                out.extend(p if isinstance(p, str) else "".join(p.raw) for p in item.pieces)
            else:
                out.append(_render_unit(item, done[id(item)]))
        return "".join(out)


def _tidy(events: list[_Event]) -> list[_Event]:
    """Merge adjacent data events (one join each: linear); what the parser gave up on
    (`<!-- …` or `<div …` left unclosed) becomes markup, from there to the end of that text."""
    out: list[_Event] = []
    parts: list[list[str]] = []
    for ev in events:
        if ev.kind == "data" and out and out[-1].kind == "data" and out[-1].skip == ev.skip:
            parts[-1].append(ev.data)
        else:
            out.append(_Event(ev.kind, ev.start, "", ev.inline, ev.skip))
            parts.append([ev.data])
    fixed: list[_Event] = []
    for ev, data in zip(out, parts, strict=True):
        ev.data = "".join(data)
        bad = _BROKEN.search(ev.data) if ev.kind == "data" else None
        if bad is None:
            fixed.append(ev)
            continue
        if bad.start():
            fixed.append(_Event("data", ev.start, ev.data[: bad.start()], skip=ev.skip))
        fixed.append(_Event("other", ev.start + bad.start(), skip=ev.skip))
    return fixed


def _wants(plain: str) -> bool:
    return any(c.isalpha() for c in plain)


def _text_of(ev: _Event, raw: str) -> str | None:
    """The decoded text of a text event, or None (markup, or text the parser mangled)."""
    if ev.kind == "data" and raw == ev.data:
        return raw
    if ev.kind == "ref" and _REF.match(raw):
        return html.unescape(raw)
    return None


def _render_unit(unit: _Unit, translation: str) -> str:
    slots = [s for s in unit.slots() if "".join(s.text).strip()]
    shares = _distribute(translation.strip(), [len("".join(s.text).strip()) for s in slots])
    new = dict(zip(map(id, slots), shares, strict=True))
    entities: dict[str, str] = {}
    for s in slots:
        entities.update(s.entities)
    out: list[str] = []
    for p in unit.pieces:
        if isinstance(p, str):
            out.append(p)
        elif id(p) not in new:
            out.append("".join(p.raw))
        else:
            text = "".join(p.text)
            core = text.strip()
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(lead) + len(core):]
            out.append(_escape(lead + new[id(p)] + trail, entities))
    return "".join(out)


def _distribute(text: str, lengths: list[int]) -> list[str]:
    """Cut `text` at word boundaries into len(lengths) pieces, in proportion to lengths."""
    if len(lengths) == 1:
        return [text]
    total = sum(lengths) or 1
    bounds, acc = [], 0
    for n in lengths:
        acc += n
        bounds.append(len(text) * acc / total)
    pieces: list[list[str]] = [[] for _ in lengths]
    k = 0
    for m in _WORDS.finditer(text):
        mid = m.start() + len(m.group().rstrip()) / 2
        while k < len(lengths) - 1 and mid > bounds[k]:
            k += 1
        pieces[k].append(m.group())
    return ["".join(p).rstrip() for p in pieces]


def _keeps(text: str, raw: str) -> bool:
    """Whether a reference's text, met in a translation, is written as in the source (`raw`):
    a character the source wrote as an entity (`&#169;`, `&nbsp;`; not letters or digits),
    and an unknown entity (`&b;`, decoded as itself) with its `;`, so that it comes back byte
    for byte and cannot run into the letters after it."""
    if len(text) == 1:
        return not text.isalnum()
    return raw.endswith(";")


def _escape(text: str, entities: dict[str, str]) -> str:
    """Escape translated text (`&`, `<`, `>`: no markup can come from a translation); what
    the source wrote as an entity stays so (`_keeps`): each is `&…;` or one character."""
    kept = sorted(entities, key=len, reverse=True)
    pattern = re.compile("|".join([*map(re.escape, kept), "[&<>]"]))
    return pattern.sub(lambda m: entities.get(m.group()) or html.escape(m.group(), quote=False),
                       text)


@dataclass(frozen=True, slots=True)
class MarkupMode:
    """How a request's text is markup: HTML or XML, and which elements stay as they are."""

    xml: bool = False
    ignore_tags: tuple[str, ...] = ()
    non_splitting_tags: tuple[str, ...] = ()  # tags inside a sentence (XML: none by default)
    splitting_tags: tuple[str, ...] = ()  # tags that end a unit

    @staticmethod
    def of(fmt: str) -> MarkupMode | None:
        return MarkupMode() if fmt == "html" else None

    def parse(self, source: str, max_depth: int | None = None) -> Markup:
        """The parsed fragment, or `MarkupTooDeep` (more than `max_depth` open elements)."""
        return Markup(source, xml=self.xml, ignore_tags=self.ignore_tags,
                      non_splitting_tags=self.non_splitting_tags,
                      splitting_tags=self.splitting_tags, max_depth=max_depth)


Translate = Callable[[list[str]], Awaitable[list[str]]]


async def translate_markup(source: str, translate: Translate, *, xml: bool = False,
                           ignore_tags: Iterable[str] = ()) -> str:
    """Translate the text of an HTML/XML fragment with `translate` (a batch function)."""
    doc = Markup(source, xml=xml, ignore_tags=ignore_tags)
    if not doc.segments:
        return source
    return doc.render(await translate(doc.segments))
