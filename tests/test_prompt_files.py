"""The one prompt-file reader: a mutation fuzz and the schema checks.

Every damaged file must end in one `ValueError` naming the file: never
another exception, never an accepted file.
"""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save

from keras_prompt import prompt_files

METADATA = {
    "backbone_class": "BertBackbone",
    "family": "bert",
    "hidden_dim": 8,
    "vocabulary_size": 50,
    "embedding_fingerprint": "0123456789abcdef",
    "prompt_length": 3,
    "num_prompts": 2,
    "task_names": ["a", "b"],
    "task_class": "PromptClassifier",
    "pooling": "mean",
}


def tensors(rng):
    return {
        "prompt": rng.normal(size=(2, 3, 8)).astype("float32"),
        "extra/head/kernel": rng.normal(size=(2, 8, 2)).astype("float32"),
        "extra/head/bias": rng.normal(size=(2, 2)).astype("float32"),
    }


def raw_file(arrays, metadata, header_edit=None):
    """Bytes of a prompt file with a correct checksum, written without
    the writer's checks (so NaN and odd dtypes get through)."""
    meta = json.dumps(metadata, sort_keys=True)
    header = {
        "format": prompt_files.FORMAT,
        "format_version": str(prompt_files.FORMAT_VERSION),
        "metadata": meta,
        "checksum": prompt_files._checksum(
            meta, {k: np.asarray(v, "float32") for k, v in arrays.items()}
        ),
    }
    if header_edit:
        header_edit(header)
    return save(arrays, metadata=header)


def split_header(data):
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join_header(header, rest):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + rest


def header_edits(rng):
    """Edits of the safetensors JSON header (offsets, dtypes, shapes,
    names, the metadata fields)."""

    def meta(update=None, drop=None):
        def edit(header):
            values = json.loads(header["__metadata__"]["metadata"])
            values.update(update or {})
            values.pop(drop, None)
            header["__metadata__"]["metadata"] = json.dumps(values)

        return edit

    def tensor(field, value, name="prompt"):
        def edit(header):
            header[name][field] = value

        return edit

    def top(key, value):
        def edit(header):
            if value is None:
                header["__metadata__"].pop(key, None)
            else:
                header["__metadata__"][key] = value

        return edit

    def rename(old, new):
        def edit(header):
            header[new] = header.pop(old)

        return edit

    edits = [
        meta({"task_names": ["a", "a"]}),
        meta({"task_names": ["a"]}),
        meta({"task_names": "a,b"}),
        meta({"prompt_length": "3"}),
        meta({"prompt_length": 0}),
        meta({"prompt_length": 4}),
        meta({"num_prompts": True}),
        meta({"hidden_dim": 9}),
        meta({"pooling": 3}),
        meta({"prompt_lengths": [1, 9]}),
        meta({"backbone_class": "GPT2Backbone"}),
        meta({"embedding_fingerprint": "fedcba9876543210"}),
        meta(drop="vocabulary_size"),
        meta(drop="num_prompts"),
        tensor("dtype", "F64"),
        tensor("dtype", "I32"),
        tensor("dtype", "F16"),
        tensor("shape", [2, 3, 9]),
        tensor("shape", [6, 8]),
        tensor("shape", [2, 4, 8]),
        tensor("data_offsets", [0, 4]),
        tensor("dtype", "F64", name="extra/head/bias"),
        top("format", "other"),
        top("format_version", "x"),
        top("format_version", "0"),
        top("format_version", "99"),
        top("metadata", "{not json"),
        top("metadata", "[1, 2]"),
        top("metadata", None),
        top("checksum", "0" * 64),
        top("checksum", None),
        rename("prompt", "prompts"),
        rename("extra/head/bias", "head/bias"),
        rename("extra/head/bias", "extra/"),
    ]
    return [edits[i] for i in rng.permutation(len(edits))]


