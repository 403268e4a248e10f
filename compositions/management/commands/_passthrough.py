"""Management commands that are thin front ends over an `ml` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class PassthroughCommand(BaseCommand):
    """Hands every argument to `<module>.main(argv)`, so `--help` shows the library's own options."""

    module = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER)  # for call_command(name, *args)

    def run_from_argv(self, argv: list[str]) -> None:
        # Django's option parser would reject the library's flags: the library parses them itself.
        code = self.run(argv[2:])
        if code:
            sys.exit(code)

    def run(self, args: list[str]) -> int:
        return int(importlib.import_module(self.module).main(list(args)) or 0)

    def handle(self, *args: Any, **options: Any) -> None:  # call_command(name, *args)
        code = self.run([str(a) for a in args])
        if code:
            sys.exit(code)
