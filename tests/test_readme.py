import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    install_and_run, test_command = readme_commands()[:2]
    assert "ember quickstart" in install_and_run and "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_install_pins_the_cpu_torch_wheel():
    for command in readme_commands()[:2]:
        assert "torch==2.13.0" in command
