"""Inputs are read as the user sees them, and every input is accounted for (issue 26, part 3)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_DATA, save_demo_model

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.data import BadEntry, load_r2gen_annotation


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_a_jpeg_with_an_exif_orientation_is_read_as_viewers_show_it(tmp_path, orientation, turn):
    from PIL import Image

    from modeling_rrg_mamba.image_processing_xray import EXIF_ORIENTATION, load_xray_image

    stored = np.zeros((32, 48), dtype=np.uint8)
    stored[:8, :8] = 255  # a bright corner, top left as stored
    exif = Image.Image().getexif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / "film.jpg"
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    shown = load_xray_image(path, output="uint8")
    expected = np.rot90(stored, turn)  # 6: turn 90 degrees clockwise, 8: anticlockwise, 3: half a turn
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected).mean() < 4


# ------------------------------------------------- one image-path rule for verify, generate and train (part 3)

DEMO_IMAGES = sorted((DEMO_DATA / "images").glob("*.jpg"))
FAST = ["--num_beams", "1", "--max_new_tokens", "3", "--batch_size", "2"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return save_demo_model(tmp_path_factory.mktemp("model"))


def entry(index, *paths):
    return {"id": f"s{index}", "report": "no acute disease .", "image_path": list(paths)}


def write_annotation(folder, test_entries):
    path = folder / "annotation.json"
    train = [entry(90 + i, "train.jpg") for i in range(1)]
    path.write_text(json.dumps({"train": train, "test": test_entries}))
    return path


def linked_root(tmp_path):
    """An image root made of symlinks to the films (kept elsewhere), one of them in a linked sub-folder."""
    store, root = tmp_path / "store", tmp_path / "root"
    store.mkdir()
    root.mkdir()
    for image in DEMO_IMAGES[:3]:
        shutil.copy(image, store / image.name)
    (root / "a.jpg").symlink_to(store / DEMO_IMAGES[0].name)
    (root / "train.jpg").symlink_to(store / DEMO_IMAGES[1].name)
    (root / "more").symlink_to(store, target_is_directory=True)
    return root


def verify(annotation, root, capsys):
    code = main(["verify", "--annotation", str(annotation), "--image_root", str(root)])
    return code, capsys.readouterr().out


def generate(model, annotation, root, output, *extra):
    argv = ["generate", "--model", str(model), "--annotation", str(annotation), "--image_root", str(root)]
    return main([*argv, "--split", "test", "--output", str(output), *FAST, *extra])


def test_an_image_root_of_symlinks_is_accepted_by_verify_generate_and_train(saved_model, tmp_path, capsys):
    root = linked_root(tmp_path)
    annotation = write_annotation(tmp_path, [entry(0, "a.jpg"), entry(1, f"more/{DEMO_IMAGES[2].name}")])
    assert verify(annotation, root, capsys)[0] == 0
    assert generate(saved_model, annotation, root, tmp_path / "r.jsonl") == 0
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["s0", "s1"]
    assert records[0]["images"] == [str(root.resolve() / "a.jpg")]  # the path as given under the root
    dataset = load_r2gen_annotation(annotation, image_root=root)  # what train loads
    assert len(dataset["train"]) == 1 and len(dataset["test"]) == 2


@pytest.mark.parametrize("path", ["../outside.jpg", "sub/../../outside.jpg", "/abs/a.jpg"])
def test_a_path_that_escapes_the_root_is_refused_by_all_the_same_way(saved_model, tmp_path, capsys, path):
    root = linked_root(tmp_path)
    shutil.copy(DEMO_IMAGES[0], tmp_path / "outside.jpg")
    annotation = write_annotation(tmp_path, [entry(0, "a.jpg"), entry(1, path)])
    expected = "absolute" if path.startswith("/") else "escapes the image root"
    code, out = verify(annotation, root, capsys)
    assert code == 1 and expected in out and repr(path) in out
    assert generate(saved_model, annotation, root, tmp_path / "r.jsonl") == 2
    assert expected in capsys.readouterr().err
    with pytest.raises(BadEntry, match=expected):
        load_r2gen_annotation(annotation, image_root=root)
    assert generate(saved_model, annotation, root, tmp_path / "s.jsonl", "--on_bad_image", "skip") == 0
    assert expected in capsys.readouterr().err  # listed as skipped
    assert [json.loads(line)["id"] for line in (tmp_path / "s.jsonl").read_text().splitlines()] == ["s0"]


def _bad_input(root, case):
    if case == "zero_bytes":
        (root / "bad.jpg").write_bytes(b"")
    elif case == "folder_named_like_a_film":
        (root / "bad.jpg").mkdir()
    elif case == "dangling_link":
        (root / "bad.jpg").symlink_to(root / "gone.jpg")
    elif case == "not_an_image":
        (root / "bad.jpg").write_text("a text file")
    return ["bad.jpg"] if case != "same_film_twice" else ["a.jpg", "a.jpg"]


@pytest.mark.parametrize(
    "case", ["zero_bytes", "folder_named_like_a_film", "dangling_link", "not_an_image", "same_film_twice"]
)
def test_every_bad_input_is_named_by_verify_and_generate_or_listed_as_skipped(saved_model, tmp_path, capsys, case):
    root = linked_root(tmp_path)
    bad = _bad_input(root, case)
    annotation = write_annotation(tmp_path, [entry(0, "train.jpg"), entry(1, *bad)])
    if case == "same_film_twice":
        annotation = write_annotation(tmp_path, [entry(0, "train.jpg", "train.jpg"), entry(1, *bad)])
    code, out = verify(annotation, root, capsys)
    assert code == 1 and ("more than once" if case == "same_film_twice" else "bad.jpg") in out
    assert generate(saved_model, annotation, root, tmp_path / "r.jsonl") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ("more than once" if case == "same_film_twice" else "bad.jpg") in err
    assert generate(saved_model, annotation, root, tmp_path / "s.jsonl", "--on_bad_image", "skip") == 0
    output = tmp_path / "s.jsonl"
    seen = [json.loads(line)["id"] for line in output.read_text().splitlines()] if output.exists() else []
    err = capsys.readouterr().err
    skipped = 2 if case == "same_film_twice" else 1
    assert len(seen) + skipped == 2 and f"{skipped} studies skipped" in err  # each study written or listed


def test_files_of_an_images_folder_that_are_not_images_are_named(saved_model, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(DEMO_IMAGES[0], films / "a.jpg")
    (films / "notes.txt").write_text("not a film")
    argv = ["generate", "--model", str(saved_model), "--images", str(films), "--output", str(tmp_path / "r.jsonl")]
    assert main([*argv, *FAST]) == 0
    assert "notes.txt" in capsys.readouterr().err


def test_the_same_film_given_twice_to_generate_is_refused(saved_model, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(DEMO_IMAGES[0], films / "a.jpg")
    argv = ["generate", "--model", str(saved_model), "--images", str(films), str(films / "a.jpg")]
    assert main([*argv, "--output", str(tmp_path / "r.jsonl"), *FAST]) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "r.jsonl").exists()
    assert Path(films / "a.jpg").is_file()
