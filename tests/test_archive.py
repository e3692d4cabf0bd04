"""The archive job's batching (skinray/archive.py): by count and by bytes of input."""

from skinray.archive import batches
from skinray.config import BATCH_BYTES


def _rows(*sizes: int) -> list[dict]:
    return [{"key": f"{i}.jpg", "bytes_in": size} for i, size in enumerate(sizes)]


def test_small_photos_share_a_batch_up_to_the_count_and_large_ones_do_not():
    small = batches(_rows(*[40_000] * 150), max_files=64)
    assert [len(b) for b in small] == [64, 64, 22]
    phone = 3 << 20  # 12 MP phone JPEGs: a batch stops at BATCH_BYTES of input
    large = batches(_rows(*[phone] * 5), max_files=64)
    assert [len(b) for b in large] == [BATCH_BYTES // phone] * 2 + [5 - 2 * (BATCH_BYTES // phone)]
    assert all(sum(r["bytes_in"] for r in b) <= BATCH_BYTES for b in large)


def test_every_row_once_in_order_and_an_oversized_file_alone():
    rows = _rows(10, BATCH_BYTES * 2, 10, 10)
    out = batches(rows, max_files=64)
    assert [len(b) for b in out] == [1, 1, 2]
    assert [r for b in out for r in b] == rows
    assert batches([], max_files=8) == []
