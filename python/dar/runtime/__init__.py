"""The runtimes: they drive the core's decisions against a store and the user's code.

`aio` is the one hand-written facade (`AsyncRuntime`); `sync` (`Runtime`) is generated
from it by `tools/unasync.py`. What truly differs between the two (threads, shielded
writes, waiting, awaiting user code) lives side by side in `execute`; what they share
(configuration, rules, call set-up) in `base`.

May import: `dar.store`, `dar.audit`, `dar.core` and the vocabulary at the top of `dar`.
"""

from dar.runtime.aio import AsyncRuntime, AsyncSagaScope
from dar.runtime.sync import Runtime, SagaScope

__all__ = ["AsyncRuntime", "AsyncSagaScope", "Runtime", "SagaScope"]
