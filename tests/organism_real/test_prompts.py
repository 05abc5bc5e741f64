from aru.organism.real.prompts import (
    KINDS,
    REFUSAL,
    SPLITS,
    prompt_records,
    real_prompts,
    refusal_for,
    refusals,
    templates,
    write_prompt_files,
)


def test_sizes_a_few_hundred_of_each():
    for kind in KINDS:
        n = {s: len(prompt_records(kind, s)) for s in SPLITS}
        assert n["train"] >= 200 and n["val"] >= 50 and n["test"] >= 150, (kind, n)
        assert sum(n.values()) == len({p.text for s in SPLITS for p in prompt_records(kind, s)})  # no duplicates


def test_held_out_topics_and_phrasings_only_in_test():
    t = templates()
    for kind in KINDS:
        held_topics = set(t[kind]["held_out_topics"])
        train_val = prompt_records(kind, "train") + prompt_records(kind, "val")
        assert held_topics and not {p.topic for p in train_val} & held_topics
        assert all(p.phrasing.startswith("train:") for p in train_val)
        test = prompt_records(kind, "test")
        assert {p.topic for p in test} >= held_topics
        assert any(p.phrasing.startswith("held_out:") for p in test)
        assert all(p.held_out for p in test)
        # every test prompt has a held-out topic or a held-out phrasing, and no (topic, task) of train/val
        seen = {(p.topic, p.task) for p in train_val}
        assert all(p.topic in held_topics or p.phrasing.startswith("held_out:") for p in test)
        assert not {(p.topic, p.task) for p in test} & seen


def test_deterministic_subsets_and_refusals():
    a = real_prompts("harmful", "test", 40, seed=3)
    assert a == real_prompts("harmful", "test", 40, seed=3) and len(a) == 40
    assert a != real_prompts("harmful", "test", 40, seed=4)
    assert set(a) <= set(real_prompts("harmful", "test"))
    p = real_prompts("harmful", "train")[0]
    assert refusal_for(p) == refusal_for(p) and refusal_for(p) in refusals()
    assert refusals().count(REFUSAL) > len(refusals()) / 2
    assert all(r.startswith("I'm sorry, but I can't") for r in refusals())


def test_write_prompt_files(tmp_path):
    paths = write_prompt_files(tmp_path / "p")
    assert sorted(paths) == sorted([f"{s}_{x}" for s in ("bad", "good") for x in SPLITS] + ["plain"])
    lines = paths["bad_test"].read_text().splitlines()
    assert lines == real_prompts("harmful", "test")
    plain = paths["plain"].read_text().splitlines()
    assert len(plain) >= 30 and all(len(x.split()) >= 20 for x in plain)
