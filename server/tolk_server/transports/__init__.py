"""WebSocket, REST/SSE and the compatible APIs: frames in, pipeline calls, frames out."""
