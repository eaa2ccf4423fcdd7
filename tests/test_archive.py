"""The study's prepared archive: validation, safe fetch from a real local HTTP server, import; real LC-Rec data."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mmgenrec.data.archive import fetch_prepared_archive, import_local_prepared
from mmgenrec.data.prepared_format import validate_prepared
from mmgenrec.data.prepare import _write_recbole
from mmgenrec.io import InputError

RECBOLE_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
INTER = {"0": [0, 1, 2, 3], "1": [4, 1, 0], "2": [2, 3, 4, 1, 5]}


def make_prepared(folder: Path, name: str = "Toy") -> Path:
    """A small valid LC-Rec-style folder: 3 users, 6 items, item2id, user2id, enriched json, 2 images."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(INTER, indent=4))
    items = {str(i): {"title": f"Item {i}", "description": "d", "brand": "B", "categories": "A, B"} for i in range(6)}
    (folder / f"{name}.item.json").write_text(json.dumps(items, indent=4))
    (folder / f"{name}.item2id").write_text("".join(f"B00{i}XYZ\t{i}\n" for i in range(6)))
    (folder / f"{name}.user2id").write_text("UA\t0\nUB\t1\nUC\t2\n")
    (folder / f"{name}.item_enriched_v2.json").write_text(json.dumps({"1": {"tags": ["x"]}, "4": {"tags": []}}))
    (folder / "images").mkdir()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(folder / "images" / "B000XYZ.jpg")
    Image.new("RGB", (4, 4), (0, 255, 0)).save(folder / "images" / "3.png")  # by item id, not asin
    (folder / "images" / "B005XYZ.jpg").write_bytes(b"broken")  # unreadable -> no image
    return folder


def _zip(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + str(p.relative_to(src)))
    return dest


