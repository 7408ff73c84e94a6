"""`keras-prompt plan`."""

import json

from keras_prompt.cli import main


def test_plan_compares_devices(capsys):
    code = main(
        [
            "plan",
            "t5_1.1_xxl",
            "--batch-size=32",
            "--replicas=32",
            "--sequence-length=512",
            "--target-length=16",
            "--device=tpu_v3,tpu_v4,tpu_v5e",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    verdicts = [ln for ln in out.splitlines() if ln.startswith("prompt ")]
    assert [v.split(":")[1].split("(")[0].strip() for v in verdicts] == [
        "does not fit",
        "fits",
        "does not fit",
    ]
    assert "try model_parallel=" in out
    # The mesh the advice names: 8 replicas x 4 model-parallel v3 cores.
    code = main(
        [
            "plan",
            "t5_1.1_xxl",
            "--batch-size=32",
            "--replicas=8",
            "--model-parallel=4",
            "--sequence-length=512",
            "--target-length=16",
            "--device=tpu_v3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "x 4 model-parallel = 32 devices" in out
    assert "prompt tuning: fits" in out


def test_plan_json_and_config_file(tmp_path, capsys):
    config = {
        "class_name": "T5Backbone",
        "config": {
            "vocabulary_size": 32128,
            "num_layers": 8,
            "num_heads": 6,
            "hidden_dim": 512,
            "intermediate_dim": 1024,
            "key_value_dim": 64,
            "use_gated_activation": True,
            "activation": "gelu",
            "tie_embedding_weights": False,
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = main(
        [
            "plan",
            str(tmp_path),
            "--device=cpu",
            "--ram-gb=4",
            "--batch-size=2",
            "--sequence-length=64",
            "--json",
        ]
    )
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "fits"
    assert result["parameters"] == 76961152  # T5 1.1 small.


def test_plan_errors_are_one_line(capsys):
    assert main(["plan", "t5_small", "--device=tpu_v9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("keras-prompt plan: error:")
    assert "device='tpu_v9'" in err
    assert main(["plan", "t5_small", "--batch-size=3", "--replicas=2"]) == 1
    assert "replicas=2" in capsys.readouterr().err
