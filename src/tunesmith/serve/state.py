"""What every route shares: settings, the store, the model catalog, loaded models and the model thread."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.serve.batcher import Batcher
from tunesmith.serve.catalog import Catalog
from tunesmith.serve.engines import Engines
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.store import Store


@dataclass
class ServerState:
    settings: ServeSettings
    store: Store
    catalog: Catalog
    engines: Engines
    batcher: Batcher
