"""`tolk listen`: live transcript and translation of a WAV file or the microphone."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


def add_listen_parser(sub: Any) -> None:
    p = sub.add_parser("listen", help="transcribe (and translate) speech with a running server")
    p.add_argument("file", nargs="?", help="a 16-bit PCM WAV file")
    p.add_argument("--mic", action="store_true", help="the default microphone (tolk[mic])")
    p.add_argument("--target", action="append", help="translate into this language (repeat)")
    p.add_argument("--source", default="auto", help="the spoken language (default: auto)")
    p.add_argument("--speaker", action="append", dest="speakers",
                   help="a label per channel (repeat; stereo with two labels: two speakers)")
    p.add_argument("--url", default=os.environ.get("TOLK_URL", "ws://127.0.0.1:8000"))
    p.add_argument("--api-key")
    p.add_argument("--fast", action="store_true", help="send a file as fast as allowed")
    p.add_argument("--quality", choices=("fast", "balanced", "quality"),
                   help="the translation's quality mode")
    p.add_argument("--live", action="store_true",
                   help="translate while a phrase is spoken (tentative text on a terminal)")
    p.set_defaults(func=cmd_listen)


def cmd_listen(ns: argparse.Namespace) -> int:
    if bool(ns.file) == bool(ns.mic):
        print("tolk listen: give a WAV file or --mic", file=sys.stderr)
        return 2
    from tolk import TolkError
    from tolk.realtime import AudioStream

    audio = AudioStream(file=ns.file, device="microphone" if ns.mic else None,
                        language=ns.source, speakers=ns.speakers, url=ns.url,
                        api_key=ns.api_key, pace=None if ns.fast else 1.0)
    try:
        if ns.live and ns.target:
            asyncio.run(_print_live(audio, ns.target, ns.quality))
        else:
            asyncio.run(_print(audio, ns.target or [], ns.quality))
    except KeyboardInterrupt:
        return 130
    except TolkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def stamp(seg: Any) -> str:
    return f"[{seg.start:7.2f}s {seg.speaker}]"


async def _print(audio: Any, targets: list[str], quality: str | None) -> None:
    if not targets:
        async for seg in audio.transcribe():
            print(stamp(seg), seg.text, flush=True)
        return
    async for seg in audio.translate(targets=targets, quality=quality):
        print(stamp(seg), seg.text, flush=True)
        for lang, tr in seg.translations.items():
            print(f"  {lang}: ", end="", flush=True)
            async for token in tr:
                print(token, end="", flush=True)
            print(flush=True)


async def _print_live(audio: Any, targets: list[str], quality: str | None) -> None:
    """A phrase's line is redrawn while it is spoken (on a terminal; tentative text in
    brackets), then printed for good once its translations are done."""
    from tolk import TolkError

    tty, printed = sys.stdout.isatty(), set()
    async for seg in audio.translate(targets=targets, live=True, quality=quality):
        if seg.segment in printed or not seg.translations:
            continue
        if seg.final and all(tr.done for tr in seg.translations.values()):
            printed.add(seg.segment)
            print(("\r\033[K" if tty else "") + stamp(seg), seg.text, flush=True)
            for lang, tr in seg.translations.items():
                try:
                    print(f"  {lang}: {await tr}", flush=True)
                except TolkError as exc:
                    print(f"  {lang}: error: {exc}", flush=True)
        elif tty:
            preview = " | ".join(f"{lang}: {tr.stable}[{tr.tentative}]"
                                 for lang, tr in seg.translations.items())
            print(f"\r\033[K{stamp(seg)} {seg.text} -> {preview}"[:200], end="", flush=True)
