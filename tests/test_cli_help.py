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
