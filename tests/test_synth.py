import numpy as np

from skinray import images, storage, synth


def test_deterministic_and_varied():
    a, b = synth.skin_image(3, 5, 64), synth.skin_image(3, 5, 64)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, synth.skin_image(3, 6, 64))


def test_looks_like_skin_with_a_darker_lesion():
    tones = []
    for i in range(12):
        img = synth.skin_image(0, i, 96).astype(np.float32)
        centre, border = img[36:60, 36:60].mean(), img[8:20, 8:88].mean()
        r, g, b = img.reshape(-1, 3).mean(0)
        assert r > g > b, "skin is red-dominant"
        assert img.std() > 5, "texture, lesion and hairs give variation"
        tones.append(border)
        assert centre < border + 10 or img[20:76, 20:76].min() < border - 40, "a darker lesion near the centre"
    assert max(tones) - min(tones) > 60, "a range of skin tones from light to dark"


def test_write_dataset_as_jpeg(tmp_path):
    synth.write_dataset(str(tmp_path), 3, size=32, seed=1)
    entries = storage.list_files(str(tmp_path))
    assert [e.key for e in entries] == ["skin_00000.jpg", "skin_00001.jpg", "skin_00002.jpg"]
    assert images.probe(storage.read_bytes(entries[0].uri))[2] == "JPEG"
