"""The event log read as evidence: the hash chain, postmortem trees, and replay.

May import: `dar.core` and the vocabulary at the top of `dar`.
"""
