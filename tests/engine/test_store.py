import json
import random
import struct
import zlib

from matrixeval.engine.store import ShardStore, config_key


def test_records_from_every_writer_are_read_back(tmp_path):
    a, b = ShardStore(tmp_path, {"x": 1}), ShardStore(tmp_path, {"x": 1})
    a.append([{"doc_id": 0, "v": 1.5}, {"doc_id": 1, "v": float("nan")}])
    b.append([{"doc_id": 2, "v": -3.0}])
    a.close(), b.close()
    got = ShardStore(tmp_path, {"x": 1}).load()
    assert sorted(got) == [0, 1, 2] and got[2]["v"] == -3.0
    assert json.loads((tmp_path / "config.json").read_text()) == {"x": 1}


def test_torn_and_corrupted_lines_are_never_read_as_data(tmp_path):
    s = ShardStore(tmp_path, {})
    s.append([{"doc_id": 0, "v": 1}, {"doc_id": 1, "v": 2}])
    s.close()
    shard = next(tmp_path.glob("*.jsonl"))
    good = shard.read_text()
    payload = json.dumps({"doc_id": 2, "v": 3})
    bad_crc = f"{(zlib.crc32(payload.encode()) + 1) & 0xFFFFFFFF:08x} {payload}\n"
    shard.write_text(good + bad_crc + good.splitlines()[0][:15])  # a wrong checksum, then a torn tail
    reader = ShardStore(tmp_path, {})
    assert sorted(reader.load()) == [0, 1]
    assert reader.n_torn == 2


def test_config_key_changes_with_any_value_and_not_with_order():
    base = {"model": "m", "layers": [3], "max_length": 2048}
    assert config_key(base) == config_key(dict(reversed(list(base.items()))))
    assert config_key(base) != config_key({**base, "max_length": 1024})
    assert config_key(base) != config_key({**base, "layers": [0, 3]})


def _bits(values):
    return [struct.pack("<d", v) for v in values]


def test_long_float_vectors_are_stored_compactly_and_read_back_bit_for_bit(tmp_path):
    rng = random.Random(3)
    vector = [rng.gauss(0, 1e-3) for _ in range(384)] + [-0.0, 5e-324, float("nan"), float("inf"), 1 / 3]
    views = [[rng.random() for _ in range(16)] for _ in range(4)]
    record = {"doc_id": 0, "layers": {"3": {"pooled_mean": vector, "pooled_views": views, "short": [0.5, 0.25],
                                            "lengths": list(range(20)), "mixed": [1.0, None] * 8}}}
    s = ShardStore(tmp_path, {})
    s.append([record])
    s.close()
    line = next(tmp_path.glob("*.jsonl")).read_text()
    assert len(line) < 0.6 * len(json.dumps(record))  # base64 of float64 against JSON decimals
    got = ShardStore(tmp_path, {}).load()[0]["layers"]["3"]
    assert _bits(got["pooled_mean"]) == _bits(vector)
    assert [_bits(v) for v in got["pooled_views"]] == [_bits(v) for v in views]
    # ints, short float lists and lists with a None stay plain JSON, read back as they were
    assert got["short"] == [0.5, 0.25] and got["lengths"] == list(range(20))
    assert all(type(v) is int for v in got["lengths"]) and got["mixed"] == [1.0, None] * 8


def test_a_store_written_with_json_decimals_is_still_read(tmp_path):
    vector = [0.1 * i for i in range(50)]
    payload = json.dumps({"doc_id": 4, "pooled_mean": vector}, sort_keys=True, separators=(",", ":"))
    (tmp_path / "old-writer.jsonl").write_text(f"{zlib.crc32(payload.encode()):08x} {payload}\n")
    assert ShardStore(tmp_path, {}).load()[4]["pooled_mean"] == vector
