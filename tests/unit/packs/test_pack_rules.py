"""The pack registry and every pack rule file's unit tests, in our runner and in promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from signalroom.packs import UnknownPackError, available_packs, load_pack
from signalroom.rules.unittest import run_rule_tests

pytestmark = pytest.mark.unit

PACK = load_pack("freshfoodz")
RULE_NAMES = {"sample_success", "event_catering", "lead_protection", "cost", "rpo"}


def test_registry() -> None:
    assert "freshfoodz" in available_packs()
    assert {p.stem for p in PACK.rule_files()} == RULE_NAMES
    assert {p.name.removesuffix(".test.yml") for p in PACK.rule_test_files()} == RULE_NAMES
    dashboards = PACK.dashboards()
    assert dashboards["freshfoodz-operations"]["title"] == "FreshFoodz Operations Excellence"
    runbooks = PACK.runbooks_dir()
    assert runbooks is not None and (runbooks / "cost-per-lead.md").is_file()
    assert "6 months" in PACK.readme()
    with pytest.raises(UnknownPackError, match=r"installed: .*freshfoodz"):
        load_pack("nope")


def test_every_alert_has_a_runbook_and_a_test() -> None:
    import yaml

    runbooks = PACK.runbooks_dir()
    assert runbooks is not None
    tests_text = "".join(p.read_text() for p in PACK.rule_test_files())
    for path in PACK.rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule["record"]
                assert name in tests_text, f"{path.name}: {name} has no unit test"
                if "alert" in rule:
                    assert (runbooks / f"{rule['annotations']['runbook']}.md").is_file()


@pytest.mark.parametrize("test_file", PACK.rule_test_files(), ids=lambda p: p.name)
def test_rule_unit_tests_pass_in_signalroom(test_file: object) -> None:
    text, code = run_rule_tests([str(test_file)])
    assert code == 0, text


@pytest.mark.parametrize("test_file", PACK.rule_test_files(), ids=lambda p: p.name)
def test_rule_unit_tests_pass_in_promtool(test_file: object) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tests_can_fail(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path))
    for p in PACK.rule_files():
        shutil.copy(p, out / p.name)
    broken = (PACK.directory / "rules" / "cost.test.yml").read_text().replace("€30", "€31")
    (out / "cost.test.yml").write_text(broken)
    text, code = run_rule_tests([str(out / "cost.test.yml")])
    assert code == 1 and "FAILED" in text
