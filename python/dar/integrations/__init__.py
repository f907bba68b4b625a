"""Where agents are built: one thin module per SDK, each an optional extra.

Every module sits on `Runtime.call` and `Result.for_model()`; none holds any logic of its
own beyond translating the SDK's objects. The modules of the model SDKs (``openai``,
``anthropic``, ``gemini``) also have ``durable(client)``, which journals the client's model
calls in a durable run (what they share is in ``_durable``). Importing a module whose SDK
is missing raises a `ConfigurationError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dar.errors import ConfigurationError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import an SDK, or say which extra installs it. ``package`` names the distribution
    when it differs from the top-level module (``google-genai`` for ``google.genai``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"this integration needs {package or module.split('.')[0]}: "
            f"pip install {package or module.split('.')[0]} (or install durable-agent-runtime "
            f"with its [{extra}] extra: pip install '.[{extra}]' in a checkout)"
        ) from exc
