"""Rows: read from JSONL and CSV, defaults applied, every problem of every row named with its row number,
and each row identified by what it asks for (so an edited file re-runs only what changed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import make_image
from ideochar.batch import RowSource, rows_of
from ideochar.errors import InvalidRequest


def _jsonl(folder: Path, rows: list[dict[str, object]], name: str = "rows.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_and_csv_rows_make_the_same_requests_and_keys(tmp_path: Path, reference: Path) -> None:
    rows = [
        {"prompt": "a knight", "reference": "face.png", "aspect_ratio": "16:9", "seed": 7},
        {"prompt": "a queen", "reference": "face.png", "style_codes": ["AAAA1111", "BBBB2222"], "num_images": 2},
    ]
    jsonl = _jsonl(tmp_path, rows)
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "reference", "aspect-ratio", "seed", "style_codes", "num_images"])
        writer.writerow(["a knight", "face.png", "16:9", "7", "", ""])
        writer.writerow(["a queen", "face.png", "", "", "AAAA1111;BBBB2222", "2"])
    from_jsonl = list(RowSource(jsonl))
    from_csv = list(RowSource(tmp_path / "rows.csv"))
    assert [r.errors for r in from_jsonl + from_csv] == [(), (), (), ()]
    assert [r.key for r in from_jsonl] == [r.key for r in from_csv]
    assert from_csv[0].request is not None and from_csv[0].request.seed == 7
    assert from_csv[1].request is not None and from_csv[1].request.style_codes == ["AAAA1111", "BBBB2222"]


def test_defaults_fill_what_a_row_leaves_out_and_a_row_wins(tmp_path: Path, reference: Path) -> None:
    path = _jsonl(tmp_path, [{"prompt": "one"}, {"prompt": "two", "speed": "quality", "extra": {"fal": {"b": 2}}}])
    defaults = {"reference": str(reference), "speed": "turbo", "extra": {"fal": {"a": 1}}}
    first, second = (r.request for r in RowSource(path, defaults=defaults))
    assert first is not None and second is not None
    assert (first.speed, second.speed) == ("turbo", "quality")
    assert first.extra == {"fal": {"a": 1}}
    assert second.extra == {"fal": {"b": 2}}  # a row's own namespace replaces the default's


def test_relative_image_paths_are_read_from_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    (folder / "hero.png").write_bytes(make_image())
    path = _jsonl(folder, [{"prompt": "a knight", "reference": "hero.png"}])
    monkeypatch.chdir(tmp_path)  # not the file's folder
    (row,) = RowSource(path)
    assert row.request is not None
    assert row.request.reference.path == folder / "hero.png"


def test_every_problem_of_every_row_is_reported_with_its_row_number(tmp_path: Path, reference: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "fine", "reference": "face.png"}),
                json.dumps({"prompt": "two problems", "reference": "missing.png", "aspect_ratio": "7:3"}),
                "{not json",
                json.dumps({"prompt": "", "reference": "face.png", "colour": "red"}),
                json.dumps({"prompt": "strength is for remix", "reference": "face.png", "strength": 0.5}),
                json.dumps({"prompt": "fine too", "reference": "face.png", "image": "face.png", "strength": 0.4}),
            ]
        ),
        encoding="utf-8",
    )
    rows = list(RowSource(path))
    problems = {r.number: sorted(e.field for e in r.errors) for r in rows}
    assert problems == {
        1: [],
        2: ["aspect_ratio", "reference"],
        3: ["line"],
        4: ["colour", "prompt"],
        5: ["strength"],
        6: [],
    }
    assert rows[5].request is not None and rows[5].request.operation_name == "remix"


def test_a_rows_key_is_its_content_not_its_place_nor_its_paths(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_image(color="red"))
    (tmp_path / "same-bytes.png").write_bytes(make_image(color="red"))
    rows = [{"prompt": f"scene {i}", "reference": "a.png", "seed": i} for i in range(4)]
    keys = [r.key for r in RowSource(_jsonl(tmp_path, rows))]
    assert len(set(keys)) == 4

    moved = [r.key for r in RowSource(_jsonl(tmp_path, list(reversed(rows)), "moved.jsonl"))]
    assert moved == list(reversed(keys))  # rows moved around: nothing new

    edited = [dict(r) for r in rows]
    edited[2]["prompt"] = "scene 2, at night"
    after = [r.key for r in RowSource(_jsonl(tmp_path, edited, "edited.jsonl"))]
    assert [a == b for a, b in zip(after, keys, strict=True)] == [True, True, False, True]  # only the edited one

    elsewhere = [dict(r, reference="same-bytes.png") for r in rows]
    assert [r.key for r in RowSource(_jsonl(tmp_path, elsewhere, "elsewhere.jsonl"))] == keys  # same bytes

    labelled = [dict(r, id=f"shot-{i}") for i, r in enumerate(rows)]
    assert not {r.key for r in RowSource(_jsonl(tmp_path, labelled, "labelled.jsonl"))} & set(keys)

    (tmp_path / "a.png").write_bytes(make_image(color="blue"))  # the reference itself changed
    assert not {r.key for r in RowSource(_jsonl(tmp_path, rows))} & set(keys)


def test_a_reference_named_by_many_rows_is_read_once(tmp_path: Path, reference: Path) -> None:
    rows = [{"prompt": f"scene {i}", "reference": "face.png"} for i in range(50)]
    requests = [r.request for r in RowSource(_jsonl(tmp_path, rows))]
    assert len({id(r.reference) for r in requests if r is not None}) == 1


def test_bad_defaults_stop_the_batch_at_once(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"prompt": "a knight"}])
    with pytest.raises(InvalidRequest, match="reference"):
        list(RowSource(path, defaults={"reference": str(tmp_path / "missing.png")}))


def test_python_rows_take_requests_and_mappings(tmp_path: Path, reference: Path) -> None:
    from ideochar import CharacterRequest

    request = CharacterRequest(prompt="prepared", reference=reference)
    rows = list(rows_of([request, {"prompt": "mapped", "reference": str(reference)}, 42]))
    assert [bool(r.request) for r in rows] == [True, True, False]
    assert rows[2].errors[0].field == "row"
