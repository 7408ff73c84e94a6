"""`keras-prompt plan`: will prompt tuning of this model fit this device?

Estimates per-device memory (frozen weights, activations with and without
rematerialisation, the prompt's optimizer state) for data-parallel prompt
tuning, next to full fine-tuning with Adam, and says whether it fits and
what to change when it does not. Nothing is downloaded: MODEL is a name
from the built-in table (T5, T5 1.1 / LM-adapted, FLAN-T5, Gemma, Llama,
GPT-2 sizes) or a keras-hub preset's `config.json` (or its folder).

Example: keras-prompt plan t5_1.1_xxl --batch-size 32 --replicas 32
--sequence-length 512 --target-length 16 --device tpu_v3,tpu_v4,tpu_v5e
"""

import json
import os

from keras_prompt.cli import CliError


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "plan",
        help="estimate per-device memory and whether training fits",
        description=__doc__,
    )
    parser.add_argument(
        "model",
        help="a model name (e.g. t5_1.1_xxl, gemma_7b_en, llama3_8b) or a "
        "keras-hub preset config.json / folder",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=512)
    parser.add_argument(
        "--target-length",
        type=int,
        default=None,
        help="T5 target tokens (default 128)",
    )
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument(
        "--dtype", default="bfloat16", choices=("bfloat16", "float32")
    )
    parser.add_argument(
        "--device",
        default="tpu_v4",
        help="tpu_v3, tpu_v4, tpu_v5e, tpu_v5p, a100_40, a100_80, h100_80 "
        "or cpu (with --ram-gb); several separated by commas",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="data-parallel replicas (TPU v3 cores, v4/v5 chips, GPUs)",
    )
    parser.add_argument(
        "--model-parallel",
        type=int,
        default=1,
        help="devices per replica holding a shard of the frozen weights "
        "(the mesh's model axis, keras.distribution.ModelParallel on JAX)",
    )
    parser.add_argument("--ram-gb", type=float, default=None)
    parser.add_argument("--num-prompts", type=int, default=1)
    parser.add_argument(
        "--optimizer", default="adafactor", choices=("adafactor", "adam", "sgd")
    )
    parser.add_argument(
        "--json", action="store_true", help="print the plan(s) as JSON"
    )
    parser.set_defaults(run=run)


def _load_model(model):
    """A name stays a name; a file or folder is read as a preset config."""
    if not os.path.exists(model):
        return model
    path = model
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise CliError(f"no config.json in {model!r}")
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as error:
        raise CliError(f"{path!r} is not valid JSON: {error}") from None


def run(args):
    from keras_prompt.distribute.planner import plan

    model = _load_model(args.model)
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    if not devices:
        raise CliError(f"no device given. Received: --device={args.device!r}")
    plans = [
        plan(
            model,
            batch_size=args.batch_size,
            sequence_length=args.sequence_length,
            prompt_length=args.prompt_length,
            target_length=args.target_length,
            dtype=args.dtype,
            device=device,
            replicas=args.replicas,
            model_parallel=args.model_parallel,
            ram_gb=args.ram_gb,
            num_prompts=args.num_prompts,
            optimizer=args.optimizer,
        )
        for device in devices
    ]
    if args.json:
        print(json.dumps([p.to_dict() for p in plans], indent=2))
    else:
        print("\n\n".join(p.summary() for p in plans))
    return 0
