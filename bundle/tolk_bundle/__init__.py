"""Offline bundles: every wheel a target host needs (plus, optionally, a model), with a manifest.

A bundle is a directory, made on a connected machine and carried into the air gap:

    requirements.lock   the exact pins to install (`name==version`, with `--hash`es when the
                        source lock has them), minus excluded and already-installed packages
    wheels/             one wheel per pin, downloaded for the *target* platform
    model/NAME/         the model directory (optional), minus files the engine never loads
    tolk-bundle.py      this module, so a host without tolk can run `verify` and `install`
    SHA256SUMS          `sha256sum -c` format, for hosts without Python tooling
    manifest.json       every file above with its size and SHA-256, the target platform, the
                        tolk version and the creation time

With `--split-mb N` the directory is packed into an uncompressed tar stream cut into parts of
at most N MiB (`tolk-bundle.tar.000`, …) next to `parts.json` (each part's size and SHA-256).
`verify` and `install` check the parts, reassemble them into `unpacked/` and check that.
(`cat tolk-bundle.tar.* | tar -x` reassembles them by hand.)

Wheels are never modified: they are hash-pinned, and pip refuses a wheel whose hash changed.
What is left out is decided per package (`--exclude-package`, by default the torchvision,
torchaudio and torchcodec wheels that vLLM depends on but a text model never imports) and per
model file (`--exclude-pattern`, by default other frameworks' weights and VCS metadata).

This module uses the standard library only: it is copied into each bundle and runs there as
`python3 tolk-bundle.py verify|install DIR`.

Creation is in `create` (with the CLI in `cli`); `offline` (standard library only) verifies and
installs, and is the `tolk-bundle.py` copied into each bundle.
"""

from .create import *  # noqa: F403
from .offline import *  # noqa: F403
from .parts import *  # noqa: F403
