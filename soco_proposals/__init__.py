"""Selective-search proposals: generation backends, sharded generation, filters and the proposal store.

Only the light, numpy-only modules are imported here, so that data loaders importing
:func:`open_proposals` do not pull in scikit-image or OpenCV.
"""

from .store import (
    JsonProposals,
    ProposalSource,
    StoreProposals,
    json_to_store,
    open_proposals,
    store_to_json,
    write_soco_json,
    write_store,
)

__all__ = [
    "JsonProposals",
    "ProposalSource",
    "StoreProposals",
    "json_to_store",
    "open_proposals",
    "store_to_json",
    "write_soco_json",
    "write_store",
]
