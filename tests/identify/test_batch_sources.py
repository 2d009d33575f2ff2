"""The engine-independent parts of `whales batch`: listing sources and the results folder."""

from __future__ import annotations

import zipfile

from whales_identify.batch import (
    ResultsDir,
    list_photos,
    read_photo,
    row_from_error,
    row_from_result,
    summarise,
)


def test_list_photos_folders_manifests_zips_and_problems(tmp_path):
    (tmp_path / "f" / "sub").mkdir(parents=True)
    (tmp_path / "f" / "a.jpg").write_bytes(b"a")
    (tmp_path / "f" / "sub" / "b.PNG").write_bytes(b"b")
    (tmp_path / "f" / "notes.txt").write_text("not a photo")
    (tmp_path / "f" / ".hidden.jpg").write_bytes(b"h")
    (tmp_path / "m.csv").write_text("relpath,x\nf/a.jpg,1\nf/c.jpg,2\n")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.writestr("p/one.jpg", b"1")
        z.writestr("p/", b"")
        z.writestr("__MACOSX/._one.jpg", b"m")
        z.writestr("readme.txt", b"taken as a photo, as /v1/predict-batch does")
    (tmp_path / "bad.csv").write_text("name\nx.jpg\n")
    listing = list_photos([tmp_path / "f", tmp_path / "m.csv", tmp_path / "z.zip", tmp_path / "bad.csv",
                           tmp_path / "missing"])
    names = [p.name.replace(str(tmp_path), "") for p in listing.photos]
    assert names == ["/f/a.jpg", "/f/sub/b.PNG", "/f/c.jpg", "/z.zip::p/one.jpg", "/z.zip::readme.txt"]
    assert listing.skipped == 2  # the folder entry and the macOS metadata
    assert [p.source for p in listing.problems] == [str(tmp_path / "bad.csv"), str(tmp_path / "missing")]
    assert read_photo(listing.photos[3], 10) == b"1"


def test_results_parts_merge_resume_and_summary(tmp_path):
    res = ResultsDir(tmp_path / "out")
    job = res.job_id()
    assert ResultsDir(tmp_path / "out").job_id() == job  # a rerun continues the same job
    ok = {"image_ind": "a.jpg", "rejected": False, "is_cetacean": True, "individual_id": "rw_1",
          "candidates": [{"individual_id": "rw_1", "score": 0.9}]}
    rejected = {"image_ind": "b.jpg", "rejected": True, "is_cetacean": False, "candidates": []}
    res.write_part([row_from_result(ok, "s1", job), row_from_result(rejected, "s2", job)])
    bad = {"image_ind": "c.jpg", "code": "invalid_image", "message": "x"}
    res.write_part([row_from_error(bad, "s3", job)])
    assert res.done() == {"s1", "s2", "s3"}
    path, rows = res.merge()
    assert [r["name"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg"] and path.exists()
    assert rows[0]["top_candidate"] == "rw_1" and rows[0]["job_id"] == job
    assert summarise(rows, skipped=1) == {"images": 3, "accepted": 1, "rejected": 1, "failed": 1,
                                          "skipped": 1}
    assert not list((tmp_path / "out" / "parts").glob("*.tmp"))
