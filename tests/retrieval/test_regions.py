from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from retrieval.errors import ModelLoadError
from retrieval.regions import (
    DetectorRegions,
    GridRegions,
    Region,
    RegionConfig,
    WholePhoto,
    open_region_proposer,
)
from tests import factories
from tests.tiny_detector import build_tiny_detector, prompts_scored


def photo(width: int = 400, height: int = 300) -> Image.Image:
    return factories.gradient(width, height)


@pytest.fixture(scope="module", params=["owlv2", "owlvit"])
def detector_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    return build_tiny_detector(folder, request.param)


def detector(folder: Path, **options: object) -> DetectorRegions:
    values: dict[str, object] = {"detector_threshold": 0.0, "max_regions": 100, "device": "cpu"}
    values.update(options)
    config = RegionConfig(kind="detector", detector_model=str(folder), **values)  # type: ignore[arg-type]
    proposer = open_region_proposer(config)
    assert isinstance(proposer, DetectorRegions)
    return proposer


def assert_crops_match(image: Image.Image, regions: list[Region]) -> None:
    assert regions[0].box is None and regions[0].image is image
    for region in regions[1:]:
        assert region.box is not None
        x0, y0, x1, y1 = region.box
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
        assert region.image.size == (x1 - x0, y1 - y0)


def test_whole_photo_is_one_region() -> None:
    image = photo()
    regions = WholePhoto().propose(image, ["dog"])
    assert regions == [Region(box=None, image=image)]
    assert isinstance(open_region_proposer(RegionConfig()), WholePhoto)


@pytest.mark.parametrize(("width", "height"), [(400, 300), (512, 512), (97, 301)])
def test_grid_tiles_cover_the_photo_at_every_scale(width: int, height: int) -> None:
    image = photo(width, height)
    regions = GridRegions(scales=(2, 3), overlap=0.25).propose(image)
    assert len(regions) == 1 + 4 + 9
    assert_crops_match(image, regions)
    for tiles in (regions[1:5], regions[5:]):
        covered = Image.new("1", image.size, 0)
        for region in tiles:
            covered.paste(1, region.box)
        assert covered.getextrema() == (1, 1)
    # Neighbours overlap: an object cut by one tile's border is whole in the next.
    (_, _, left_x1, _), (right_x0, _, _, _) = regions[1].box, regions[2].box  # type: ignore[misc]
    assert right_x0 < left_x1


def test_grid_without_overlap_tiles_exactly() -> None:
    boxes = GridRegions(scales=(2,), overlap=0.0).boxes(400, 300)
    assert boxes == [(0, 0, 200, 150), (200, 0, 400, 150), (0, 150, 200, 300), (200, 150, 400, 300)]


def test_grid_config_reaches_the_proposer() -> None:
    proposer = open_region_proposer(RegionConfig(kind="grid", grid_scales=(3,), grid_overlap=0.5))
    assert isinstance(proposer, GridRegions)
    assert len(proposer.propose(photo())) == 1 + 9


@pytest.mark.parametrize(
    ("scales", "overlap", "message"),
    [((), 0.25, "scales"), ((0, 2), 0.25, "scales"), ((2,), 1.0, "overlap")],
)
def test_bad_grids_are_refused(scales: tuple[int, ...], overlap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GridRegions(scales=scales, overlap=overlap)


def test_unknown_region_kind_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown region kind 'yolo'; known: whole, grid, detector"
    ):
        open_region_proposer(RegionConfig(kind="yolo"))  # type: ignore[arg-type]


def test_detector_boxes_are_crops_inside_the_photo_whole_photo_first(detector_dir: Path) -> None:
    image = photo(400, 300)
    regions = detector(detector_dir).propose(image, ["dog"])
    assert len(regions) > 10
    assert_crops_match(image, regions)


def test_detector_boxes_map_back_to_photo_pixels(detector_dir: Path) -> None:
    # Each box is the size of one patch of the model input. OWLv2 pads the photo
    # to a 400x400 square (patches 50x50); OWL-ViT stretches it (50x37.5).
    patch_height = 50 if "owlv2" in detector_dir.name else 37.5
    boxes = [box for box, _ in detector(detector_dir, min_box_pixels=1).detect(photo(400, 300))]
    # Boxes that touch the photo's border were clipped to it.
    inner = [
        (x0, y0, x1, y1) for x0, y0, x1, y1 in boxes if 0 < x0 < x1 < 400 and 0 < y0 < y1 < 300
    ]
    assert len(inner) >= 10
    for x0, y0, x1, y1 in inner:
        assert x1 - x0 == 50
        assert abs((y1 - y0) - patch_height) <= 1


def test_detector_threshold_is_honoured(detector_dir: Path) -> None:
    image = photo()
    low = detector(detector_dir, detector_threshold=0.1).detect(image, ["dog"])
    high = detector(detector_dir, detector_threshold=0.5).detect(image, ["dog"])
    assert all(score >= 0.1 for _, score in low) and all(score >= 0.5 for _, score in high)
    assert 0 < len(high) < len(low)
    assert [score for _, score in low] == sorted((score for _, score in low), reverse=True)
    nothing = detector(detector_dir, detector_threshold=1.01).propose(image, ["dog"])
    assert nothing == [Region(box=None, image=image)]


def test_detector_cap_is_honoured(detector_dir: Path) -> None:
    image = photo()
    assert len(detector(detector_dir, max_regions=100).propose(image)) > 4
    assert len(detector(detector_dir, max_regions=3).propose(image)) == 1 + 3


def test_small_boxes_are_dropped(detector_dir: Path) -> None:
    # Cells reach 37 to 50 pixels; some are clipped to a sliver at the border.
    image = photo(400, 300)
    sides = [
        min(x1 - x0, y1 - y0)
        for (x0, y0, x1, y1), _ in detector(detector_dir, min_box_pixels=36).detect(image)
    ]
    assert sides and min(sides) >= 36
    assert not detector(detector_dir, min_box_pixels=60).detect(image)


def test_detector_prompts_are_categories_then_generic_words(detector_dir: Path) -> None:
    proposer = detector(detector_dir, generic_words=("object", "animal"))
    assert proposer.prompts([" Dog ", "teddy  bear", "object"]) == [
        "dog",
        "teddy bear",
        "object",
        "animal",
    ]


def test_detector_prompts_keep_the_generic_words_then_categories_up_to_the_cap(
    detector_dir: Path,
) -> None:
    proposer = detector(detector_dir, detector_max_prompts=5)
    words = ["Mug", "object", "dog", "mug", "cat", "teddy bear"]
    assert proposer.prompts(words) == ["mug", "dog", "object", "animal", "person"]
    assert detector(detector_dir, detector_max_prompts=2).prompts(words) == ["object", "animal"]
    with pytest.raises(ValueError, match="max_prompts"):
        detector(detector_dir, detector_max_prompts=0)


def test_a_thousand_categories_send_at_most_max_prompts_to_the_detector(
    detector_dir: Path,
) -> None:
    categories = [f"thing {i}" for i in range(1000)]
    image = photo()
    with prompts_scored() as counts:
        detector(detector_dir).detect(image, categories)
        detector(detector_dir).detect(image, ["dog"])
    assert counts == [32, 1 + 3]  # the default cap; the generic words and "dog"
    with prompts_scored() as counts:
        detector(detector_dir, detector_max_prompts=7).detect(image, categories)
    assert counts == [7]


def test_missing_detector_model_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load detector"):
        open_region_proposer(RegionConfig(kind="detector", detector_model=str(tmp_path)))
