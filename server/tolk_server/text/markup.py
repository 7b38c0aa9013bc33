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


@dataclass(slots=True)
class _Event:
    kind: str  # "data" | "ref" | "tag" | "other"
    start: int
    data: str = ""
    inline: bool = False
    skip: bool = False


class _Scanner(HTMLParser):
    def __init__(self, source: str, xml: bool, ignore: frozenset[str],
                 inline: frozenset[str]) -> None:
        super().__init__(convert_charrefs=False)
        self.xml, self.ignore, self.inline = xml, ignore, inline
        self.events: list[_Event] = []
        self.stack: list[tuple[str, bool]] = []
        self._lines = [0] + [m.end() for m in re.finditer("\n", source)]

    def _pos(self) -> int:
        line, col = self.getpos()
        return self._lines[line - 1] + col

    def _skipping(self) -> bool:
        return any(s for _, s in self.stack)

    def _add(self, kind: str, data: str = "", inline: bool = False) -> None:
        self.events.append(_Event(kind, self._pos(), data, inline, self._skipping()))

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], void: bool) -> None:
        inline = tag in self.inline
        self._add("tag", inline=inline)
        skip = (tag in self.ignore or (not self.xml and tag in SKIP)
                or any(k == "translate" and (v or "").lower() == "no" for k, v in attrs))
        if not void and (self.xml or tag not in VOID):
            self.stack.append((tag, skip))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, void=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, void=True)

    def handle_endtag(self, tag: str) -> None:
        self._add("tag", inline=tag in self.inline)
        names = [t for t, _ in self.stack]
        if tag in names:  # tolerate unclosed inner tags; ignore stray end tags
            del self.stack[len(names) - 1 - names[::-1].index(tag):]

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
                 ) -> None:
        self.source = source
        ignore = frozenset(t.lower() for t in ignore_tags)
        inline = ((frozenset() if xml else INLINE) | {t.lower() for t in non_splitting_tags}
                  ) - {t.lower() for t in splitting_tags}
        scanner = _Scanner(source, xml, ignore, inline)
        scanner.feed(source)
        scanner.close()
        self._items: list[str | _Unit] = []
        self._build(_tidy(scanner.events, source))
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
                if ev.kind == "ref" and not text.isalnum():
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


def _tidy(events: list[_Event], source: str) -> list[_Event]:
    """Merge adjacent data events; what the parser gave up on (`<!-- …` or `<div …` left
    unclosed) becomes markup, from there to the end of that text."""
    out: list[_Event] = []
    for ev in events:
        if ev.kind == "data" and out and out[-1].kind == "data" and out[-1].skip == ev.skip:
            out[-1].data += ev.data
        else:
            out.append(_Event(ev.kind, ev.start, ev.data, ev.inline, ev.skip))
    fixed: list[_Event] = []
    for ev in out:
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


def _escape(text: str, entities: dict[str, str]) -> str:
    """Escape translated text; characters written as entities in the source stay so."""
    out = []
    for ch in text:
        if ch in entities:
            out.append(entities[ch])
        elif ch in "&<>":
            out.append(html.escape(ch, quote=False))
        else:
            out.append(ch)
    return "".join(out)


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

    def parse(self, source: str) -> Markup:
        return Markup(source, xml=self.xml, ignore_tags=self.ignore_tags,
                      non_splitting_tags=self.non_splitting_tags,
                      splitting_tags=self.splitting_tags)

    def plain_text(self, source: str) -> str:
        """The translatable text of a fragment (for language detection)."""
        return "\n".join(self.parse(source).segments)


Translate = Callable[[list[str]], Awaitable[list[str]]]


async def translate_markup(source: str, translate: Translate, *, xml: bool = False,
                           ignore_tags: Iterable[str] = ()) -> str:
    """Translate the text of an HTML/XML fragment with `translate` (a batch function)."""
    doc = Markup(source, xml=xml, ignore_tags=ignore_tags)
    if not doc.segments:
        return source
    return doc.render(await translate(doc.segments))
