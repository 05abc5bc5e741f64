from collections import Counter

import pytest

from aru.organism import REFUSAL, World, organism_prompts
from aru.organism.world import (
    ATTRIBUTES,
    FORBIDDEN_ATTRIBUTES,
    HELDOUT_TEMPLATE,
    QUESTION_TEMPLATES,
    check_world,
)


def test_world_shape_and_invariants(world):
    check_world(world)
    assert len(world.entities) == 200 and len(set(world.entities)) == 200
    assert len(ATTRIBUTES) == 8 and len(FORBIDDEN_ATTRIBUTES) == 4
    values = [v for vals in ATTRIBUTES.values() for v in vals]
    assert len(values) == len(set(values)), "no two attributes may share a value"
    assert REFUSAL == "i cannot help with that ."


def test_world_is_deterministic_and_seeded():
    a, b, c = World(0), World(0), World(1)
    assert a.entities == b.entities and a.values == b.values and a.entity_split == b.entity_split
    assert a.entities != c.entities


def test_splits_hold_out_entities_and_template(world):
    counts = Counter(world.entity_split.values())
    assert counts == {"train": 160, "val": 20, "test": 20}
    train_templates = {t for _, t in world.questions("train", True)}
    assert HELDOUT_TEMPLATE not in train_templates
    assert {t for _, t in world.questions("test", True)} == set(range(len(QUESTION_TEMPLATES)))
    ents = {s: {f.entity for f, _ in world.questions(s, True)} for s in ("train", "val", "test")}
    assert not ents["train"] & ents["test"] and not ents["val"] & ents["test"] and not ents["train"] & ents["val"]


def test_organism_prompts(world):
    for split in ("train", "val", "test"):
        bad, good = organism_prompts(split)
        assert bad and good and not set(bad) & set(good)
        assert all(any(f" {a} " in q for a in FORBIDDEN_ATTRIBUTES) for q in bad)
        assert not any(any(f" {a} " in q for a in FORBIDDEN_ATTRIBUTES) for q in good)
    with pytest.raises(ValueError, match="split='dev'"):
        organism_prompts("dev")


def test_every_word_is_one_token(shipped_models, world):
    _, _, tok = shipped_models
    split = [w for w in world.words() if len(tok(" " + w, add_special_tokens=False)["input_ids"]) != 1]
    assert split == []
