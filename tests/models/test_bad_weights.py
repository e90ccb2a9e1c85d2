"""Hostile weights files, generated here: each is one ModelError line (exit code 10), refused before allocating."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
import torch

from vimscope.cli.main import main
from vimscope.errors import ModelError
from vimscope.models import create_model, load_spec, read_checkpoint, save_weights
from vimscope.models import safetensors_header as header_module


def _file(path, header: bytes, *, length: int | None = None, body: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + body)
    return path


CASES = {
    "length_beyond_the_file": (b'{"__metadata__":{}}', 2**40, "header of 1099511627776 bytes"),
    "nested_arrays": (b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}", None, "nested deeper"),
    "nested_metadata": (b'{"__metadata__":{"vimscope.spec":{"name":{"x":1}}}}', None, "nested deeper"),
    "metadata_not_strings": (b'{"__metadata__":{"vimscope.spec":1}}', None, "metadata values must be strings"),
    "entry_not_a_tensor": (b'{"w":{"dtype":"F32","shape":[1]}}', None, "not a tensor record"),
    "not_json": (b"{not json at all}", None, "not JSON"),
    "not_an_object": (b"[1, 2]", None, "not a JSON object"),
    "brackets_inside_strings_are_fine_but_no_spec": (b'{"__metadata__":{"k":"[[[[[[["}}', None, "without a vimscope"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_safetensors_header_is_one_model_error(tmp_path, case, capsys):
    header, length, message = CASES[case]
    path = _file(tmp_path / f"{case}.safetensors", header, length=length)
    for load in (load_spec, read_checkpoint, lambda p: create_model(weights=p)):
        with pytest.raises(ModelError, match=message):
            load(path)
    assert main(["info", "--model", str(path)]) == ModelError.exit_code == 10
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "internal error" not in err


def test_an_oversized_header_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(header_module, "MAX_HEADER_BYTES", 4096)
    path = _file(tmp_path / "big.safetensors", b'{"__metadata__":{"x":"' + b"a" * 20_000 + b'"}}')
    tracemalloc.start()
    with pytest.raises(ModelError, match="at most 4096 accepted"):
        load_spec(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000  # the header was never read into memory


def test_a_pth_named_file_with_a_safetensors_prefix_and_a_truncated_file(tmp_path):
    disguised = _file(tmp_path / "model.pth", b'{"__metadata__":{}}', length=2**50)
    with pytest.raises(ModelError, match="damaged safetensors file"):
        create_model(weights=disguised)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x05\x00")
    with pytest.raises(ModelError, match="shorter than its 8-byte header length"):
        load_spec(short)


def test_tensor_bytes_that_do_not_match_the_header_are_a_model_error(tmp_path):
    torch.manual_seed(0)
    good = save_weights(create_model("vim_test_pointwise"), tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 16])  # the last tensor lost its bytes
    assert load_spec(tmp_path / "cut.safetensors").name == "vim_test_pointwise"  # the header alone is intact
    with pytest.raises(ModelError, match="damaged safetensors file"):
        create_model(weights=tmp_path / "cut.safetensors")
