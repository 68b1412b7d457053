"""The fleet file: what it holds, and a clear error (file, line, key) for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exec_analytics.client.limiter import TOKEN_KINDS, Limits
from exec_analytics.fleet import DEFAULT_DAYS, FleetFileError, load_fleet

RID_A = "ri.function-registry.main.function.3d68f9a7-deb4-492f-a52b-fc67425d22f6"
RID_B = "ri.function-registry.main.function.c72dffa6-3c03-47c5-8024-65a959471f72"

GOOD = f"""\
cache = "history"
token_kind = "service"
days = 14

[limits]
in_flight = 100

[[resources]]
rid = "{RID_A}"
name = "pricing"
owner = "pricing-team@example.com"
slo = 0.995
tags = ["tier-1", "checkout"]

[[resources]]
rid = "{RID_B}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fleet_file_gives_names_owners_slos_tags_limits_and_the_history(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, GOOD))
    assert fleet.rids == [RID_A, RID_B]
    assert fleet.names == {RID_A: "pricing", RID_B: RID_B}  # no name: the RID stands for itself
    pricing = fleet.resource(RID_A)
    assert (pricing.owner, pricing.slo, pricing.tags) == ("pricing-team@example.com", 0.995, ("tier-1", "checkout"))
    assert fleet.resource(RID_B).slo is None and fleet.resource(RID_B).tags == ()
    # A relative history is relative to the file, wherever the job runs from.
    assert fleet.cache == str(tmp_path / "history")
    assert fleet.token_kind == "service" and fleet.days == 14
    assert fleet.limits == Limits(per_minute=None, in_flight=100)  # the service user's, in flight overridden
    with pytest.raises(KeyError, match="not in the fleet"):
        fleet.resource("ri.function-registry.main.function.nope")


def test_defaults_are_a_user_token_and_thirty_days(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, f'[[resources]]\nrid = "{RID_A}"\n'))
    assert fleet.token_kind == "user" and fleet.limits == TOKEN_KINDS["user"]
    assert fleet.days == DEFAULT_DAYS and fleet.cache is None
    url = load_fleet(write(tmp_path, f'cache = "s3://bucket/history"\n[[resources]]\nrid = "{RID_A}"\n'))
    assert url.cache == "s3://bucket/history"  # an object-store URL is kept as written


@pytest.mark.parametrize(
    ("edit", "line", "key", "problem"),
    [
        (("days = 14", "dayz = 14"), 3, "dayz", "unknown key"),
        (('owner = "pricing', 'team = "pricing'), 11, "resources[0].team", "unknown key"),
        (("in_flight = 100", "in_flight = 0"), 6, "limits.in_flight", "positive integer"),
        (("slo = 0.995", "slo = 1.0"), 12, "resources[0].slo", "strictly between 0 and 1"),
        (("slo = 0.995", "slo = 0"), 12, "resources[0].slo", "strictly between 0 and 1"),
        (("slo = 0.995", 'slo = "high"'), 12, "resources[0].slo", "strictly between 0 and 1"),
        ((f'rid = "{RID_B}"', 'rid = "function-42"'), 16, "resources[1].rid", "not a Foundry RID"),
        ((f'rid = "{RID_B}"', f'rid = "{RID_A}"'), 16, "resources[1].rid", "already used by resources[0] (line 9)"),
        ((f'rid = "{RID_B}"', f'rid = "{RID_B}"\nname = "pricing"'), 17, "resources[1].name", "already used"),
        (('token_kind = "service"', 'token_kind = "robot"'), 2, "token_kind", "one of user, service"),
        (('tags = ["tier-1", "checkout"]', "tags = [1]"), 13, "resources[0].tags", "list of non-empty strings"),
        ((f'rid = "{RID_B}"', 'name = "x"'), 15, "resources[1]", "missing key 'rid'"),
        (('cache = "history"', "cache = 3"), 1, "cache", "non-empty string"),
    ],
)
def test_every_mistake_names_the_file_the_line_and_the_key(
    tmp_path: Path, edit: tuple[str, str], line: int, key: str, problem: str
) -> None:
    assert edit[0] in GOOD
    path = write(tmp_path, GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(FleetFileError) as info:
        load_fleet(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert problem in message


def test_unreadable_and_malformed_files_are_fleet_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(FleetFileError, match=re.escape(str(missing))):
        load_fleet(missing)
    with pytest.raises(FleetFileError, match=r"not valid TOML.*line 2"):
        load_fleet(write(tmp_path, '[[resources]]\nrid = "unterminated\n'))
    with pytest.raises(FleetFileError, match=r"resources: the fleet needs at least one"):
        load_fleet(write(tmp_path, 'cache = "h"\n'))
    assert issubclass(FleetFileError, ValueError)  # the command line's usage-error exit code
