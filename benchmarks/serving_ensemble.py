"""A prompt ensemble of N in one pass vs N separate passes.

Five prompts of one task on a random T5 (see `serving_common.py`).
`PromptEnsemble.generate` replicates each input once per member and
generates for all of them in one batch, then votes; the baseline runs the
batch N times, once per prompt, and votes the same way. Both give the same
answers (checked here); the script prints their times and the speed-up.

    python benchmarks/serving_ensemble.py
"""

import serving_common as common

BATCH = 8
MEMBERS = 5


def main():
    from keras_prompt.serving import PromptEnsemble
    from keras_prompt.serving import majority_vote

    common.header(f"Prompt ensemble of {MEMBERS}: one pass vs {MEMBERS} passes")
    backbone, preprocessor = common.build_t5()
    members = [f"member{i}" for i in range(MEMBERS)]
    _, bank = common.bank(backbone, preprocessor, members)
    ensemble = PromptEnsemble(bank, members)
    texts = common.texts(BATCH)

    def one_pass():
        return ensemble.generate(texts, stop_token_ids=None)

    def separate_passes():
        runs = [
            bank.generate(texts, [name] * BATCH, stop_token_ids=None)
            for name in members
        ]
        return majority_vote([list(row) for row in zip(*runs)])[0]

    assert one_pass() == separate_passes()
    stats = common.interleaved(
        {"one pass": one_pass, "separate passes": separate_passes},
        repeats=5,
    )
    print(
        f"\n{BATCH} inputs x {MEMBERS} prompts, {common.DECODER_LENGTH} "
        "generated tokens (same answers: yes):"
    )
    common.report(stats, BATCH, "inputs/s (median)")
    speedup = common.ratios(stats, "separate passes", "one pass")
    print(f"  speed-up of one pass: {speedup}")


if __name__ == "__main__":
    main()
