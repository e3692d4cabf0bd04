import pyarrow.fs as pafs
import pytest

from skinray import storage
from skinray.errors import StorageError


def test_local_write_list_read(tmp_path):
    root = tmp_path / "root"
    storage.write_bytes(storage.join(str(root), "a/b c/ü.jpg"), b"hello")
    storage.write_bytes(str(root / "z.txt"), b"x")
    entries = storage.list_files(str(root))
    assert [e.key for e in entries] == ["a/b c/ü.jpg", "z.txt"]
    assert storage.read_bytes(entries[0].uri) == b"hello"
    assert storage.list_files(f"file://{root}")[0].size == 5
    assert not list(root.rglob("*.tmp-*")), "no temporary files left behind"


def test_missing_local_folder_is_one_clear_line(tmp_path):
    with pytest.raises(StorageError, match="no such folder or prefix"):
        storage.list_files(str(tmp_path / "nope"))


def test_unsupported_scheme():
    with pytest.raises(StorageError, match="unsupported scheme"):
        storage.resolve("gs://bucket/x")


def test_s3_round_trip_through_moto_server(s3, bucket):
    uri = f"s3://{bucket}/prefix"
    storage.write_bytes(f"{uri}/one.jpg", b"1", s3)
    storage.write_bytes(f"{uri}/sub/two.png", b"22", s3)
    entries = storage.list_files(uri, s3)
    assert [(e.key, e.size) for e in entries] == [("one.jpg", 1), ("sub/two.png", 2)]
    assert storage.read_bytes(entries[1].uri, s3) == b"22"
    assert storage.exists(f"{uri}/one.jpg", s3) and not storage.exists(f"{uri}/three.jpg", s3)


def test_s3_endpoint_from_standard_environment(s3_endpoint, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    storage.write_bytes(f"s3://{bucket}/env.bin", b"via env")
    assert storage.read_bytes(f"s3://{bucket}/env.bin") == b"via env"


def test_missing_bucket_names_the_uri(s3):
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-xyz/p: .*(bucket does not exist|no such)"):
        storage.list_files("s3://no-such-bucket-xyz/p", s3)


def test_s3_folder_uploaded_by_another_tool_lists_and_reads(tmp_path, s3, bucket):
    (tmp_path / "src" / "a b").mkdir(parents=True)
    (tmp_path / "src" / "m.pt").write_bytes(b"weights")
    (tmp_path / "src" / "a b" / "ü.jpg").write_bytes(b"photo")
    fs, prefix = storage.resolve(f"s3://{bucket}/ck", s3)
    pafs.copy_files(str(tmp_path / "src"), prefix, destination_filesystem=fs)
    entries = storage.list_files(f"s3://{bucket}/ck", s3)
    assert [(e.key, e.size) for e in entries] == [("a b/ü.jpg", 5), ("m.pt", 7)]
    assert storage.read_bytes(entries[0].uri, s3) == b"photo"
