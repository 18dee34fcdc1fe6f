"""The heavy, long-lived parts of the service, built once at start-up."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.blobs import LocalBlobStore
from app.settings import Settings
from retrieval import Encoder, Generator, UserIndexCache


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: LocalBlobStore
    encoder: Encoder
    user_index_cache: UserIndexCache
    generator: Generator

    def index_key(self, user_id: int) -> Hashable:
        return (user_id, self.encoder.model_id)
