"""The FastAPI service: ``create_app(settings)`` builds the API and dashboard; ``alphaloom serve`` runs it.

Importing this package does not import torch: the model is loaded in the app's lifespan.
"""

from alphaloom.service.app import API_PREFIX, Services, create_app, keys_path
from alphaloom.service.auth import KeyStore, Principal, TokenSigner
from alphaloom.service.settings import ServiceSettings

__all__ = [
    "API_PREFIX",
    "KeyStore",
    "Principal",
    "ServiceSettings",
    "Services",
    "TokenSigner",
    "create_app",
    "keys_path",
]
