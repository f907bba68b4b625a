"""`dar demo`: the pitch's incidents, run without and with the runtime, and the scripted
model server the agent demo (and the integration tests) talk to.

May import: `dar.integrations` and every layer below it.
"""
