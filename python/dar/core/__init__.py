"""The decisions, free of I/O: what one call, approval, plan or saga step does next.

Each decision is a generator that yields typed operations (`dar.core.ops`) and receives
their answers; a runtime executes them (against a store, a handler, a clock) and sends the
answers back. Nothing here opens a file, a socket or a thread, so every path can be driven
and tested without a database.

May import: the vocabulary at the top of `dar` (tools, rules, effects, errors, records,
reply, signature, redact, context, dialects, terminal) and `dar._core`. Nothing else of `dar`.
"""
