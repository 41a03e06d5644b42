"""The embedded interpreter engine (offline twin): VAD → Whisper → MT → TTS behind an
OpenAI Realtime-compatible WebSocket endpoint (`babelroom.engine.server`).

Importing this package loads no model; `Engine().load()` does (see pipeline.py).
"""
