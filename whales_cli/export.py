"""`whales export`: stored predictions as CSV, JSON lines or a Darwin Core Archive."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from whales_cli._common import Db, fail


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    dwca = "dwca"


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since {value!r} is not an ISO 8601 date or date-time", code=2)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def export(
    format: Annotated[ExportFormat, typer.Option("--format", "-f",
                                                 help="csv, jsonl or dwca.")] = ExportFormat.csv,
    since: Annotated[str | None, typer.Option(help="Only predictions made at or after this ISO 8601 time "
                                                   "(UTC when no zone is given).")] = None,
    db: Db = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; csv and jsonl go to "
                                                                        "stdout when omitted.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Public service URL; Darwin Core associatedMedia "
                                                      "then links to each stored photo.")] = None,
    positions: Annotated[str, typer.Option(
        help="dwca: 'exact', 'withheld', or a grid size in degrees (e.g. 0.1) to generalise positions "
             "for publishing (dataGeneralizations, coordinateUncertaintyInMeters).")] = "exact",
    license: Annotated[str | None, typer.Option(
        "--license", envvar="WHALES_DWC_LICENSE", show_envvar=False,
        help="dwca licence: CC0-1.0, CC-BY-4.0 or CC-BY-NC-4.0 (default CC-BY-NC-4.0; "
             "$WHALES_DWC_LICENSE).")] = None,
    title: Annotated[str | None, typer.Option(envvar="WHALES_DWC_TITLE", show_envvar=False,
                                              help="dwca dataset title ($WHALES_DWC_TITLE).")] = None,
    creator: Annotated[str | None, typer.Option(
        envvar="WHALES_DWC_CREATOR_NAME", show_envvar=False,
        help="dwca creator's name ($WHALES_DWC_CREATOR_NAME).")] = None,
    organization: Annotated[str | None, typer.Option(
        envvar="WHALES_DWC_CREATOR_ORGANIZATION", show_envvar=False,
        help="dwca creator's organisation ($WHALES_DWC_CREATOR_ORGANIZATION).")] = None,
    email: Annotated[str | None, typer.Option(
        envvar="WHALES_DWC_CREATOR_EMAIL", show_envvar=False,
        help="dwca creator's e-mail ($WHALES_DWC_CREATOR_EMAIL).")] = None,
    package_uuid: Annotated[str | None, typer.Option(
        envvar="WHALES_DWC_PACKAGE_UUID", show_envvar=False,
        help="dwca dataset UUID in packageId (default: derived from the title; "
             "$WHALES_DWC_PACKAGE_UUID).")] = None,
    dataset_version: Annotated[str | None, typer.Option(
        envvar="WHALES_DWC_VERSION", show_envvar=False,
        help="dwca publication version in packageId (default 1.0; $WHALES_DWC_VERSION).")] = None,
) -> None:
    """Export stored predictions (CSV, JSON lines, or a Darwin Core Archive ZIP)."""
    from integrations.base import open_store
    from integrations.dwc_eml import (
        DEFAULT_LICENSE,
        DEFAULT_ORGANIZATION,
        DEFAULT_TITLE,
        DEFAULT_VERSION,
        DatasetMetadata,
        Party,
    )
    from integrations.exports import iter_records, write_csv, write_dwca, write_jsonl
    from whales_identify.records.location_privacy import LocationPolicy

    start = _parse_since(since)
    if format is ExportFormat.dwca and output is None:
        fail("--format dwca writes a ZIP file: give --output FILE.zip", code=2)
    try:
        policy = None if positions.strip().lower() == "exact" else LocationPolicy.parse(positions)
        party = Party(creator, organization or DEFAULT_ORGANIZATION, email)
        metadata = DatasetMetadata(title or DEFAULT_TITLE, license or DEFAULT_LICENSE, party,
                                   package_uuid=package_uuid, version=dataset_version or DEFAULT_VERSION)
    except ValueError as exc:
        fail(str(exc), code=2)
    try:
        store = open_store(db)
    except ValueError as exc:
        fail(str(exc), code=2)
    try:
        records = iter_records(store, since=start)
        if format is ExportFormat.dwca:
            assert output is not None
            count = write_dwca(records, output, base_url=base_url, policy=policy, metadata=metadata)
        else:
            writer = write_csv if format is ExportFormat.csv else write_jsonl
            if output is None:
                count = writer(records, sys.stdout)
                sys.stdout.flush()
            else:
                with open(output, "w", encoding="utf-8", newline="") as fh:
                    count = writer(records, fh)
    finally:
        store.close()
    if output is not None:
        what = "occurrences (one per encounter)" if format is ExportFormat.dwca else "records"
        typer.echo(f"wrote {count} {what} to {output}", err=True)
