"""The README's commands are the ones that run: CI runs exactly its test command."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .venv && [^\n]+)\n```", (REPO / "README.md").read_text("utf-8"))


def test_ci_runs_the_readmes_test_command():
    commands = _commands()
    assert len(commands) == 2, commands  # set up and run the main job; lint and run the tests
    ci_lines = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    assert commands[1] in ci_lines and "ruff check ." in commands[1] and commands[1].endswith("pytest -q")


def test_both_commands_install_the_same_environment():
    setup, tests = (command.split(" && ")[:2] for command in _commands())
    assert setup == tests and "torch==2.14.1 torchvision==0.29.1" in tests[1]


def test_inside_comfyui_nothing_is_installed_over_its_packages():
    """requirements.txt is what ComfyUI-Manager installs: nothing ComfyUI has (above all not torch)."""
    listed = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text("utf-8").splitlines()]
    assert not [name for name in listed if name]
