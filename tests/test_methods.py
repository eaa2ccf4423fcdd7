"""The method abstraction: methods and id sets as named config entries, one Evaluation for every method, imported
id sets checked like our own, ID-only categories. Dry-runs are real Snakemake runs (-n) on copies of the configs."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import yaml

from mmgenrec.io import InputError
from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences
from mmgenrec.quantize.imported import import_index
from smkrun import REPO, dry_run_jobs, smk

DEMO = REPO / "config" / "demo.yaml"


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------------------------- Evaluation


def test_examples_follow_leave_one_out_and_never_show_the_target():
    seqs = {"u1": [5, 6, 7, 8, 9], "u2": [1, 2, 3]}
    test = Evaluation().examples(seqs)
    assert [(e.user, e.history, e.target) for e in test] == [("u1", [5, 6, 7, 8], 9), ("u2", [1, 2], 3)]
    valid = Evaluation(split="valid").examples(seqs)
    assert [(e.history, e.target) for e in valid] == [([5, 6, 7], 8), ([1], 2)]
    assert train_sequences(seqs) == {"u1": [5, 6, 7], "u2": [1]}
    assert [e.user for e in Evaluation(max_users=1).examples(seqs)] == ["u1"]  # first users in file order


def test_history_exclusion_is_one_rule_for_every_list():
    ev = Evaluation(top_k=3, exclude_history=True)
    assert ev.finish([4, 9, 1, 7, 2], history=[1, 4]) == [9, 7, 2]
    assert Evaluation(top_k=3).finish([4, 9, 1, 7, 2], history=[1, 4]) == [4, 9, 1]
    assert ev.n_ranked(max_history=20) == 23 and Evaluation(top_k=3).n_ranked(20) == 3


def test_write_scores_the_finished_lists(tmp_path):
    seqs = {"a": [1, 2, 3, 4], "b": [5, 6, 7, 1]}
    ev = Evaluation(top_k=2, exclude_history=True)
    ex = ev.examples(seqs)
    # user a: history [1, 2, 3], target 4, ranked [1, 4, ...] -> [4, 9] (HR@1 = 1)
    # user b: history [5, 6, 7], target 1, ranked [5, 6, 2, 1] -> [2, 1] (rank 2: NDCG@5 = 1/log2(3))
    out = ev.write(tmp_path / "m.json", tmp_path / "t.jsonl", ex, {"0": [[1, 4, 9], [5, 6, 2, 1]]}, {"method": "x"})
    assert out["HR@1"] == 0.5 and out["HR@5"] == 1.0
    assert out["NDCG@5"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["topk"] for r in rows] == [[4, 9], [2, 1]]
    assert out["exclude_history"] is True and out["split"] == "test"


def test_read_sequences_names_the_user(tmp_path):
    with pytest.raises(InputError, match=r"inter\.json: user u2: sequence of 2 items"):
        read_sequences(write(tmp_path / "inter.json", {"u1": [1, 2, 3], "u2": [1, 2]}))
    with pytest.raises(InputError, match=r"user u1: expected a list of non-negative integer"):
        read_sequences(write(tmp_path / "inter.json", {"u1": [1, "2", 3]}))


# ------------------------------------------------------------------------------------------ imported id sets


@pytest.fixture
def inter(tmp_path):
    return write(tmp_path / "inter.json", {"0": [0, 1, 2], "1": [2, 3, 1]})


def index_of(rows):
    return {str(i): toks for i, toks in enumerate(rows)}


GOOD = [["<a_1>", "<b_2>"], ["<a_1>", "<b_3>"], ["<a_0>", "<b_2>"], ["<a_5>", "<b_0>"]]


def test_import_writes_the_checked_index_and_its_stats(tmp_path, inter):
    src = write(tmp_path / "x.index.json", index_of(GOOD))
    stats = import_index(src, inter, tmp_path / "out.json", tmp_path / "stats.json")
    assert json.loads((tmp_path / "out.json").read_text()) == index_of(GOOD)
    assert (stats["n_items"], stats["levels"], stats["letters"]) == (4, 2, "ab")
    assert stats["codebook_size_seen"] == [6, 4] and stats["used_codes"] == [3, 3]
    assert stats["n_unique_ids"] == 4 and stats["collision_rate"] == 0


@pytest.mark.parametrize("rows, message", [
    ([["<a_1>", "<b_2>"], ["<a_1>", "<b_2>"], ["<a_0>", "<b_2>"], ["<a_5>", "<b_0>"]],
     r"x\.index\.json: item 1: same tokens \['<a_1>', '<b_2>'\] as item 0 \(collision\)"),
    ([["<a_1>", "<b_2>"], ["<a_1>", "<b_3>"], ["<a_0>"], ["<a_5>", "<b_0>"]],
     r"x\.index\.json: item 2: 1 tokens, but item 0 has 2"),
    ([["<a_1>", "<b_2>"], ["<a_1>", "<c_3>"], ["<a_0>", "<b_2>"], ["<a_5>", "<b_0>"]],
     r"x\.index\.json: item 1: token 1 is '<c_3>', expected <b_N>"),
    ([["<a_1>", "<b_2>"], ["<a_1>", "b_3"], ["<a_0>", "<b_2>"], ["<a_5>", "<b_0>"]],
     r"x\.index\.json: item 1: token 1 is 'b_3'"),
    (GOOD[:3], r"x\.index\.json: item 3 of .*inter\.json has no ID \(1 items missing\)"),
    (GOOD + [["<a_9>", "<b_9>"]], r"x\.index\.json: 5 items, but .*inter\.json has items 0\.\.3: item 4 is not"),
])
def test_bad_imported_index_names_file_and_item(tmp_path, inter, rows, message):
    src = write(tmp_path / "x.index.json", index_of(rows))
    with pytest.raises(InputError, match=message):
        import_index(src, inter, tmp_path / "out.json", tmp_path / "stats.json")
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "stats.json").exists()


def test_collisions_allowed_by_policy_are_counted(tmp_path, inter):
    rows = [["<a_1>", "<b_2>"], ["<a_1>", "<b_2>"], ["<a_1>", "<b_2>"], ["<a_5>", "<b_0>"]]
    src = write(tmp_path / "x.index.json", index_of(rows))
    stats = import_index(src, inter, tmp_path / "out.json", tmp_path / "stats.json", collisions="allow")
    assert (stats["n_unique_ids"], stats["n_colliding_items"]) == (2, 3)
    assert stats["collision_rate"] == pytest.approx(0.5)


def test_real_published_id_sets(shared_data, tmp_path):
    folder = shared_data / "Instruments"
    inter = folder / "Instruments.inter.json"
    # unique ids per file, counted independently of the importer
    expected = {"vitemb": 6250, "qwen7B": 6236, "llama-td": 6234, "lemb": 5988}
    for name, unique in expected.items():
        src = folder / f"Instruments.index_{name}.json"
        raw = json.loads(src.read_text())
        assert len(set(map(tuple, raw.values()))) == unique
        if unique < 6250:  # the published text ids collide: an error unless the policy allows it
            with pytest.raises(InputError, match=r"\(collision\)"):
                import_index(src, inter, tmp_path / f"{name}.json", tmp_path / f"{name}.stats.json")
        stats = import_index(src, inter, tmp_path / f"{name}.json", tmp_path / f"{name}.stats.json",
                             collisions="allow")
        assert stats["n_unique_ids"] == unique and stats["n_items"] == 6250
    assert json.loads((tmp_path / "vitemb.stats.json").read_text())["letters"] == "ABCD"


# ------------------------------------------------------------------------------------------------ dry-runs


def demo_config(tmp_path, edit=None):
    cfg = yaml.safe_load(DEMO.read_text())
    before = set(cfg["methods"])
    if edit:
        edit(cfg)
    removed = before - set(cfg["methods"])
    for cat in cfg["categories"].values():  # a removed method leaves the categories' method lists too
        if "methods" in cat:
            cat["methods"] = [m for m in cat["methods"] if m not in removed]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def planned(tmp_path, cfg_path, *targets):
    return Counter((j["rule"], j["wildcards"].get("method")) for j in dry_run_jobs(tmp_path, *targets,
                                                                               config=cfg_path))


def test_removing_a_method_removes_its_jobs_and_adding_plans_only_its_own(tmp_path):
    full = planned(tmp_path, demo_config(tmp_path))
    without = planned(tmp_path, demo_config(tmp_path, lambda c: c["methods"].pop("ours_multistage")))
    gone = full - without
    # its finetune + seqrec evaluation + text generation per category, nothing else (the summary/report jobs
    # themselves stay, with other inputs)
    assert gone == Counter({("finetune_multistage", "ours_multistage"): 2, ("evaluate_ours", "ours_multistage"): 2,
                            ("textgen_ours", "ours_multistage"): 2}), gone
    assert without - full == Counter()

    # a second popularity-kind method on a finished run plans only its own evaluation (+ what aggregates)
    def add(c):
        c["methods"]["popularity_nohist"] = {"kind": "popularity"}
        c["evaluate"]["exclude_history"] = False
    added = planned(tmp_path, demo_config(tmp_path, add), "results/demo_music/popularity_nohist/seqrec_metrics.json")
    assert set(added) - {("evaluate_popularity", "popularity_nohist")} <= {
        (r, None) for r in ("synthesize_raw", "prepare")}


def test_a_method_names_its_id_set(tmp_path):
    def edit(c):
        c["idsets"]["text"] = {"view": "text", "quantize": {"codebook_size": 16}}
        c["methods"]["ours_textids"] = {"kind": "vlm_genrec", "variant": "multitask", "idset": "text"}
    jobs = dry_run_jobs(tmp_path, "results/demo_music/ours_textids/seqrec_metrics.json",
                        config=demo_config(tmp_path, edit))
    quantized = [j["wildcards"]["idset"] for j in jobs if j["rule"] == "quantize"]
    assert quantized == ["text"]  # only the id set the method uses
    assert {j["rule"] for j in jobs} >= {"embed_view", "finetune", "evaluate_ours"}


def test_unknown_kind_or_missing_id_set_is_refused(tmp_path):
    proc = smk(tmp_path, "-n", config=demo_config(tmp_path, lambda c: c["methods"].update(x={"kind": "nope"})),
               check=False)
    assert proc.returncode != 0 and "'nope' is not one of" in proc.stdout + proc.stderr
    def add_x(c):
        c["methods"].update(x={"kind": "vlm_genrec", "idset": "nope"})
        for cat in c["categories"].values():  # categories with a method list must list it to run it
            cat.get("methods", []).append("x")

    proc = smk(tmp_path, "-n", config=demo_config(tmp_path, add_x), check=False)
    assert proc.returncode != 0 and "id set 'nope' is not in the config's idsets" in proc.stdout + proc.stderr


def test_id_only_category_runs_id_methods_and_refuses_text_rules(tmp_path, shared_data):
    folder = shared_data / "Instruments"

    def edit(c):
        c["categories"] = {"Instruments": {"source": "prepared", "prepared_dir": str(folder)}}
        c["methods"] = {"popularity": {"kind": "popularity"}}
        c["idsets"] = {"lemb": {"import": str(folder / "{category}.index_lemb.json"), "collisions": "allow"}}
    cfg = demo_config(tmp_path, edit)
    rules = Counter(j["rule"] for j in dry_run_jobs(tmp_path, config=cfg))
    assert rules["prepare"] == rules["evaluate_popularity"] == 1
    assert not {"embed", "enrich", "enrich_checks", "textgen_ours", "evaluate_i2i"} & set(rules)
    assert dry_run_jobs(tmp_path, "results/Instruments/ids/lemb/index.json", config=cfg)[-1]["rule"] == "import_idset"
    proc = smk(tmp_path, "-n", "results/Instruments/embed/qwen_mm.npy", config=cfg, check=False)
    assert proc.returncode != 0 and "Instruments.item.json is missing: category Instruments has no item text" in \
        proc.stdout + proc.stderr


def test_id_set_from_own_vectors_or_a_prepared_folders_index(tmp_path, shared_data):
    vectors = tmp_path / "my_vectors.npy"
    np.save(vectors, np.zeros((3, 4), dtype=np.float32))
    office = shared_data / "lcrec-office"

    def edit(c):
        c["categories"]["Office"] = {"source": "prepared", "prepared_dir": str(office)}
        c["idsets"].update(mine={"embeddings": str(tmp_path / "{category}_vectors.npy")},
                           shipped={"prepared": "index.rq-kmeans.json", "collisions": "allow"})
    cfg = demo_config(tmp_path, edit)
    (tmp_path / "demo_music_vectors.npy").write_bytes(vectors.read_bytes())
    jobs = dry_run_jobs(tmp_path, "results/demo_music/ids/mine/index.json", config=cfg)
    assert [j["rule"] for j in jobs] == ["quantize"]  # no embed job: the user's vectors are the input
    jobs = dry_run_jobs(tmp_path, "results/Office/ids/shipped/index.json", config=cfg)
    assert [j["rule"] for j in jobs] == ["prepare", "import_idset"]


def test_a_category_can_run_a_subset_of_the_methods(tmp_path):
    cfg = demo_config(tmp_path, lambda c: c["categories"]["demo_games"].update(methods=["popularity", "ours"]))
    jobs = dry_run_jobs(tmp_path, config=cfg)
    games = Counter(j["rule"] for j in jobs if j["wildcards"].get("category") == "demo_games")
    music = Counter(j["rule"] for j in jobs if j["wildcards"].get("category") == "demo_music")
    assert games["evaluate_ours"] == 1 and games["finetune"] == 1 and not games["finetune_multistage"]
    assert games["textgen_ours"] == 1 and not games["merge_adapters"]
    assert music["evaluate_ours"] == 3 and music["merge_adapters"] == 1 and music["textgen_ours"] == 3
    bad = demo_config(tmp_path, lambda c: c["categories"]["demo_games"].update(methods=["nope"]))
    proc = smk(tmp_path, "-n", config=bad, check=False)
    assert proc.returncode != 0 and "categories.demo_games.methods names ['nope']" in proc.stdout + proc.stderr
