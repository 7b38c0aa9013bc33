"""Drop-in APIs that existing integrations already speak: LibreTranslate and DeepL v2.

Routes only translate request and answer shapes; the work goes through tolk's own request
path (`pipeline.Pipeline.submit_many`): same keys, per-key limits, glossaries and model.
"""

from __future__ import annotations

from fastapi import APIRouter

from tolk_server.transports.compat import deepl, deepl_glossaries, libretranslate

router = APIRouter()
router.include_router(libretranslate.router)
router.include_router(deepl.router)
router.include_router(deepl_glossaries.router)
