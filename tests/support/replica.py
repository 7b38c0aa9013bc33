"""A tolk replica over the engine double, in a process of its own (so a test can SIGKILL it).

    python tests/support/replica.py --port 8101 --token-delay 0.01

Like `tolk serve --engine fake`, plus a per-token delay so that requests can be made long.
Loopback only.
"""

from __future__ import annotations

import argparse

import uvicorn

from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.models.profiles import Profile

PROFILE = Profile(
    name="tiny",
    family="tiny",
    template="completion",
    prompt="<2{tgt}>{text}<sep>",
    languages={"en": "English", "fi": "Finnish"},
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-delay", type=float, default=0.0)
    ns = ap.parse_args()
    settings = Settings(engine="fake", host="127.0.0.1", port=ns.port)
    app = create_app(settings, engine=EchoEngine(token_delay_s=ns.token_delay), profile=PROFILE)
    uvicorn.run(app, host="127.0.0.1", port=ns.port, log_level="warning",
                ws_per_message_deflate=False)


if __name__ == "__main__":
    main()
