"""The MongoDB dataset: structures, labels with provenance, models, campaigns, metrics."""

from database.campaign_lock import CampaignLock, CampaignLocked
from database.campaign_log import CampaignLog
from database.connection import open_store, redact, resolve_uri
from database.embedded import EmbeddedServer
from database.export import export_ase_db, export_extxyz
from database.model_signing import UntrustedModel
from database.queries import LabelQuery
from database.store import Store

__all__ = [
    "CampaignLock",
    "CampaignLocked",
    "CampaignLog",
    "EmbeddedServer",
    "LabelQuery",
    "Store",
    "UntrustedModel",
    "export_ase_db",
    "export_extxyz",
    "open_store",
    "redact",
    "resolve_uri",
]
