"""The ordered text of one plan as it streams out: chunked into `token` or `segment` frames,
timed and counted (first chunk, chunk sizes), with what the run learned on the way."""

from __future__ import annotations

import time

from tolk.protocol import ServerFrame, segment, token
from tolk_server.ops.metrics import Metrics
from tolk_server.pipeline.chunking import Chunker
from tolk_server.pipeline.planning import Plan


class Emitter:
    """Chunks the ordered text of one plan into token or segment frames."""

    def __init__(self, plan: Plan, metrics: Metrics) -> None:
        self.plan = plan
        self.metrics = metrics
        self.chunker = Chunker(plan.granularity, max_delay_ms=plan.max_delay_ms)
        self.parts: list[str] = []
        self.index = 0
        self.tokens = 0
        self.first_ms: float | None = None
        self.finish_reason = "stop"
        self.sentences = len(plan.parts)  # the rest's too once known
        self.served_by: str | None = None
        self.fallback: dict[str, str] | None = None
        self._seq = 0

    def now_ms(self) -> float:
        return (time.perf_counter() - self.plan.t0) * 1000

    def deadline(self) -> float | None:
        return self.chunker.deadline()

    def push(self, text: str, seq: int) -> list[ServerFrame]:
        if not self.chunker.pending:
            self._seq = seq
        return self._frames(self.chunker.push(text, self.now_ms()), seq)

    def poll(self) -> list[ServerFrame]:
        return self._frames(self.chunker.poll(self.now_ms()), self._seq)

    def finish(self) -> list[ServerFrame]:
        return self._frames(self.chunker.finish(), self._seq)

    def _frames(self, chunks: list[str], next_seq: int) -> list[ServerFrame]:
        frames: list[ServerFrame] = []
        plan = self.plan
        for chunk in chunks:
            if self.first_ms is None:
                self.first_ms = self.now_ms()
                self.metrics.first_token.observe(self.first_ms / 1000)
                self.metrics.first_chunk.labels(plan.granularity).observe(self.first_ms / 1000)
            self.metrics.chunk_chars.labels(plan.granularity).observe(len(chunk))
            self.parts.append(chunk)
            if plan.stream:
                frame: ServerFrame
                if plan.granularity == "segment":
                    frame = segment(plan.id, chunk, self.index)
                else:
                    frame = token(plan.id, chunk, self.index)
                if plan.split:
                    frame["seq"] = self._seq
                if plan.tag_target:
                    frame["target"] = plan.target
                frames.append(frame)
            self.index += 1
            self._seq = next_seq
        return frames
