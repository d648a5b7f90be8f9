"""Docs that check themselves: every hook is documented with its exact signature and has tests."""

import inspect
import re
from pathlib import Path

import pytest

from clipper_deploy_core.plugin import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "clipper_deploy_spec")]


def signature_line(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def test_all_card_hooks_exist():
    assert set(HOOKS) == {"model_types", "preload_modules", "save_model", "load_model", "base_image",
                          "predict_wrapper"}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature(hook):
    doc = (ROOT / "docs" / "plugin-hooks.md").read_text()
    assert f"## {hook}" in doc
    assert signature_line(hook) in doc


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_docstring_has_when_returns_and_example(hook):
    text = inspect.getdoc(getattr(hookspecs, hook))
    assert "Called:" in text and ":returns:" in text and "Example::" in text and "@hookimpl" in text


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_the_conformance_kit(hook):
    kit = (ROOT / "clipper_deploy_core" / "testing" / "__init__.py").read_text()
    called = set(re.findall(r'"(\w+)"', kit)) | set(re.findall(r"(\w+)\(", kit))
    indirect = {"save_model": "save_bundle", "load_model": "load_bundle", "predict_wrapper": "load_bundle",
                "model_types": "select_plugin", "base_image": "base_image", "preload_modules": "check_preload"}
    assert indirect[hook] in called


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2, "the README opens with two commands"
    test_cmd = blocks[1].strip().splitlines()[-1]
    assert test_cmd in ci


def test_every_module_the_architecture_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"(clipper_deploy_core/[\w/]+(?:\.py)?)", text))
    assert len(named) > 25
    missing = [n for n in sorted(named) if not (ROOT / n).exists()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    assert "```mermaid" in text


def test_managers_never_import_the_server_side():
    import ast

    offenders = []
    for path in (ROOT / "clipper_deploy_core" / "managers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level:
                target = node.module.split(".")[0]
                if target in ("frontend", "cluster"):
                    offenders.append(f"{path.relative_to(ROOT)}: from {'.' * node.level}{node.module}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offenders += [f"{path.relative_to(ROOT)}: {m}" for m in mods
                              if m.startswith(("clipper_deploy_core.frontend", "clipper_deploy_core.cluster"))]
    assert not offenders, offenders


def test_the_container_manager_contract_is_documented_method_by_method():
    import ast
    import inspect

    from clipper_deploy_core.managers.base import ContainerManager

    doc = (ROOT / "docs" / "container-managers.md").read_text()
    abstract = sorted(ContainerManager.__abstractmethods__)
    headed = sorted(re.findall(r"^### `(\w+)\(", doc, re.M))
    assert headed == abstract
    for name in abstract:
        method = getattr(ContainerManager, name)
        text = " ".join(inspect.getdoc(method).split())
        assert "Called:" in text, f"{name} does not say who calls it"
        section = doc.split(f"### `{name}(", 1)[1].split("\n### ", 1)[0]
        assert text in " ".join(section.split()), f"docs/container-managers.md is out of date for {name}"
    # The example on the page is the toy manager the core's tests install, verbatim.
    toy = (ROOT / "tests" / "toy_manager" / "clipper_deploy_toy_manager" / "__init__.py").read_text()
    assert toy.strip() in doc and (ROOT / "tests" / "toy_manager" / "pyproject.toml").read_text().strip() in doc
    ast.parse(toy)


def undocumented(packages=("frontend", "cluster", "managers")):
    """Public classes and functions (methods included) of the serving side without a docstring of their own or one
    inherited from the contract they implement."""
    import importlib
    import inspect

    missing = []
    for pkg in packages:
        for path in sorted((ROOT / "clipper_deploy_core" / pkg).rglob("*.py")):
            if path.name == "__main__.py":
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            module = importlib.import_module(name)
            for attr, obj in vars(module).items():
                if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                    continue
                if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                    continue
                if not inspect.getdoc(obj):
                    missing.append(f"{name}.{attr}")
                if inspect.isclass(obj):
                    for m, member in vars(obj).items():
                        if m.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                            continue
                        if not inspect.getdoc(getattr(obj, m) if isinstance(member, property) else member) and \
                                not any(inspect.getdoc(getattr(base, m, None)) for base in obj.__mro__[1:]
                                        if hasattr(base, m)):
                            missing.append(f"{name}.{attr}.{m}")
    return missing


def test_every_public_class_and_function_of_the_serving_side_says_what_it_is_for():
    missing = undocumented()
    assert not missing, f"{len(missing)} without a docstring: {missing}"


@pytest.mark.parametrize("heading", ["## Rollouts: several models per app", "### Learning from feedback"])
def test_the_readme_examples_of_rollouts_and_feedback_run(heading, tmp_path):
    import subprocess
    import sys

    block = (ROOT / "README.md").read_text().split(heading, 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(block)
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "CLIPPER_DEPLOY_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    assert "'name': 'weighted'" in out.stdout or "Feedback received? true" in out.stdout


def test_the_selection_policy_contract_is_documented_method_by_method():
    from clipper_deploy_core.selection.policy import SelectionPolicy

    doc = (ROOT / "docs" / "selection-policies.md").read_text()
    public = sorted(["__init__", *(n for n, f in vars(SelectionPolicy).items()
                                   if inspect.isfunction(f) and not n.startswith("_"))])
    assert sorted(re.findall(r"^### `(\w+)\(", doc, re.M)) == public
    for name in public:
        text = " ".join(inspect.getdoc(getattr(SelectionPolicy, name)).split())
        assert "Called:" in text, f"{name} does not say who calls it"
        section = doc.split(f"### `{name}(", 1)[1].split("\n### ", 1)[0]
        assert text in " ".join(section.split()), f"docs/selection-policies.md is out of date for {name}"
    toy = (ROOT / "tests" / "toy_plugin" / "clipper_deploy_toy" / "policy.py").read_text()
    assert toy.strip() in doc  # the example is the policy the core's tests install, verbatim
