"""The settings rendered for people: the ``--help`` list and the configuration table,
both from the declarations in ``runtime.config``.

``python -m enrolment_reconciliation.runtime.settings_doc --markdown`` prints the table of
docs/configuration.md.
"""

from __future__ import annotations

import json
import sys

from enrolment_reconciliation.runtime.config import (
    ENV_DEFAULT,
    ENV_HELP,
    ENV_KEY,
    credential_variables,
    declared_settings,
)


def _rows() -> list[tuple[str, str, str]]:
    rows = [(ENV_KEY, ENV_DEFAULT, ENV_HELP)]
    for _, f in declared_settings():
        default = f.metadata["default"]
        shown = json.dumps(default) if isinstance(default, bool) else str(default)
        rows.append((f.metadata["keys"][0], shown.replace("{env}", "${env}"), f.metadata["help"]))
    return rows


def settings_table(markdown: bool = True) -> str:
    """Every setting with its key, default and meaning: docs/configuration.md's table and the
    ``--help`` text."""
    rows = _rows()
    if not markdown:
        width = max(len(k) for k, _, _ in rows)
        return "\n".join(f"  {k:<{width}}  {h} (default: {d})" for k, d, h in rows)
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {h.replace('|', chr(92) + '|')} |" for k, d, h in rows]
    credentials = ", ".join(f"`{v}`" for v in credential_variables())
    lines.append(f"| (environment) | | credentials, never in the file or a log: {credentials} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table(markdown="--markdown" in sys.argv))
