"""docs/migration.md stays true to gateway/settings.py: every setting is documented and
every ``GATEWAY_*`` variable the guide names exists."""

from __future__ import annotations

import re

from gateway.settings import Settings
from tests.e2e.helpers import ROOT

GUIDE = (ROOT / "docs" / "migration.md").read_text()


def test_every_setting_is_in_the_migration_guide() -> None:
    missing = [name for name in Settings.model_fields if f"`{name}`" not in GUIDE]
    assert missing == [], f"docs/migration.md does not mention {missing}: add a row"


def test_every_variable_in_the_migration_guide_is_a_setting() -> None:
    named = set(re.findall(r"GATEWAY_([A-Z_]+[A-Z])", GUIDE)) - {"CONFIG"}
    unknown = sorted(n for n in named if n.lower() not in Settings.model_fields)
    assert unknown == [], f"docs/migration.md names GATEWAY_{unknown}, which are no settings"
    assert "web_stomp.ws_path" in GUIDE and "stomp.default_user" in GUIDE
