"""What a live request asks of the pipeline: its options, its hypotheses' plans, their
generation (the generator's route, fallback and metrics) and the charge for its growth.

The live request (`tolk_server.live.session`) holds one of these instead of reaching into
the pipeline's parts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from tolk.protocol import TranslateOptions, UpdateFrame
from tolk_server.engine.interface import Delta
from tolk_server.pipeline.admission import Ticket
from tolk_server.pipeline.planning import Plan
from tolk_server.pipeline.submit import Pipeline


class LivePath:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._planner = pipeline.planner
        self._generator = pipeline.generator

    @property
    def max_text_chars(self) -> int:
        return self._planner.settings.max_text_chars

    def detect(self, text: str) -> str | None:
        return self._planner.detector.detect(text)

    def first_options(self, first: UpdateFrame) -> UpdateFrame:
        """The first update as a request to validate and admit (blank or short text too)."""
        source = first.source
        if source in (None, "auto"):  # a few typed letters may not be detectable yet
            fallback = next((lang for lang in self._planner.languages if lang != first.target),
                            None)
            source = self.detect(first.text) or fallback
        text = first.text if first.text.strip() else "-"
        return first.model_copy(update={"split": False, "source": source, "text": text})

    def plan(self, opts: TranslateOptions, rid: str, owner: str) -> Plan:
        """The plan of one hypothesis (one target, one sentence, at live priority)."""
        return self._planner.plan(opts, rid, kind="live", owner=owner)[0]

    def hypothesis(self, plan: Plan, forced: str, rid: str) -> AsyncGenerator[Delta, None]:
        """`Generator.hypothesis`: the plan's route, with fallback; close it to abort."""
        return self._generator.hypothesis(plan, forced, rid)

    def charge(self, ticket: Ticket, chars: int, rid: str) -> None:
        self._pipeline.admission.charge(ticket, chars, rid)