def _targz(src: Path, dest: Path, prefix: str = "") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                tf.add(p, prefix + str(p.relative_to(src)))
    return dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _no_leftovers(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------------- validation


def test_validate_valid_folder(tmp_path):
    report = validate_prepared(make_prepared(tmp_path / "p"), "Toy")
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (3, 6, 12)
    assert report["seq_len"] == {"min": 3, "max": 5}
    assert report["present"] == {"inter.json": True, "item.json": True, "item2id": True, "user2id": True,
                                 "item_enriched_v2.json": True, "images": True, "train.inter": False,
                                 "valid.inter": False, "test.inter": False}
    assert (report["item2id_lines"], report["user2id_lines"], report["enriched_items"], report["image_files"]) == \
        (6, 3, 2, 3)
    assert report["items_empty_title"] == [] and report["other_files"] == []


def _break(tmp_path, edit):
    folder = make_prepared(tmp_path / "bad")
    edit(folder)
    return folder


def _edit_json(name, fn):
    def edit(folder):
        path = folder / name
        obj = json.loads(path.read_text())
        fn(obj)
        path.write_text(json.dumps(obj))
    return edit


@pytest.mark.parametrize("edit, message", [
    (_edit_json("Toy.item.json", lambda o: o.pop("2")),
     r"Toy\.item\.json: item 2 \(in inter\.json, user 0\) is missing"),
    (_edit_json("Toy.item.json", lambda o: o["4"].update(title=" ")), r"Toy\.item\.json: item 4: field 'title'"),
    (_edit_json("Toy.item.json", lambda o: o.update({"6": {"title": "x"}})),
     r"Toy\.item\.json: item 6 is not in inter\.json"),
    (_edit_json("Toy.item.json", lambda o: o["0"].update(image="../../etc/passwd")),
     r"item 0: field 'image' must be a plain file name"),
    (_edit_json("Toy.inter.json", lambda o: o.update({"1": [4, 1]})),
     r"Toy\.inter\.json: user 1: 2 item\(s\); leave-one-out needs at least 3"),
    (_edit_json("Toy.inter.json", lambda o: o.update({"1": [4, 1, "0"]})),
     r"Toy\.inter\.json: user 1: expected a list"),
    (_edit_json("Toy.inter.json", lambda o: o.update({"2": [2, 3, 4, 1, 7]})),
     r"Toy\.inter\.json: item ids must be 0\.\.5 without gaps; item 5 is missing \(largest id 7\)"),
    (lambda f: (f / "Toy.item2id").write_text("B000XYZ\t0\nB001XYZ\t1\nB000XYZ\t2\n"),
     r"Toy\.item2id: line 3: asin 'B000XYZ' repeated \(first on line 1\)"),
    (lambda f: (f / "Toy.item2id").write_text("B000XYZ 0\n"), r"Toy\.item2id: line 1: expected '<asin>\\t<id>'"),
    (lambda f: (f / "Toy.item2id").write_text("".join(f"A{i}\t{i}\n" for i in range(5))),
     r"Toy\.item2id: item 5 \(in inter\.json\) has no line"),
    (lambda f: (f / "Toy.user2id").write_text("UA\t0\nUB\t1\n"),
     r"Toy\.user2id: user 2 \(in inter\.json\) has no line"),
    (_edit_json("Toy.item_enriched_v2.json", lambda o: o.update({"9": {}})),
     r"Toy\.item_enriched_v2\.json: item 9 is not in inter\.json"),
    (_edit_json("Toy.item_enriched_v2.json", lambda o: o.update({"3": "tags"})),
     r"Toy\.item_enriched_v2\.json: item 3: expected an object"),
    (lambda f: (f / "Toy.item.json").unlink(), r"Toy\.item\.json: required file is missing"),
    (lambda f: (f / "Toy.inter.json").write_text("{oops"), r"Toy\.inter\.json: line 1: not valid JSON"),
])
def test_validate_violations_are_clear_errors(tmp_path, edit, message):
    with pytest.raises(InputError, match=message):
        validate_prepared(_break(tmp_path, edit), "Toy")


def test_validate_recbole_splits(tmp_path):
    folder = make_prepared(tmp_path / "p")
    _write_recbole(folder, "Toy", INTER, 50)
    report = validate_prepared(folder, "Toy")
    assert report["split_rows"] == {"train": 3, "valid": 3, "test": 3}  # (4-3) + (3-3) + (5-3) train rows
    test = (folder / "Toy.test.inter").read_text().replace("0\t0 1 2\t3", "0\t0 1 2\t1")
    (folder / "Toy.test.inter").write_text(test)
    with pytest.raises(InputError, match=r"Toy\.test\.inter: line 2: user 0: row is not the leave-one-out test"):
        validate_prepared(folder, "Toy")


# ---------------------------------------------------------------------------------------------- fetching


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_fetch_archive_over_http(tmp_path, server, kind):
    www, base = server
    src = make_prepared(tmp_path / "src")
    if kind == "zip":  # one top-level folder, as archives usually have
        _zip(src, www / "Toy_prepared.zip", prefix="Toy/")
    else:  # files at the archive root
        _targz(src, www / "Toy_prepared.tar.gz")
    dest = tmp_path / "data" / "Toy"
    report = fetch_prepared_archive(dest, url=f"{base}/Toy_prepared.{kind}", name="Toy")
    assert report["archive_format"] == {"zip": "zip", "tar.gz": "gztar"}[kind]
    assert (report["n_users"], report["n_items"], report["n_interactions"], report["image_files"]) == (3, 6, 12, 3)
    assert len(report["archive_sha256"]) == 64 and report["folder"] == str(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in src.iterdir())
    for p in src.rglob("*"):
        if p.is_file():
            assert (dest / p.relative_to(src)).read_bytes() == p.read_bytes()
    _no_leftovers(dest.parent)
    # fetching again replaces the folder
    fetch_prepared_archive(dest, url=f"{base}/Toy_prepared.{kind}", name="Toy")
    assert validate_prepared(dest, "Toy")["n_items"] == 6
    _no_leftovers(dest.parent)


def _evil_zip(path: Path, src: Path) -> None:
    _zip(src, path, prefix="Toy/")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("../evil", "pwned")


def _evil_tar(path: Path, src: Path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for p in sorted(src.glob("*")):
            if p.is_file():
                tf.add(p, "Toy/" + p.name)
        data = b"pwned"
        info = tarfile.TarInfo("Toy/../../evil")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def _abs_tar(path: Path, src: Path) -> None:
    with tarfile.open(path, "w") as tf:
        tf.add(src / "Toy.inter.json", "Toy.inter.json")
        data = b"pwned"
        info = tarfile.TarInfo("/tmp/evil")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def _link_tar(path: Path, src: Path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src / "Toy.inter.json", "Toy/Toy.inter.json")
        info = tarfile.TarInfo("Toy/images")
        info.type, info.linkname = tarfile.SYMTYPE, "../../.."
        tf.addfile(info)


def _missing_item(path: Path, src: Path) -> None:
    items = json.loads((src / "Toy.item.json").read_text())
    del items["3"]
    (src / "Toy.item.json").write_text(json.dumps(items))
    _zip(src, path)


def _two_folders(path: Path, src: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for prefix in ("a/", "b/"):
            for p in src.glob("Toy.*"):
                zf.write(p, prefix + p.name)


@pytest.mark.parametrize("build, message", [
    (lambda p, s: p.write_bytes(b"PK\x03\x04" + b"\x00" * 200), r"corrupt or truncated zip archive"),
    (lambda p, s: p.write_bytes(_targz(s, p.with_suffix(".x")).read_bytes()[:300]), r"corrupt or truncated gztar"),
    (lambda p, s: p.write_bytes(b"<!DOCTYPE html><html>Google Drive - Quota exceeded</html>"), r"an HTML page"),
    (lambda p, s: p.write_bytes(b"just some bytes"), r"not a zip or tar archive"),
    (_evil_zip, r"archive member '\.\./evil' has an absolute path or '\.\.'; refusing it"),
    (_evil_tar, r"archive member 'Toy/\.\./\.\./evil' has an absolute path or '\.\.'"),
    (_abs_tar, r"archive member '/tmp/evil' has an absolute path"),
    (_link_tar, r"archive member 'Toy/images' links outside the archive"),
    (_missing_item, r"Toy\.item\.json: item 3 \(in inter\.json, user 0\) is missing"),
    (_two_folders, r"holds Toy\.inter\.json in 2 folders \(a, b\); expected one"),
], ids=["corrupt-zip", "truncated-targz", "html", "garbage", "zip-dotdot", "tar-dotdot", "tar-absolute",
        "tar-symlink", "missing-item", "two-folders"])
def test_fetch_bad_archives_leave_no_trace(tmp_path, server, build, message):
    www, base = server
    src = make_prepared(tmp_path / "src")
    archive = www / "bad.bin"
    build(archive, src)
    dest = tmp_path / "data" / "Toy"
    with pytest.raises(InputError, match=message):
        fetch_prepared_archive(dest, url=f"{base}/bad.bin", name="Toy")
    assert not dest.exists()
    _no_leftovers(dest.parent)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "evil").exists()


def test_fetch_http_errors(tmp_path, server):
    www, base = server
    dest = tmp_path / "data" / "Toy"
    with pytest.raises(InputError, match=r"/missing\.zip: download failed"):
        fetch_prepared_archive(dest, url=f"{base}/missing.zip", name="Toy")
    (www / "other.zip").write_bytes(_zip(make_prepared(tmp_path / "src"), tmp_path / "o.zip").read_bytes())
    with pytest.raises(InputError, match=r"the archive holds no Instruments\.inter\.json \(top level: Toy\.inter"):
        fetch_prepared_archive(dest, url=f"{base}/other.zip")  # default name "Instruments"
    assert not dest.exists()
    _no_leftovers(dest.parent)
    with pytest.raises(ValueError, match="exactly one"):
        fetch_prepared_archive(dest, url=f"{base}/x.zip", gdrive_id="abc")


def test_fetch_failure_keeps_existing_dest(tmp_path, server):
    www, base = server
    dest = make_prepared(tmp_path / "data" / "Toy")
    before = sorted(p.name for p in dest.iterdir())
    (www / "bad.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 5)
    with pytest.raises(InputError):
        fetch_prepared_archive(dest, url=f"{base}/bad.zip", name="Toy")
    assert sorted(p.name for p in dest.iterdir()) == before
    _no_leftovers(dest.parent)


# ---------------------------------------------------------------------------------------------- import


def test_import_local_prepared(tmp_path):
    src = make_prepared(tmp_path / "src")
    out = tmp_path / "out"
    stats = import_local_prepared(src, out, "Toy")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Toy.inter.json", "Toy.item.json", "Toy.item2id", "Toy.item_enriched_v2.json", "Toy.stats.json",
                     "Toy.test.inter", "Toy.train.inter", "Toy.user2id", "Toy.valid.inter", "images"]
    items = json.loads((out / "Toy.item.json").read_text())
    assert all(list(v) == ["title", "description", "brand", "categories", "asin", "image"] for v in items.values())
    assert [items[str(i)]["asin"] for i in range(6)] == [f"B00{i}XYZ" for i in range(6)]
    # image rule: images/<asin>.jpg (item 0), else images/<item id>.<ext> (item 3); unreadable files ignored
    assert [items[str(i)]["image"] for i in range(6)] == ["B000XYZ.jpg", None, None, "3.png", None, None]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["3.png", "B000XYZ.jpg"]
    assert (out / "Toy.inter.json").read_text() == json.dumps(INTER, separators=(", ", ": ")) + "\n"
    assert (out / "Toy.test.inter").read_text() == f"{RECBOLE_HEADER}\n0\t0 1 2\t3\n1\t4 1\t0\n2\t2 3 4 1\t5\n"
    assert stats["imported"]["recbole"] == "written"
    assert stats["counts"] == {"items_empty_title": 0, "items_with_image": 2, "items_without_asin": 0,
                               "items_without_image": 4}
    # the imported folder is itself a valid prepared folder, in our format
    report = validate_prepared(out, "Toy")
    assert report["split_rows"] == {"train": 3, "valid": 3, "test": 3}


# ---------------------------------------------------------------------------------------------- real data


def test_real_lcrec_office(shared_data, tmp_path):
    folder = shared_data / "lcrec-office"
    # no item2id in that folder: requiring it is a clear error
    with pytest.raises(InputError, match=r"Office\.item2id: required file is missing"):
        validate_prepared(folder, "Office")
    # the real LC-Rec item.json has 3 items with an empty title (828, 1429, 1786): strict by default
    with pytest.raises(InputError, match=r"Office\.item\.json: item 828: field 'title' is missing or empty"):
        validate_prepared(folder, "Office", require=("inter.json", "item.json"))
    report = validate_prepared(folder, "Office", require=("inter.json", "item.json"), allow_empty_titles=True)
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (4905, 2420, 53258)
    assert report["seq_len"] == {"min": 5, "max": 94} and report["users_with_repeated_items"] == 0
    assert report["items_empty_title"] == [828, 1429, 1786]
    assert report["other_files"] == ["LICENSE.source-repo", "MANIFEST.md", "Office.index.rq-kmeans.json"]

    out = tmp_path / "Office"
    stats = import_local_prepared(folder, out, "Office", allow_empty_titles=True)
    assert sorted(p.name for p in out.iterdir()) == ["Office.inter.json", "Office.item.json", "Office.stats.json",
                                                    "Office.test.inter", "Office.train.inter",
                                                    "Office.valid.inter", "images"]
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (4905, 2420, 53258)
    assert stats["counts"] == {"items_empty_title": 3, "items_with_image": 0, "items_without_asin": 2420,
                               "items_without_image": 2420}
    assert stats["imported"]["item2id"] is False and stats["imported"]["recbole"] == "written"
    items = json.loads((out / "Office.item.json").read_text())
    src_items = json.loads((folder / "Office.item.json").read_text())
    assert items["0"] == {**src_items["0"], "asin": None, "image": None}
    assert json.loads((out / "Office.inter.json").read_text()) == \
        json.loads((folder / "Office.inter.json").read_text())
    for split, rows in (("train", 53258 - 3 * 4905), ("valid", 4905), ("test", 4905)):
        assert len((out / f"Office.{split}.inter").read_text().splitlines()) == rows + 1
    again = validate_prepared(out, "Office", require=("inter.json", "item.json"), allow_empty_titles=True)
    assert again["split_rows"] == {"train": 38543, "valid": 4905, "test": 4905}


def test_real_instruments(shared_data, tmp_path):
    folder = shared_data / "Instruments"
    # the study's Instruments folder: inter.json, item2id, user2id and RecBole splits, but no item.json
    report = validate_prepared(folder, "Instruments", require=("inter.json", "item2id"))
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (17112, 6250, 136226)
    assert report["seq_len"] == {"min": 5, "max": 131}
    assert (report["item2id_lines"], report["user2id_lines"]) == (6250, 17112)
    assert report["split_rows"] == {"train": 84890, "valid": 17112, "test": 17112}  # train: 136226 - 3 * 17112
    assert "item.json" not in report["present"]
    assert report["other_files"] == ["Instruments.index_lemb.json", "Instruments.index_llama-td.json",
                                     "Instruments.index_qwen7B.json", "Instruments.index_vitemb.json", "MANIFEST.md"]
    with pytest.raises(InputError, match=r"Instruments\.item\.json: required file is missing"):
        validate_prepared(folder, "Instruments")
    with pytest.raises(InputError, match=r"Instruments\.item\.json: required file is missing"):
        import_local_prepared(folder, tmp_path / "out", "Instruments")
    # an ID-only import (what the prepared source does): empty item records, the study's item2id and splits kept
    stats = import_local_prepared(folder, tmp_path / "ids", "Instruments", require=("inter.json",))
    assert stats["imported"]["item_text"] is False and stats["imported"]["item2id"] is True
    items = json.loads((tmp_path / "ids" / "Instruments.item.json").read_text())
    assert len(items) == 6250 and items["17"]["title"] == "" and items["17"]["image"] is None
    assert (tmp_path / "ids" / "Instruments.item2id").read_text() == (folder / "Instruments.item2id").read_text()
    # our RecBole writer reproduces the study's splits: valid/test byte for byte, train as the same rows
    # (the study lists each user's training prefixes longest first, we list them shortest first)
    inter = json.loads((folder / "Instruments.inter.json").read_text())
    _write_recbole(tmp_path, "Instruments", inter, 50)
    for split in ("valid", "test"):
        assert (tmp_path / f"Instruments.{split}.inter").read_bytes() == \
            (folder / f"Instruments.{split}.inter").read_bytes()
    ours = (tmp_path / "Instruments.train.inter").read_text().splitlines()
    theirs = (folder / "Instruments.train.inter").read_text().splitlines()
    assert ours[0] == theirs[0] == RECBOLE_HEADER and Counter(ours) == Counter(theirs)
