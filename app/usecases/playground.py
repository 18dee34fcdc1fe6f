"""The playground: what rapport does with a question and a photo, shown step by step,
without calling the generator (a dry run of ``/chat``)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from app.domain.scope import UserScope
from app.services import Services
from app.storage.repository import users as user_rows
from app.storage.repository.concepts import ConceptSummary
from app.usecases.chat import ChatQuery, PreparedChat, prepare_chat
from app.usecases.retrieve import (
    cached_concepts,
    cached_index,
    decision_for,
    detector_categories,
    present_matches,
)
from retrieval.matching import best_per_label, region_winners
from retrieval.names import name_key, named_in
from retrieval.prompt import ImagePart
from retrieval.regions import Box
from retrieval.search import PhotoSearch, SearchOptions, search_photos

SHOWN_SCORES = 20  # concepts listed with their best score, best first
SEARCH_DEPTH = 1000  # hits per region read to find those scores


@dataclass(frozen=True)
class RegionScore:
    """A region rapport compared with the user's photos, and the concept it matched best."""

    box: Box  # in the photo's pixels
    concept: ConceptSummary | None
    score: float | None


@dataclass(frozen=True)
class ConceptScore:
    concept: ConceptSummary
    score: float
    box: Box
    # The score the concept needs to count as seen: the fixed min_score, or the decision
    # rule's threshold for this concept; None: its photos never make it present.
    threshold: float | None = None


@dataclass(frozen=True)
class PromptPhoto:
    """Which photo a prompt's image part is: the query photo or a concept's reference."""

    kind: str  # "query" or "reference"
    concept_id: str | None = None
    image_id: str | None = None


@dataclass(frozen=True)
class Preview:
    width: int | None
    height: int | None
    regions: list[RegionScore]
    scores: list[ConceptScore]  # every concept's best score over the regions, best first
    found: list[str]  # concept ids retrieval keeps from the photo (threshold, top_k)
    named: list[ConceptSummary]  # concepts named in the question
    prepared: PreparedChat
    photos: dict[int, PromptPhoto]  # id() of each prompt image -> which photo it is


def preview(services: Services, scope: UserScope, *, query: ChatQuery) -> Preview:
    """The regions, scores and matches of the question's photo, and the exact prompt
    ``/chat`` would send for it. Blocking: run it off the event loop."""
    prepared = prepare_chat(services, scope, query=query)
    turn = query.turns[-1]
    photo = turn.images[0] if turn.images else None
    with services.sessions() as session:
        found_user = user_rows.user_version(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
    regions: list[RegionScore] = []
    scores: list[ConceptScore] = []
    found: list[str] = []
    named: list[ConceptSummary] = []
    if found_user is not None:
        user_id, version = found_user
        concepts = cached_concepts(services, user_id, version)
        keys = named_in(turn.text, [c.name for c in concepts.values()])
        named = [c for c in concepts.values() if name_key(c.name) in keys]
        if photo is not None:
            detector = services.settings.regions == "detector"
            categories = detector_categories(concepts) if detector else []
            # The search chat ran, when it was of this photo alone; else search again.
            last = len(query.turns) - 1
            reuse = prepared.query_turn == last and len(turn.images) == 1
            regions, scores, found = _explain(
                services,
                user_id,
                version,
                concepts,
                photo,
                categories,
                query,
                prepared.search if reuse else None,
            )
    return Preview(
        width=photo.width if photo else None,
        height=photo.height if photo else None,
        regions=regions,
        scores=scores,
        found=found,
        named=named,
        prepared=prepared,
        photos=_prompt_photos(services, prepared),
    )


def _explain(
    services: Services,
    user_id: int,
    version: int,
    concepts: dict[str, ConceptSummary],
    photo: Image.Image,
    categories: list[str],
    query: ChatQuery,
    searched: PhotoSearch | None,
) -> tuple[list[RegionScore], list[ConceptScore], list[str]]:
    """Each region's best concept, the best concepts over all regions, and those that
    retrieval keeps: from the same search ``/retrieve`` runs (``search_photos``), the
    one chat already ran (``searched``) when given."""
    width, height = photo.size
    index = cached_index(services, user_id, version)
    if len(index) == 0:
        proposed = services.region_proposer.propose(photo, categories)
        return [RegionScore(r.box or (0, 0, width, height), None, None) for r in proposed], [], []
    if searched is None:
        settings = services.settings
        searched = search_photos(
            index,
            services.encoder,
            services.region_proposer,
            [photo],
            SearchOptions.of(settings.region_config(), settings.region_aggregation, categories),
        )
    boxes = [box or (0, 0, width, height) for _, box in searched.regions]
    rows = index.search(searched.vectors, min(len(index), SEARCH_DEPTH))
    # Each region's winner as retrieval's "winner" aggregation chooses it.
    winners = {match.region: match for match in region_winners(index, searched.vectors)}
    regions = [
        RegionScore(box, concepts.get(won.label), won.score)
        if (won := winners.get(number)) is not None
        else RegionScore(box, None, None)
        for number, box in enumerate(boxes)
    ]
    decide = decision_for(
        services,
        user_id,
        version,
        index,
        query.min_score,
        pooled=searched.pooled,
        vectors=searched.vectors,
    )
    best = sorted(best_per_label(rows).values(), key=lambda m: -m.score)
    scores = [
        ConceptScore(concepts[m.label], m.score, boxes[m.region], decide(m.label, m.score)[1])
        for m in best
        if m.label in concepts
    ][:SHOWN_SCORES]
    kept = present_matches(searched.matches, decide, top_k=query.top_k)
    return regions, scores, [m.label for m in kept if m.label in concepts]


def _prompt_photos(services: Services, prepared: PreparedChat) -> dict[int, PromptPhoto]:
    """Name each image of the prompt: the query photo (boxes drawn on it in visual mode)
    or the reference photo of a concept, by the ids the API gives them."""
    named = {
        image: PromptPhoto("reference", concept_id, photo_id)
        for image, (concept_id, photo_id) in prepared.references.items()
    }
    for message in prepared.prompt.messages:
        for part in message.parts:
            if isinstance(part, ImagePart) and id(part.image) not in named:
                named[id(part.image)] = PromptPhoto("query")
    return named
