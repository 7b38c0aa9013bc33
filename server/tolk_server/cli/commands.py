"""The `tolk` command: serve, translate, prompt, info."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Any, TypeAlias

from tolk_server.config import Settings, is_loopback, load_settings
from tolk_server.models.profiles import model_arg
from tolk_server.models.routing import parse_model_arg

log = logging.getLogger("tolk.cli")
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # add_subparsers


def _engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file (lowest precedence)")
    p.add_argument("--model", action="append",
                   help="model directory, HF id, or profile name; or NAME=PATH "
                        "(NAME=ws://HOST:PORT: another tolk server; "
                        "NAME=openai+http://HOST:PORT/v1: a vLLM server's OpenAI API), "
                        "repeatable, for several models in one server")
    p.add_argument("--profile", help="prompt profile name or TOML path")
    p.add_argument("--engine", choices=["vllm", "echo", "fake"],
                   help="vllm, or echo: the engine double (fake is an alias)")
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--kv-cache-gib", type=int, help="KV cache size on CPU (GiB)")
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--dtype")
    p.add_argument("--enforce-eager", action="store_true", default=None)
    p.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false")
    p.add_argument("--no-prefix-caching", dest="enable_prefix_caching", action="store_false",
                   default=None)
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--data-parallel-size", type=int)
    p.add_argument("--load-format")


def _settings(ns: argparse.Namespace) -> Settings:
    keys = [k for k in vars(ns) if k not in {"command", "config", "func"}]
    overrides: dict[str, Any] = {k: getattr(ns, k) for k in keys if hasattr(Settings, k)
                                 or k in Settings.model_fields}
    overrides = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    given: list[str] = overrides.pop("model", None) or []
    specs = [m for m in (parse_model_arg(v) for v in given) if m is not None]
    if specs:
        if len(specs) != len(given):
            raise SystemExit("tolk: --model: use NAME=PATH for every model, or one plain path")
        overrides["models"] = [m if m.path is None else
                               m.model_copy(update={"path": model_arg(m.path, {})})
                               for m in specs]
    elif len(given) > 1:
        raise SystemExit("tolk: --model: several models need names: --model NAME=PATH")
    elif given:
        overrides["model"] = model_arg(given[0], overrides)
    return load_settings(ns.config, **overrides)



def cmd_serve(ns: argparse.Namespace) -> int:
    from tolk_server.app.wiring import create_app
    from tolk_server.transports.uvicorn_bounds import uvicorn_config

    settings = _settings(ns)
    from tolk_server.security.auth import Authenticator
    from tolk_server.security.keystore import KeyStore
    from tolk_server.stores.factory import open_store
    from tolk_server.stores.interfaces import StoreError

    try:
        store = open_store(settings.store, key_file=settings.key_file,
                           glossary_file=settings.glossary_file)
    except StoreError as exc:
        print(f"tolk: {exc}", file=sys.stderr)
        return 2
    has_keys = Authenticator(settings.api_keys, KeyStore(store.keys)).enabled
    store.close()
    if not has_keys and not is_loopback(settings.host):
        if not settings.insecure_no_auth:
            print(
                f"refusing to listen on {settings.host} without API keys: add one with "
                "`tolk keys add NAME` (or set TOLK_API_KEYS), bind 127.0.0.1, or pass "
                "--insecure-no-auth",
                file=sys.stderr,
            )
            return 2
        logging.getLogger("tolk").warning(
            "!!! serving on %s WITHOUT authentication (--insecure-no-auth) !!!", settings.host
        )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if settings.workers > 1:  # a supervisor, N worker processes and one engine
        from tolk_server.app.supervisor import refusal, serve_workers

        if (why := refusal(settings)) is not None:
            print(f"tolk: {why}", file=sys.stderr)
            return 2
        return serve_workers(settings)
    from tolk_server.app.lifecycle import DrainingServer

    app = create_app(settings)
    config = uvicorn_config(app, settings)
    DrainingServer(config, app.state.tolk, settings.drain_timeout_s).run()
    fatal = app.state.tolk.fatal_error
    if fatal:
        print(f"tolk: exiting after a fatal error: {fatal}", file=sys.stderr)
        return 1
    return 0


def cmd_translate(ns: argparse.Namespace) -> int:
    from websockets.sync.client import connect

    url = ns.url.rstrip("/") + "/v1/stream"
    key = ns.api_key or os.environ.get("TOLK_API_KEY")
    with connect(url, compression=None, open_timeout=10) as ws:
        if key:
            ws.send(json.dumps({"type": "auth", "api_key": key}))
        frame: dict[str, Any] = {"type": "translate", "id": "cli", "text": ns.text,
                                 "target": ns.target}
        if ns.source:
            frame["source"] = ns.source
        ws.send(json.dumps(frame))
        while True:
            msg = json.loads(ws.recv(timeout=ns.timeout))
            if msg["type"] == "token":
                print(msg["token"], end="", flush=True)
            elif msg["type"] == "complete":
                print()
                if ns.verbose:
                    print(json.dumps(msg, ensure_ascii=False), file=sys.stderr)
                return 0
            elif msg["type"] == "error":
                print(f"error: {msg['code']}: {msg['message']}", file=sys.stderr)
                return 1


def cmd_prompt(ns: argparse.Namespace) -> int:
    from tolk_server.adapters.vllm import VllmEngine
    from tolk_server.app.wiring import model_path
    from tolk_server.models.profiles import render, resolve_profile

    settings = _settings(ns)
    model = model_path(settings)
    profile = resolve_profile(model, settings.profile)
    engine = VllmEngine(settings, model)
    sys.stdout.write(render(profile, ns.text, ns.source, ns.target, engine.chat_template))
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    from tolk_server.adapters.vllm import engine_args_dict
    from tolk_server.app.wiring import model_path
    from tolk_server.models.profiles import resolve_profile

    settings = _settings(ns)
    model = model_path(settings)
    profile = resolve_profile(model, settings.profile)
    info = {
        "model": os.path.abspath(model) if os.path.exists(model) else model,
        "profile": profile.name,
        "languages": sorted(profile.languages),
        "engine": settings.engine,
        "engine_args": engine_args_dict(settings, model),
        "kv_cache_gib": settings.kv_cache_gib,
    }
    if ns.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tolk", description="tolk translation server")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_client_commands(sub)
    from tolk_server.cli.listen import add_listen_parser
    from tolk_server.cli.store_commands import add_store_commands

    add_store_commands(sub)

    add_listen_parser(sub)
    _add_plugin_commands(sub)
    return parser


def _add_serve(sub: Subcommands) -> None:
    """`tolk serve`: the engine flags, then the listener, security, limits and speech input."""
    serve = sub.add_parser("serve", help="serve the model over WebSocket and HTTP")
    _engine_flags(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="front-end processes on one engine "
                       "(default 1; more needs a shared store: docs/scaling.md)")
    serve.add_argument("--worker-restarts", type=int,
                       help="with --workers: restarts of crashed workers, in all (default 8)")
    serve.add_argument("--api-key", dest="api_keys", action="append")
    serve.add_argument("--allowed-origin", dest="allowed_origins", action="append",
                       help="a browser origin allowed besides the server's own (repeatable)")
    serve.add_argument("--allowed-host", dest="allowed_hosts", action="append",
                       help="a Host name served besides loopback names (repeatable)")
    serve.add_argument("--max-body-bytes", type=int, help="largest HTTP request body")
    serve.add_argument("--insecure-no-auth", action="store_true", default=None,
                       help="allow a non-loopback host without API keys (logs a warning)")
    serve.add_argument("--send-stall-s", type=float,
                       help="close a connection that has not read its frames for this long")
    serve.add_argument("--public-metrics", action="store_true", default=None,
                       help="with API keys, serve /metrics without a key")
    serve.add_argument("--public-docs", action="store_true", default=None,
                       help="with API keys, serve /docs and /openapi.json without a key")
    serve.add_argument("--drain-timeout", dest="drain_timeout_s", type=float,
                       help="seconds in-flight requests get to finish on SIGTERM")
    serve.add_argument("--ssl-certfile", help="TLS certificate (serves wss:// and https://)")
    serve.add_argument("--ssl-keyfile", help="TLS private key")
    serve.add_argument("--max-connections", type=int)
    serve.add_argument("--max-text-chars", type=int)
    serve.add_argument("--max-frame-bytes", type=int)
    serve.add_argument("--fake-token-delay-ms", type=float, help=argparse.SUPPRESS)
    serve.add_argument("--asr-backend", choices=["faster-whisper", "vllm", "off"],
                       help="speech recogniser for audio streams (default faster-whisper)")
    serve.add_argument("--asr-model", help="faster-whisper model dir (default: bundled "
                       "tiny.en), or HF Whisper weights with --asr-backend vllm")
    serve.add_argument("--asr-gpu-memory-utilization", type=float,
                       help="--asr-backend vllm on a GPU: the recogniser's share (default 0.1)")
    serve.add_argument("--store", help="state store URL: memory (default), sqlite:///PATH, "
                       "redis://HOST:PORT/DB, rediss://… (docs/scaling.md)")
    serve.add_argument("--store-failure", choices=["closed", "open"],
                       help="when the store does not answer: refuse (closed, default) or serve "
                       "on this process's own limits (open)")
    serve.add_argument("--log-level")
    serve.set_defaults(func=cmd_serve)


def _add_client_commands(sub: Subcommands) -> None:
    """`tolk translate` (with a running server), `tolk prompt` and `tolk info` (offline)."""
    tr = sub.add_parser("translate", help="translate one text with a running server")
    tr.add_argument("text")
    tr.add_argument("--target", required=True)
    tr.add_argument("--source")
    tr.add_argument("--url", default=os.environ.get("TOLK_URL", "ws://127.0.0.1:8000"))
    tr.add_argument("--api-key")
    tr.add_argument("--timeout", type=float, default=60.0)
    tr.add_argument("-v", "--verbose", action="store_true")
    tr.set_defaults(func=cmd_translate)

    pr = sub.add_parser("prompt", help="print the exact prompt the server renders")
    _engine_flags(pr)
    pr.add_argument("--text", required=True)
    pr.add_argument("--source", required=True)
    pr.add_argument("--target", required=True)
    pr.set_defaults(func=cmd_prompt)

    info = sub.add_parser("info", help="print the served model and engine settings")
    _engine_flags(info)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)


def _add_plugin_commands(sub: Subcommands) -> None:
    """Subcommands other packages register under the `tolk.commands` entry-point group
    (`bench`, `bundle`): each entry point is a function that adds its parser to `sub`."""
    for ep in sorted(entry_points(group="tolk.commands"), key=lambda e: e.name):
        try:
            add_parser = ep.load()
        except ImportError as exc:  # e.g. the bench extra is not installed
            log.warning("`tolk %s` is unavailable: %s", ep.name, exc)
            continue
        add_parser(sub)


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    sys.exit(ns.func(ns))


if __name__ == "__main__":
    main()
