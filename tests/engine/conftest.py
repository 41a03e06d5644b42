"""Engine tests use the session fixtures `engine` and `endpoint` from tests/conftest.py.

Speech clips are synthesized at test time with eSpeak NG (espeakng-loader, in-process) through
`babelroom.engine.eval.synth`, so tests need no audio fixtures and run real ASR on real audio.
"""
