"""Each rule has one definition, and every door applies it alike.

Ids, the bare-word rule, photo types, the blob layout and the storage charge are each
written once (app/domain/, or the library where retrieval needs the rule too). These
tests fail on a second copy of a rule's text, and on a door that accepts another set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.cli import main as rapport
from app.domain.blob_layout import BlobLayout
from app.domain.ids import TENANT_NAME, USER_ID, IdRule
from app.http.deps import UserId
from app.http.openai_schemas import CompletionRequest
from app.http.routes.admin import TenantIn, TenantName
from app.storage.db.models import Base, Concept, Embedding, ImageRow, Tenant, User
from app.storage.repository.tenants import stored_bytes, tenant_bytes
from app.usecases.importer import import_concepts
from retrieval.errors import InvalidRequest
from retrieval.images import MEDIA_TYPES, PHOTO_SUFFIXES, SUFFIX_OF

ROOT = Path(__file__).resolve().parents[2]

SAMPLES = [
    "alice",
    "é x",
    "a/b",
    "a\ufffd",
    "a\x00b",
    "tab\t",
    "del\x7f",
    "",
    "x" * 128,
    "x" * 129,
    "x" * 200,
    "x" * 201,
]


def _accepted_by(adapter: TypeAdapter[str]) -> set[str]:
    accepted = set()
    for value in SAMPLES:
        try:
            adapter.validate_python(value)
        except ValidationError:
            continue
        accepted.add(value)
    return accepted


def _rule(rule: IdRule) -> set[str]:
    return {value for value in SAMPLES if rule.accepts(value)}


def test_the_id_rules_are_what_the_docs_say() -> None:
    assert _rule(USER_ID) == {"alice", "é x", "a/b", "x" * 128}
    assert _rule(TENANT_NAME) == {"alice", "é x", "x" * 128, "x" * 129, "x" * 200}


def test_user_ids_are_accepted_alike_by_the_path_and_the_openai_user_field() -> None:
    assert _accepted_by(TypeAdapter(UserId)) == _rule(USER_ID)

    def openai_user(value: str) -> str:
        body = {"messages": [{"role": "user", "content": "hi"}], "user": value}
        return CompletionRequest.model_validate(body).user or ""

    accepted = set()
    for value in SAMPLES:
        try:
            openai_user(value)
        except ValidationError:
            continue
        accepted.add(value)
    assert accepted == _rule(USER_ID)


def test_tenant_names_are_accepted_alike_by_the_admin_path_and_body() -> None:
    assert _accepted_by(TypeAdapter(TenantName)) == _rule(TENANT_NAME)
    body = {value for value in _rule(TENANT_NAME) if TenantIn(name=value).name == value}
    assert body == _rule(TENANT_NAME)
    for value in set(SAMPLES) - _rule(TENANT_NAME):
        with pytest.raises(ValidationError):
            TenantIn(name=value)


def test_the_importer_refuses_exactly_the_ids_the_api_refuses(tmp_path: Path) -> None:
    # The ids are checked before anything is read or stored: no services are needed.
    for value in set(SAMPLES) - _rule(USER_ID):
        with pytest.raises(InvalidRequest, match="user id"):
            import_concepts(None, tenant_name="acme", external_user_id=value, root=tmp_path)  # type: ignore[arg-type]
    for value in set(SAMPLES) - _rule(TENANT_NAME):
        with pytest.raises(InvalidRequest, match="tenant name"):
            import_concepts(None, tenant_name=value, external_user_id="alice", root=tmp_path)  # type: ignore[arg-type]


def test_rapport_keys_create_refuses_a_tenant_the_admin_api_cannot_name(tmp_path: Path) -> None:
    env = {"RAPPORT_DATA_DIR": str(tmp_path / "data")}
    for value in set(SAMPLES) - _rule(TENANT_NAME) - {""}:
        result = CliRunner().invoke(rapport, ["keys", "create", "--tenant", value], env=env)
        assert result.exit_code == 2 and "tenant name" in result.output, value
    assert not (tmp_path / "data").exists()  # refused before the database was opened


def test_the_database_holds_every_id_the_rules_accept() -> None:
    assert Tenant.__table__.c.name.type.length == TENANT_NAME.max_length  # type: ignore[attr-defined]
    assert User.__table__.c.external_id.type.length == USER_ID.max_length  # type: ignore[attr-defined]


def test_the_blob_layout_parses_what_it_formats() -> None:
    layout = BlobLayout(tenant_id=3, user_id=41)
    sha = "ab" + "0" * 62
    assert layout.key(sha) == f"t3/u41/ab/{sha}"
    assert layout.key(sha).startswith(layout.namespace + "/")
    assert BlobLayout.parse(layout.key(sha)) == layout
    assert BlobLayout.parse(f"{layout.namespace}/ab/.tmp-123") == layout  # a write's temp file
    assert BlobLayout.parse("t3/x41/ab/cd") is None and BlobLayout.parse("u41/ab") is None


def test_photo_suffixes_and_media_types_come_from_one_list() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"} <= PHOTO_SUFFIXES
    assert set(SUFFIX_OF) == set(MEDIA_TYPES.values())
    assert all(suffix in PHOTO_SUFFIXES for suffix in SUFFIX_OF.values())


@pytest.mark.parametrize("sizes", [[10], [4096, 4097], [1, 5000, 100_000]])
def test_the_sql_charge_is_the_python_charge(tmp_path: Path, sizes: list[int]) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'charge.db'}")
    Base.metadata.create_all(engine)  # the models alone: only their columns matter here
    dims = [8, 512]
    with Session(engine) as session:
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.flush()
        user = User(tenant_id=tenant.id, external_id="alice")
        session.add(user)
        session.flush()
        concept = Concept(user_id=user.id, name="bo", name_key="bo", category=None)
        session.add(concept)
        session.flush()
        for n, size in enumerate(sizes):
            image = ImageRow(
                concept_id=concept.id,
                user_id=user.id,
                sha256=f"{n:064d}",
                blob_key=f"k{n}",
                media_type="image/png",
                width=1,
                height=1,
                size_bytes=size,
            )
            session.add(image)
            session.flush()
            for dim in dims:
                session.add(
                    Embedding(
                        image_id=image.id,
                        concept_id=concept.id,
                        user_id=user.id,
                        model_id="m",
                        dim=dim,
                        vector=b"\0" * 4 * dim,
                    )
                )
        session.flush()
        expected = sum(stored_bytes(size_bytes=size, dims=dims) for size in sizes)
        assert tenant_bytes(session=session, tenant_id=tenant.id) == expected
    engine.dispose()


# --- No second copy of a rule's text -------------------------------------------------

_SOURCES = [
    path
    for tree in ("app", "retrieval")
    for path in sorted((ROOT / tree).rglob("*.py"))
    if "migrations" not in path.parts
]

# (what a copy of the rule looks like, the one file allowed to hold it)
_ONE_HOME = {
    "the control characters' class": (re.compile(r"\\x1f"), "app/domain/text_fields.py"),
    "the blob layout": (re.compile(r"['\"]t\{|t\\d\+/u|/u\{"), "app/domain/blob_layout.py"),
    "photo file suffixes": (re.compile(r"['\"]\.(jpe?g|webp|bmp|gif)['\"]"), "retrieval/images.py"),
    "the bare-word rule": (re.compile(r"def \w*bare_word"), "retrieval/names.py"),
    "the storage charge": (re.compile(r"4096|FILE_BLOCK_BYTES ="), "app/domain/storage_charge.py"),
}


def copies(pattern: re.Pattern[str], sources: list[Path]) -> list[str]:
    return [
        str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        for path in sources
        if pattern.search(path.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("rule", sorted(_ONE_HOME))
def test_a_rule_is_written_in_one_module(rule: str) -> None:
    pattern, home = _ONE_HOME[rule]
    assert copies(pattern, _SOURCES) == [home]


# A second copy of each rule, as someone might write it.
_COPIES = {
    "the control characters' class": 'ID = r"^[^\\x00-\\x1f\\x7f]+$"',
    "the blob layout": 'namespace = f"t{tenant_id}/u{user_id}"',
    "photo file suffixes": 'SUFFIXES = (".jpg", ".jpeg", ".png")',
    "the bare-word rule": "def is_bare_word_matchable(key): ...",
    "the storage charge": "block = max(size, 4096)",
}


@pytest.mark.parametrize("rule", sorted(_ONE_HOME))
def test_a_second_copy_would_be_found(rule: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text(_COPIES[rule] + "\n")
    assert copies(_ONE_HOME[rule][0], [copy]) == ["copy.py"]
