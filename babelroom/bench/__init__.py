"""`python -m babelroom bench`: the whole room loop, driven over the real client protocol and measured.

Modules: `clips` (speech we synthesize ourselves), `client` (a minimal reliable Web PubSub client),
`driver` (speakers and listeners that behave like the web client), `metrics` (latency, traffic, cost),
`procs` (CPU and RSS of the stack's processes), `report` (PNG), `run` (the command).
"""
