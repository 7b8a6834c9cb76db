"""llmcore.checkpoints: checkpoint folder IO against our own round trips and folders written by transformers.

The transformers folders are the ground truth for layout: whatever ``save_pretrained`` writes (single
or sharded safetensors, 5.x config.json) must load to exactly ``model.state_dict()`` minus what it
chose not to store, and what we write must load back into transformers.
"""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import llmcore.checkpoints as ckpt
from llmcore.checkpoints import (
    find_checkpoint_files,
    load_state_dict,
    parse_size,
    read_config,
    save_state_dict,
    write_config,
)

transformers = pytest.importorskip("transformers")

TINY_LLAMA = dict(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
)


def assert_bit_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert torch.equal(actual[name], tensor), name


def mixed_state_dict() -> dict:
    """Tensors of several dtypes and shapes, ~4 KB each, so "10KB" shards split them."""
    gen = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(32, 32, generator=gen),
        "layers.0.attn.weight": torch.randn(32, 32, generator=gen).to(torch.bfloat16),
        "layers.0.norm.weight": torch.randn(1000, generator=gen),
        "layers.1.attn.weight": torch.randn(32, 32, generator=gen),
        "positions": torch.arange(500),
        "mask": torch.rand(16, 16, generator=gen) > 0.5,
        "scalar": torch.tensor(3.5, dtype=torch.float16),
    }


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    """A tiny tied Llama saved by transformers itself, single-file and sharded."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    root = tmp_path_factory.mktemp("hf_llama")
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="20KB")
    return model, root / "single", root / "sharded"


# --------------------------------------------------------------------------------------------------
# Round trips through our own writer
# --------------------------------------------------------------------------------------------------


def test_round_trip_single_file(tmp_path):
    state_dict = mixed_state_dict()
    written = save_state_dict(tmp_path, state_dict, metadata={"source": "test"})
    assert written == [tmp_path / "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert f.metadata() == {"source": "test", "format": "pt"}
    assert_bit_equal(load_state_dict(tmp_path), state_dict)


def test_round_trip_sharded(tmp_path):
    state_dict = mixed_state_dict()
    written = save_state_dict(tmp_path, state_dict, max_shard_size="10KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    n = len(shards)
    assert n >= 3
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert [p.name for p in written] == shards + ["model.safetensors.index.json"]
    assert not (tmp_path / "model.safetensors").exists()
    for shard in shards:
        assert (tmp_path / shard).stat().st_size <= 10_000 + 1_000  # payload <= 10 KB, plus a small header

    text = (tmp_path / "model.safetensors.index.json").read_text()
    index = json.loads(text)
    # The exact layout transformers writes: indent 2, sorted keys, trailing newline.
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"
    assert index["metadata"] == {
        "total_parameters": sum(t.numel() for t in state_dict.values()),
        "total_size": sum(t.numel() * t.element_size() for t in state_dict.values()),
    }
    assert index["weight_map"].keys() == state_dict.keys()
    assert set(index["weight_map"].values()) == set(shards)
    for name, shard in index["weight_map"].items():
        with safe_open(tmp_path / shard, "pt") as f:
            assert name in f.keys()

    assert find_checkpoint_files(tmp_path) == [tmp_path / s for s in shards]
    assert_bit_equal(load_state_dict(tmp_path), state_dict)


def test_everything_fits_one_shard_writes_single_file(tmp_path):
    save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="5GB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_shared_storage_is_saved_as_independent_copies(tmp_path):
    fused = torch.randn(6, 4)
    state_dict = {"embed.weight": fused, "lm_head.weight": fused, "q": fused[:2], "k": fused[2:4].t()}
    save_state_dict(tmp_path, state_dict)
    loaded = load_state_dict(tmp_path)
    assert_bit_equal(loaded, {k: v.contiguous() for k, v in state_dict.items()})
    assert loaded["embed.weight"].data_ptr() != loaded["lm_head.weight"].data_ptr()


def test_resaving_removes_stale_weights(tmp_path):
    save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="10KB")
    save_state_dict(tmp_path, {"w": torch.ones(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="10KB")
    assert not (tmp_path / "model.safetensors").exists()  # else it would shadow the new index
    assert load_state_dict(tmp_path).keys() == mixed_state_dict().keys()


def test_failed_save_leaves_no_index_and_no_temp_files(tmp_path, monkeypatch):
    calls = []

    def failing_save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            open(filename, "wb").write(b"half a shard")
            raise OSError("disk full")
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="10KB")
    # The first shard landed, the second failed: no index, no temporary leftovers.
    assert [p.name for p in tmp_path.iterdir()] == ["model-00001-of-00003.safetensors"]


def test_load_casts_only_floating_tensors(tmp_path):
    save_state_dict(tmp_path, mixed_state_dict())
    loaded = load_state_dict(tmp_path, dtype="bfloat16")
    assert loaded["embed.weight"].dtype == torch.bfloat16
    assert loaded["scalar"].dtype == torch.bfloat16
    assert loaded["positions"].dtype == torch.int64
    assert loaded["mask"].dtype == torch.bool
    assert load_state_dict(tmp_path, dtype=torch.float16)["embed.weight"].dtype == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'float7'"):
        load_state_dict(tmp_path, dtype="float7")


@pytest.mark.parametrize(
    "size, expected",
    [(1234, 1234), ("5GB", 5 * 10**9), ("200KB", 200_000), ("10MB", 10**7), ("1MiB", 2**20), ("2kib", 2048), ("1.5GB", 1_500_000_000)],
)
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["5 parsecs", "GB", "", 0, -3, True])
def test_parse_size_rejects_nonsense(size):
    with pytest.raises(ValueError):
        parse_size(size)


# --------------------------------------------------------------------------------------------------
# Folders written by transformers, and transformers reading ours
# --------------------------------------------------------------------------------------------------


def test_loads_transformers_single_file(hf_llama):
    model, single, _ = hf_llama
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    loaded = load_state_dict(single)
    assert "lm_head.weight" not in loaded  # tied: save_pretrained did not store it, and we don't invent it
    assert_bit_equal(loaded, expected)


def test_loads_transformers_sharded(hf_llama):
    model, _, sharded = hf_llama
    files = find_checkpoint_files(sharded)
    assert len(files) > 2 and all(f.name.startswith("model-0000") for f in files)
    loaded = load_state_dict(sharded)
    assert "lm_head.weight" not in loaded
    assert_bit_equal(loaded, {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})


def test_transformers_loads_what_we_write(hf_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, single, _ = hf_llama
    write_config(tmp_path, read_config(single))  # normalised (4.x-style rope keys): 5.x must still read it
    save_state_dict(tmp_path, load_state_dict(single), max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.rope_parameters["rope_theta"] == model.config.rope_parameters["rope_theta"]
    assert_bit_equal(reloaded.state_dict(), model.state_dict())
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


# --------------------------------------------------------------------------------------------------
# config.json, 4.x and 5.x
# --------------------------------------------------------------------------------------------------


def test_read_config_transformers_5x_default_rope(hf_llama):
    _, single, _ = hf_llama
    raw = json.loads((single / "config.json").read_text())
    assert "rope_parameters" in raw and "dtype" in raw  # the 5.x layout we are normalising away
    config = read_config(single)
    assert config["dtype"] == "float32"
    assert config["rope_theta"] == 10000.0
    assert config["rope_scaling"] is None
    assert "rope_parameters" not in config and "torch_dtype" not in config
    untouched = {k: v for k, v in raw.items() if k not in ("rope_parameters", "dtype")}
    assert {k: config[k] for k in untouched} == untouched


def test_read_config_4x_and_5x_normalise_the_same(tmp_path):
    shape = dict(TINY_LLAMA, tie_word_embeddings=False)
    transformers.LlamaConfig(
        **shape, dtype="bfloat16", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}
    ).save_pretrained(tmp_path / "v5")
    v4 = dict(
        shape, model_type="llama", architectures=["LlamaForCausalLM"], torch_dtype="bfloat16",
        rope_theta=500000, rope_scaling={"type": "linear", "factor": 2.0}, transformers_version="4.44.0",
    )
    write_config(tmp_path / "v4", v4)

    config5, config4 = read_config(tmp_path / "v5"), read_config(tmp_path / "v4")
    for config in (config5, config4):
        assert config["dtype"] == "bfloat16"
        assert config["rope_theta"] == 500000.0 and isinstance(config["rope_theta"], float)
        assert config["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}
        assert "torch_dtype" not in config and "rope_parameters" not in config
    assert config4["architectures"] == ["LlamaForCausalLM"]
    assert config4["transformers_version"] == "4.44.0"


@pytest.mark.parametrize(
    "raw, rope_scaling",
    [
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}},
         {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}),
        ({"rope_scaling": {"type": "dynamic", "rope_type": "dynamic", "factor": 4.0}}, {"rope_type": "dynamic", "factor": 4.0}),
        ({"rope_scaling": {"type": "default"}}, None),
        ({"rope_scaling": None}, None),
        ({}, None),
    ],
)
def test_read_config_4x_rope_scaling_variants(tmp_path, raw, rope_scaling):
    write_config(tmp_path, {"model_type": "llama", "torch_dtype": "torch.float16", **raw})
    config = read_config(tmp_path)
    assert config["rope_scaling"] == rope_scaling
    assert config["dtype"] == "float16"
    assert "rope_theta" not in config  # never invented


def test_read_config_moves_partial_rotary_factor_back_to_top_level(tmp_path):
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    write_config(tmp_path, {"model_type": "phi", "rope_parameters": rope})
    config = read_config(tmp_path)
    assert config["partial_rotary_factor"] == 0.5 and config["rope_scaling"] is None


def test_read_config_keeps_per_layer_type_rope_parameters(tmp_path):
    rope = {"full_attention": {"rope_type": "default", "rope_theta": 1e6}, "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    write_config(tmp_path, {"model_type": "gemma3_text", "rope_parameters": rope})
    assert read_config(tmp_path)["rope_parameters"] == rope


def test_write_config_creates_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    written = write_config(folder, {"model_type": "gpt2", "n_embd": 8})
    assert written == folder / "config.json"
    assert written.read_text() == '{\n  "model_type": "gpt2",\n  "n_embd": 8\n}\n'
    assert [p.name for p in folder.iterdir()] == ["config.json"]


# --------------------------------------------------------------------------------------------------
# Errors name the file or key at fault
# --------------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        read_config(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_state_dict(missing)


def test_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        read_config(tmp_path)


def test_bad_json_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_config(tmp_path)


def test_config_without_model_type(tmp_path):
    write_config(tmp_path, {"hidden_size": 8})
    with pytest.raises(ValueError, match="model_type"):
        read_config(tmp_path)


def test_folder_without_weights(tmp_path):
    write_config(tmp_path, {"model_type": "llama"})
    with pytest.raises(FileNotFoundError, match="no checkpoint weights"):
        load_state_dict(tmp_path)


def test_index_naming_a_missing_shard(tmp_path):
    second_shard = save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="10KB")[1]
    second_shard.unlink()
    with pytest.raises(FileNotFoundError, match=second_shard.name):
        load_state_dict(tmp_path)


def test_index_naming_a_tensor_absent_from_its_shard(tmp_path):
    first_shard = save_state_dict(tmp_path, mixed_state_dict(), max_shard_size="10KB")[0]
    index_file = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"]["layers.9.ghost"] = first_shard.name
    index_file.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="layers.9.ghost"):
        load_state_dict(tmp_path)


def test_index_shard_outside_the_folder_is_refused(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../w.safetensors"}}))
    with pytest.raises(ValueError, match="not a file name"):
        load_state_dict(tmp_path)


def test_corrupt_weight_file_is_named(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_state_dict(tmp_path)


def test_pytorch_bin_fallback(tmp_path):
    state_dict = mixed_state_dict()
    torch.save(state_dict, tmp_path / "pytorch_model.bin")
    assert find_checkpoint_files(tmp_path) == [tmp_path / "pytorch_model.bin"]
    assert_bit_equal(load_state_dict(tmp_path), state_dict)
    # safetensors wins when both are present, as in transformers
    save_state_dict(tmp_path, {"w": torch.ones(2)})
    assert load_state_dict(tmp_path).keys() == {"w"}


def test_sharded_pytorch_bin_fallback(tmp_path):
    state_dict = mixed_state_dict()
    names = list(state_dict)
    halves = {"pytorch_model-00001-of-00002.bin": names[:3], "pytorch_model-00002-of-00002.bin": names[3:]}
    for shard, keys in halves.items():
        torch.save({k: state_dict[k] for k in keys}, tmp_path / shard)
    weight_map = {k: shard for shard, keys in halves.items() for k in keys}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_bit_equal(load_state_dict(tmp_path), state_dict)
