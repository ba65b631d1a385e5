import json
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
