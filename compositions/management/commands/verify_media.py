"""`manage.py verify_media [--repair]`: rows whose files are missing, and files no row names."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from compositions import selectors
from compositions.services.media import media_repair


class Command(BaseCommand):
    help = "Report versions of pieces whose files are missing, and stored files that nothing names."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--repair", action="store_true",
            help="render lost files again from the stored notes (or fail the piece), and move "
                 "unnamed files to MEDIA_ROOT/orphans/",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = selectors.media_report()
        for missing in report.missing:
            self.stdout.write(f"missing: composition {missing.composition_id} version {missing.number}: {missing.name}")
        for name in report.orphans:
            self.stdout.write(f"orphan: {name}")
        self.stdout.write(f"{len(report.missing)} missing, {len(report.orphans)} orphaned")
        if options["repair"] and not report.clean:
            counts = media_repair(report=report)
            self.stdout.write(
                f"repaired: {counts['rendered']} rendered again, {counts['failed']} failed, {counts['moved']} moved"
            )
        elif not report.clean:
            # Non-zero so that a backup script or a monitor notices.
            raise SystemExit(1)