def mutations(seed=0, count=520):
    """`count` damaged versions of one valid file, each a `(kind, bytes)`."""
    rng = np.random.default_rng(seed)
    arrays = tensors(rng)
    good = raw_file(arrays, METADATA)
    for index in range(count):
        kind = index % 5
        if kind == 0:  # truncated anywhere
            yield "truncated", good[: int(rng.integers(0, len(good)))]
        elif kind == 1:  # 1-4 flipped bytes anywhere
            data = bytearray(good)
            for _ in range(int(rng.integers(1, 5))):
                where = int(rng.integers(0, len(data)))
                data[where] ^= int(rng.integers(1, 256))
            yield "flipped", bytes(data)
        elif kind == 2:  # an edited header
            header, rest = split_header(good)
            edits = header_edits(rng)
            edits[index // 5 % len(edits)](header)
            yield "header", join_header(header, rest)
        elif kind == 3:  # non-finite values with a valid checksum
            bad = {k: v.copy() for k, v in arrays.items()}
            name = sorted(bad)[int(rng.integers(0, len(bad)))]
            flat = bad[name].reshape(-1)
            flat[int(rng.integers(0, flat.size))] = rng.choice(
                [np.nan, np.inf, -np.inf]
            )
            yield "non-finite", raw_file(bad, METADATA)
        else:  # wrong dtypes or shapes, duplicate or unknown names
            choice = int(rng.integers(0, 4))
            bad = dict(arrays)
            meta = dict(METADATA)
            if choice == 0:
                bad["prompt"] = arrays["prompt"].astype("float64")
            elif choice == 1:
                bad["prompt"] = arrays["prompt"][:, :2]
            elif choice == 2:
                meta["task_names"] = ["b", "b"]
            else:
                bad["unknown"] = arrays["extra/head/bias"]
            yield "tensors", raw_file(bad, meta)


def test_mutation_fuzz_every_case_is_a_value_error_naming_the_file(
    tmp_path,
):
    path = os.path.join(str(tmp_path), "fuzz.prompt.safetensors")
    with open(path, "wb") as f:
        f.write(raw_file(tensors(np.random.default_rng(0)), METADATA))
    prompt_files.read_prompt_file(path)  # the unmutated file is accepted
    kinds = {}
    for kind, data in mutations():
        with open(path, "wb") as f:
            f.write(data)
        try:
            prompt_files.read_prompt_file(path)
        except ValueError as error:
            assert path in str(error), (kind, str(error))
        except Exception as error:  # noqa: BLE001
            pytest.fail(f"{kind}: {type(error).__name__}: {error}")
        else:
            pytest.fail(f"{kind} mutation accepted: {data[:200]!r}")
        kinds[kind] = kinds.get(kind, 0) + 1
    assert sum(kinds.values()) >= 500 and len(kinds) == 5, kinds


def with_note(note_json):
    """METADATA's JSON text with a field `note` holding `note_json`."""
    return json.dumps(METADATA)[:-1] + ', "note": ' + note_json + "}"


@pytest.mark.parametrize(
    "text, words",
    [
        (with_note('"' + "x" * (1 << 20) + '"'), "more than the 1,048,576"),
        # Deeper than Python's recursion limit (json raises RecursionError).
        (with_note("[" * 100_000 + "]" * 100_000), "nests too deeply"),
        (with_note("[" * 16 + "]" * 16), "nests 17 levels deep"),
        (with_note('{"a": ' * 16 + "0" + "}" * 16), "nests 17 levels deep"),
    ],
    ids=["large", "recursion", "lists", "objects"],
)
def test_oversized_and_deeply_nested_metadata_is_one_value_error(
    tmp_path, text, words
):
    path = os.path.join(str(tmp_path), "odd.prompt.safetensors")
    arrays = tensors(np.random.default_rng(0))
    with open(path, "wb") as f:
        f.write(raw_file(arrays, METADATA, lambda h: h.update(metadata=text)))
    with pytest.raises(ValueError) as info:
        prompt_files.read_prompt_file(path)
    message = str(info.value)
    assert path in message and "field 'metadata'" in message
    assert words in message
    # Nested as deep as allowed (the object and 15 levels in it): read.
    note = json.loads("[" * 15 + "]" * 15)
    with open(path, "wb") as f:
        f.write(raw_file(arrays, dict(METADATA, note=note)))
    assert prompt_files.read_prompt_file(path)[1]["note"] == note


def test_writer_refuses_non_finite_values(tmp_path):
    path = os.path.join(str(tmp_path), "nan.prompt.safetensors")
    prompt = np.zeros((3, 8), "float32")
    prompt[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        prompt_files.write_prompt_file(path, {"prompt": prompt}, METADATA)
    assert not os.path.exists(path)


def test_header_is_checked_before_tensors_are_read(tmp_path):
    """A large non-prompt safetensors file fails on its header alone."""
    path = os.path.join(str(tmp_path), "checkpoint.safetensors")
    with open(path, "wb") as f:
        f.write(save({"w": np.zeros((1000, 1000), "float32")}))
    with pytest.raises(ValueError, match="Not a keras_prompt prompt file"):
        prompt_files.read_prompt_file(path)


def test_written_files_get_ordinary_modes_and_links_are_followed(tmp_path):
    umask = os.umask(0o022)
    try:
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        prompt_files.atomic_write_bytes(path, b"one")
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)  # an existing file keeps its mode
        prompt_files.atomic_write_bytes(path, b"two")
        assert os.stat(path).st_mode & 0o777 == 0o640
        link = os.path.join(str(tmp_path), "link.prompt.safetensors")
        os.symlink(path, link)
        prompt_files.atomic_write_bytes(link, b"three")
        assert os.path.islink(link)
        with open(path, "rb") as f:
            assert f.read() == b"three"
        assert sorted(os.listdir(str(tmp_path))) == sorted(
            ["p.prompt.safetensors", "link.prompt.safetensors"]
        )
    finally:
        os.umask(umask)


def test_export_refuses_non_finite_prompt_state():
    from keras_prompt.serving import export

    with pytest.raises(ValueError, match="'prompt' holds non-finite"):
        export._state_lines({"prompt": np.array([[0.0, np.inf]], "float32")})
    assert export._state_lines({"prompt": np.zeros((1, 2), "float32")})
