"""What the app hands to the UI: one small object, filled in while the app runs.

`create_app` builds `Services` before anything is opened (the UI is built then); the
lifespan (`server.app.open_services`) sets `store` and `counter` when it opens them and
clears them when it closes them. UI callbacks only run while the app runs, so they always
see them set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.settings import Settings

if TYPE_CHECKING:
    from server.counter import Counter
    from server.gateway.upstream import Engine
    from storage import Store


@dataclass
class Services:
    """The host's shared objects, for the UI.

    - `settings.self_url`: base URL of our own /v1 (the UI is a client of it, with the
      user's key);
    - `store`: the SQLite store (`storage` functions take `store.db`; blocking: call them
      from a worker thread);
    - `counter`: the served model's token counter (`server.counter.Counter`);
    - `engine.max_context`: the context length the gateway enforces (the engine's
      max_model_len, capped by WORKBENCH_MAX_CONTEXT); `engine.healthy`: whether the engine
      answered its last health check.
    """

    settings: Settings
    engine: Engine
    store: Store | None = None
    counter: Counter | None = None
