"""Every sub-command's --help has a description, and every argument a help text."""

import argparse

import pytest

from hf_unified_pretrain.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["list", "card", "reconstruct", "evaluate-probe", "pseudo-label"])
def test_every_command_has_a_description_and_documented_arguments(command):
    sub = _subparsers(build_parser())[command]
    assert sub.description and len(sub.description.split()) >= 5
    undocumented = [
        action.dest
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help and action.help.strip())
    ]
    assert undocumented == []
    assert sub.description.split()[0] in sub.format_help()  # shown by --help


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "convert", "card", "reconstruct", "evaluate-probe", "pseudo-label"):
        assert command in out


def test_help_does_not_import_the_command_implementations():
    # `--help` pays only for the package import: the commands' heavy modules (datasets, the pseudo-labelling and
    # plotting code) are imported by their handlers. Checked in a fresh interpreter, since this one has them.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hf_unified_pretrain.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('datasets', 'matplotlib', 'hf_unified_pretrain.data.pseudo_labels', 'hf_unified_pretrain.training')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "[]"
