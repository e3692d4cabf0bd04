"""The path policy on real files and symlinks: parse, resolve, roots, overlap, opening without
following links, listing hostile folders."""

import os

import pytest

from skinray import paths, storage
from skinray.errors import StorageError
from skinray.paths import Location, OverlapError, PathPolicyError, Roots


@pytest.mark.parametrize("uri", [
    "file:///outside/victim.txt#/../../root/out",  # issue 15 case 1: the fragment was dropped
    "file:///etc?/../root/x",
    "/data/photo.jpg?/../../root/x",
    "/data/a#b",
])
def test_query_and_fragment_are_refused_for_local_paths(uri):
    with pytest.raises(PathPolicyError, match="may not contain"):
        paths.parse(uri)
    with pytest.raises(StorageError, match="may not contain"):
        storage.resolve(uri)  # the one parser: storage reads locations the same way


def test_parse_forms():
    assert paths.parse("file:///data/x/") == Location("local", "/data/x")
    assert paths.parse("/data/./a/../b") == Location("local", "/data/b")
    assert paths.parse("s3://b/p?x#y/") == Location("s3", "b/p?x#y"), "S3 keys are literal"
    for bad, why in (("file://host/data", "another host"), ("gs://b/x", "unsupported scheme"),
                     ("s3://", "needs a bucket"), ("s3:///k", "needs a bucket"), ("", "empty")):
        with pytest.raises(PathPolicyError, match=why):
            paths.parse(bad)


def test_under_works_on_whole_segments():
    loc = paths.parse
    assert paths.under(loc("/data/in"), loc("/data")) and paths.under(loc("/data"), loc("/data/"))
    assert not paths.under(loc("/data/../etc"), loc("/data")) and not paths.under(loc("/database"), loc("/data"))
    assert paths.under(loc("s3://b/photos/x"), loc("s3://b/photos"))
    assert not paths.under(loc("s3://b/photos2"), loc("s3://b/photos"))
    assert not paths.under(loc("s3://other/photos"), loc("s3://b/photos"))
    assert not paths.under(loc("/b/photos"), loc("s3://b/photos"))
    assert paths.under(loc("file:///data/archive/x"), loc("/data/archive"))


def _tree(tmp_path):
    root, outside_in, outside_out = tmp_path / "root", tmp_path / "outside_in", tmp_path / "outside_out"
    for d in (root / "photos", outside_in, outside_out):
        d.mkdir(parents=True)
    (root / "link_in").symlink_to(outside_in)
    (root / "link_out").symlink_to(outside_out)
    return root, outside_in, outside_out


def test_roots_are_checked_after_resolving_symlinks(tmp_path):
    """Issue 15 case 2: ROOT/link_in -> OUTSIDE_IN read and ROOT/link_out/sub written outside."""
    root, outside_in, outside_out = _tree(tmp_path)
    roots = Roots((str(root),))
    src, dst = paths.check_job(str(root / "photos"), str(root / "out"), roots)
    assert src.path == os.path.realpath(root / "photos")
    with pytest.raises(PathPolicyError, match=r"input .* \(resolves to .*outside_in\) is outside the allowed roots"):
        paths.check_job(str(root / "link_in"), str(root / "out"), roots)
    with pytest.raises(PathPolicyError, match=r"output .* is outside the allowed roots"):
        paths.check_job(str(root / "photos"), str(root / "link_out" / "sub"), roots)
    with pytest.raises(PathPolicyError, match="may not contain"):
        paths.check_job(str(root / "photos"), f"file://{outside_out}/victim.txt#/../../root/out", roots)


def test_closed_and_overwrite_roots(tmp_path):
    root, _, _ = _tree(tmp_path)
    (root / "scratch").mkdir()
    with pytest.raises(PathPolicyError, match="turned off"):
        paths.check_job(str(root / "photos"), str(root / "out"), Roots(()))
    roots = Roots((str(root),), overwrite=(str(root / "scratch"),))
    with pytest.raises(PathPolicyError, match="overwrite is only allowed under batch_writable_roots"):
        paths.check_job(str(root / "photos"), str(root / "out"), roots, overwrite=True)
    paths.check_job(str(root / "photos"), str(root / "scratch" / "out"), roots, overwrite=True)
    with pytest.raises(PathPolicyError, match="follow_symlinks is not allowed"):
        paths.check_job(str(root / "photos"), str(root / "out"), roots, follow_symlinks=True)
    paths.check_roots_config(roots)
    with pytest.raises(PathPolicyError, match="not under any of batch_roots"):
        paths.check_roots_config(Roots((str(root / "photos"),), overwrite=(str(root / "scratch"),)))


def test_s3_roots_are_literal_and_plain():
    roots = Roots(("s3://bucket/photos",))
    paths.check_job("s3://bucket/photos/in", "s3://bucket/photos/out", roots)
    for uri in ("s3://bucket/photos/../secret", "s3://bucket/photos//x", "s3://bucket/photos/./x"):
        with pytest.raises(PathPolicyError, match="ambiguous"):
            paths.check_job(uri, "s3://bucket/photos/out", roots)
    with pytest.raises(PathPolicyError, match="outside the allowed roots"):
        paths.check_job("s3://bucket/photos2", "s3://bucket/photos/out", roots)


