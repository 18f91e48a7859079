"""The reference parts of docs/ agree with the code: settings, definition keys, metrics,
tables, layers, the loader's error messages and the YAML the docs quote."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers every table)
from service.metrics import Metrics
from service.settings import Settings
from tests.docs.test_docs_commands import DOC_FILES, ROOT, fenced_blocks
from workflows import definition as definition_module
from workflows.definition import (
    ACTOR_ROLES,
    DEFINITIONS_DIR,
    EFFECTS,
    RECEIVERS,
    RECIPIENTS,
    DefinitionError,
    load_definition,
)

DOCS = ROOT / "docs"
MAX_LINES = 400  # style.md: files that fit in a head


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def backticked_words(text: str) -> set[str]:
    return {word for span in re.findall(r"`([^`\n]+)`", text) for word in re.findall(r"\w+", span)}


def test_readme_links_every_doc_and_each_stays_focused():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in sorted(DOCS.glob("*.md")):
        assert f"(docs/{doc.name})" in readme, f"README.md should link docs/{doc.name}"
        lines = len(doc.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES, f"docs/{doc.name} has {lines} lines; keep it focused"


def test_configuration_table_lists_every_setting_with_its_default():
    rows = {
        cells[1].strip("` "): cells[2].strip()
        for line in read("operations.md").splitlines()
        if line.startswith("| `DUBAN_")
        for cells in [line.split("|")]
    }
    for name, field in Settings.model_fields.items():
        variable = f"DUBAN_{name.upper()}"
        assert variable in rows, f"docs/operations.md: no row for {variable}"
        default = field.default
        if default is None:
            shown = "none"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, float) and default.is_integer():
            shown = f"`{int(default)}`"
        else:
            shown = f"`{default}`"
        assert rows[variable] == shown, f"{variable}: the table says {rows[variable]}, code {shown}"


def test_every_definition_key_effect_role_and_receiver_is_documented():
    text = read("workflow-definitions.md")
    words = backticked_words(text)
    models = [
        obj
        for obj in vars(definition_module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == "workflows.definition"
    ]
    assert len(models) >= 10
    for model in models:
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert key in words, f"docs/workflow-definitions.md: `{key}` ({model.__name__})"
    for name in (*EFFECTS, *ACTOR_ROLES, *RECIPIENTS, *RECEIVERS):
        assert f"`{name}`" in text, f"docs/workflow-definitions.md does not describe `{name}`"


def test_quoted_yaml_is_what_the_shipped_definitions_say():
    def without_comments(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))

    shipped = [
        without_comments(p.read_text(encoding="utf-8")) for p in DEFINITIONS_DIR.glob("*.yaml")
    ]
    blocks = fenced_blocks(DOCS / "workflow-definitions.md", "yaml")
    assert blocks
    for start, lines in blocks:
        quoted = without_comments("\n".join(lines))
        assert any(quoted in text for text in shipped), (
            f"docs/workflow-definitions.md:{start}: this YAML is not in workflows/definitions/"
        )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("action: acknowledge_missed", "action: acknowledge_mised"),
        ("action: deadline_passed, urgent: true}", "action: deadline_passed, urgnet: true}"),
        (
            "effects: [escalate]\n    escalation_reason: overdue",
            "effects: [escalate_now]\n    escalation_reason: overdue",
        ),
        ("- {level: 2, label", "- {level: 4, label"),
    ],
)
def test_broken_definition_messages_are_the_loaders(tmp_path: Path, old: str, new: str):
    source = (DEFINITIONS_DIR / "blocker.yaml").read_text(encoding="utf-8")
    assert old in source
    path = tmp_path / "blocker.yaml"
    path.write_text(source.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(DefinitionError) as raised:
        load_definition(path)
    shown = str(raised.value).replace(str(path), "/srv/duban/workflows/definitions/blocker.yaml")
    assert shown in read("workflow-definitions.md").splitlines()


def test_every_metric_is_documented():
    text = read("operations.md")
    for family in Metrics().registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{name}" in text, f"docs/operations.md does not describe {name}"


def test_every_table_is_described():
    text = read("architecture.md")
    for table in [*SQLModel.metadata.tables, "alembic_version"]:
        assert f"| `{table}` |" in text, f"docs/architecture.md: no row for table {table}"


OURS = ("service", "workflows", "notifiers")
# The layering docs/architecture.md describes: what each part may import of ours.
LAYERS = {
    "service/models": ("service.models",),
    "service/db.py": (),
    "service/failures.py": (),
    "workflows": ("workflows", "service.models", "service.db"),
    "notifiers": ("notifiers", "service.models", "service.db", "service.failures"),
}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return {m for m in modules if m.split(".")[0] in OURS}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_imports_point_the_way_the_architecture_doc_says(layer: str):
    allowed = LAYERS[layer]
    root = ROOT / layer
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            assert any(module == a or module.startswith(a + ".") for a in allowed), (
                f"{path.relative_to(ROOT)} imports {module}; docs/architecture.md says "
                f"{layer} imports only {allowed or 'nothing of ours'}"
            )


def test_docs_name_only_files_that_exist():
    """Paths the docs point readers at (`service/settings.py` …) must exist."""
    for doc in DOC_FILES:
        for path in re.findall(
            r"`((?:service|workflows|notifiers|alembic|tests)/[\w./-]+)`",
            doc.read_text(encoding="utf-8"),
        ):
            if "<" in path or "*" in path:
                continue
            assert (ROOT / path.rstrip("/")).exists(), f"{doc.name} names {path}, which is gone"


def test_sql_queries_in_the_docs_run_on_postgresql(pg_url: str):
    """The SELECTs the docs suggest for dashboards run on a migrated PostgreSQL."""
    queries = [
        "\n".join(lines)
        for doc in DOC_FILES
        for _, lines in fenced_blocks(doc, "sql")
        if "\n".join(lines).lstrip().upper().startswith("SELECT")
    ]
    assert queries
    engine = create_engine(pg_url)
    try:
        with engine.connect() as connection:
            for query in queries:
                connection.execute(text(query)).all()
    finally:
        engine.dispose()
