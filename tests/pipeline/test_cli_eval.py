import json

from click.testing import CliRunner

from aru.cli import main
from aru.organism import write_prompt_files


def test_aru_eval_json_on_the_organism(tmp_path):
    files = write_prompt_files(tmp_path / "p")
    res = CliRunner().invoke(
        main,
        ["eval", "organism:base", "--base", "organism:tuned", "--bad", str(files["bad_test"]), "--good",
         str(files["good_test"]), "--limit", "24", "--max-new-tokens", "8", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == ["base", "model"]
    assert rows[0]["behaviour_rate"] >= 0.9 > 0.05 >= rows[1]["behaviour_rate"]
    assert rows[1]["kl_first_token"] > 0
    assert rows[1]["organism"]["forbidden_accuracy"] > rows[0]["organism"]["forbidden_accuracy"]


def test_aru_eval_bad_input_names_the_value(tmp_path):
    res = CliRunner().invoke(main, ["eval", str(tmp_path / "nope"), "--bad", "x.txt", "--good", "y.txt"])
    assert res.exit_code != 0
    assert "x.txt" in res.output
    (tmp_path / "b.txt").write_text("a\n")
    res = CliRunner().invoke(main, ["eval", str(tmp_path / "nope"), "--bad", str(tmp_path / "b.txt"), "--good",
                                    str(tmp_path / "b.txt")])  # fmt: skip
    assert res.exit_code != 0 and "nope" in res.output