@pytest.mark.parametrize("output, how", [
    ("{in}/.", "is the input"),
    ("{in}/", "is the input"),
    ("{in}/sub", "lies inside the input"),
    ("{root}", "contains the input"),
    ("{alias}", "is the input"),  # a symlink to the input folder
    ("{alias}/deeper", "lies inside the input"),
])
def test_output_among_the_originals_is_refused(tmp_path, output, how):
    """Issue 15 case 3: 'ROOT/photos/.' passed the string comparison and replaced the originals."""
    root = tmp_path / "root"
    (root / "photos").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(root / "photos")
    out = output.format(**{"in": root / "photos", "root": root, "alias": tmp_path / "alias"})
    with pytest.raises(OverlapError, match=how):
        paths.check_job(str(root / "photos"), out, None)


def test_s3_overlap_is_same_bucket_and_overlapping_prefixes():
    for a, b in (("s3://b/p", "s3://b/p/out"), ("s3://b/p/in", "s3://b/p"), ("s3://b", "s3://b/x")):
        with pytest.raises(OverlapError):
            paths.check_job(a, b, None)
    paths.check_job("s3://b/p", "s3://b/p2", None)
    paths.check_job("s3://b/p", "s3://c/p", None)


def test_files_open_without_following_links(tmp_path):
    """The open-time check: a link that appears after the job was checked cannot lead out."""
    inside, outside = tmp_path / "in", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    (inside / "ok.jpg").write_bytes(b"fine")
    (inside / "file_link.jpg").symlink_to(outside / "secret.jpg")
    (inside / "dir_link").symlink_to(outside)
    assert paths.read_file(str(inside / "ok.jpg")) == b"fine"
    for path in (inside / "file_link.jpg", inside / "dir_link" / "secret.jpg"):
        with pytest.raises(PathPolicyError, match="symbolic link"):
            paths.read_file(str(path))
    assert paths.read_file(str(inside / "file_link.jpg"), follow_symlinks=True) == b"secret"
    os.mkfifo(inside / "fifo.jpg")
    with pytest.raises(StorageError, match="not a regular file"):
        paths.read_file(str(inside / "fifo.jpg"))

    with pytest.raises(PathPolicyError, match="symbolic link"):
        paths.write_file(str(inside / "dir_link" / "sub" / "x.png"), b"x")
    assert not (outside / "sub").exists()
    paths.write_file(str(inside / "new" / "x.png"), b"x")
    assert (inside / "new" / "x.png").read_bytes() == b"x" and not list(inside.rglob("*.tmp-*"))


def test_write_never_replaces_what_it_was_not_told_to(tmp_path):
    (tmp_path / "original.jpg").write_bytes(b"original")
    (tmp_path / "victim").write_bytes(b"victim")
    (tmp_path / "link.png").symlink_to(tmp_path / "victim")
    for name in ("original.jpg", "link.png"):
        with pytest.raises(paths.OutputExistsError, match="not replaced"):
            paths.write_file(str(tmp_path / name), b"new")
    assert (tmp_path / "original.jpg").read_bytes() == b"original"
    paths.write_file(str(tmp_path / "link.png"), b"new", replace=True)  # replaces the link itself
    assert (tmp_path / "victim").read_bytes() == b"victim" and (tmp_path / "link.png").read_bytes() == b"new"
    assert not (tmp_path / "link.png").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "original.jpg", "victim"]


def _hostile_folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"a")
    (root / "sub" / "b.jpg").write_bytes(b"bb")
    (root / "loop").symlink_to(".")
    (root / "loop2").symlink_to(".")
    (root / "sub" / "up").symlink_to("..")
    (root / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "self").symlink_to("self")
    (root / "file_link.jpg").symlink_to(root / "a.jpg")
    os.mkfifo(root / "pipe.jpg")
    with open(os.path.join(os.fsencode(root), b"bad\xff.jpg"), "wb") as handle:
        handle.write(b"x")
    return root


def test_listing_does_not_follow_links_and_reports_every_entry(tmp_path):
    """Issue 15 cases 4 and 5: an undecodable name, loops, a dangling link: one row each."""
    root = _hostile_folder(tmp_path)
    listed = {e.key: e for e in paths.list_local(str(root))}
    assert sorted(listed) == ["a.jpg", "bad\\xff.jpg", "dangling.jpg", "file_link.jpg", "loop", "loop2",
                              "pipe.jpg", "self", "sub/b.jpg", "sub/up"]
    assert listed["a.jpg"].problem is None and listed["sub/b.jpg"].size == 2
    assert "not valid UTF-8" in listed["bad\\xff.jpg"].problem
    assert "dangling" in listed["dangling.jpg"].problem
    assert "loop" in listed["self"].problem
    for key in ("loop", "loop2", "sub/up", "file_link.jpg"):
        assert "not followed" in listed[key].problem
    assert "not a regular file" in listed["pipe.jpg"].problem


def test_listing_with_follow_symlinks_detects_loops(tmp_path):
    root = _hostile_folder(tmp_path)
    listed = {e.key: e for e in paths.list_local(str(root), follow_symlinks=True)}
    assert len(listed) == 10, sorted(listed)  # two loops do not multiply the listing
    assert listed["file_link.jpg"].problem is None and listed["file_link.jpg"].size == 1
    for key in ("loop", "loop2", "sub/up"):
        assert "loop" in listed[key].problem
    assert "dangling" in listed["dangling.jpg"].problem and "loop" in listed["self"].problem
