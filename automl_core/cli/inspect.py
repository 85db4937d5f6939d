"""``automl inspect DIR``: the data report without a search.

Classes with counts and imbalance, image sizes, modes and formats, the files a search
would skip (with why), and exact duplicates by content hash: within a class, across
classes, or shared between train and test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from collections import Counter, defaultdict

from automl_core import hookimpl
from automl_core.data.cache import batch_slices, describe_error, run_parallel
from automl_core.data.dataset import SUBSETS, TEST, TRAIN
from automl_core.data.decode import decode_image
from automl_core.data.scan import Scan, scan

PROBE_SIZE = 8
"""Side each image is decoded to when checking it: the decoder's errors, at little cost."""


@hookimpl
def register_commands(subcommands):
    parser = subcommands.add_parser(
        "inspect",
        help="report on an image folder without searching",
        description="Classes and their balance, image sizes and modes, unreadable files "
        "and exact duplicates of a dataset, before spending time on a search.",
    )
    parser.add_argument(
        "source", metavar="DIR", help="class subfolders, train/val(/test) folders, or a CSV"
    )
    parser.add_argument("--test", metavar="DIR", help="a separate test folder to check too")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from automl_core.reporting.live import stdout_console

    report = inspect_source(args.source, args.test)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_report(report, stdout_console())
    return 0


def inspect_source(source: str, test: str | None = None) -> dict:
    """Scan and probe every file of ``source`` (and ``test``); the report as a dict."""
    found = scan(source)
    if test is not None:
        _extend(found, scan(test, TEST))
    batches = [(found.paths[part],) for part in batch_slices(len(found.paths))]
    probes = run_parallel(probe_files, batches, len(found.paths), "inspecting images")
    bad = list(found.skipped)
    good = []
    for i, probe in enumerate(probes):
        if probe["error"]:
            bad.append({"path": found.paths[i], "reason": probe["error"]})
        else:
            good.append(i)
    return {
        "source": found.source,
        "layout": found.layout,
        "layout_reason": found.reason,
        "warnings": found.warnings,
        "files": len(found.paths) + len(found.skipped),
        "images": len(good),
        **_classes(found, good),
        **_pictures([probes[i] for i in good]),
        "bad": bad,
        "duplicates": _duplicates(found, probes, good),
    }


def probe_files(paths: list[str]) -> list[dict]:
    """Content hash, format, size and mode of each file, or why a search would skip it."""
    from PIL import Image

    probes = []
    for path in paths:
        probe = {"error": None}
        try:
            with open(path, "rb") as handle:
                probe["sha256"] = hashlib.sha256(handle.read()).hexdigest()
            with Image.open(path) as image:
                probe |= {"format": image.format, "size": image.size, "mode": image.mode}
            decode_image(path, PROBE_SIZE)
        except Exception as error:  # reported as a bad file, like the search would
            probe["error"] = describe_error(error)
        probes.append(probe)
    return probes


def _extend(found: Scan, other: Scan) -> None:
    for name in ("paths", "stats", "labels", "subsets", "skipped", "warnings"):
        getattr(found, name).extend(getattr(other, name))


def _classes(found: Scan, good: list[int]) -> dict:
    counts = Counter(found.labels[i] for i in good)
    per_subset = defaultdict(Counter)
    for i in good:
        if found.subsets[i] >= 0:
            per_subset[found.labels[i]][SUBSETS[found.subsets[i]]] += 1
    classes = {name: {"images": counts[name], **per_subset[name]} for name in sorted(counts)}
    imbalance = max(counts.values()) / min(counts.values()) if counts else None
    return {"classes": classes, "imbalance": imbalance}


def _pictures(probes: list[dict]) -> dict:
    if not probes:
        return {"sizes": {}, "modes": {}, "formats": {}}
    widths = sorted(p["size"][0] for p in probes)
    heights = sorted(p["size"][1] for p in probes)
    common = Counter(f"{p['size'][0]}x{p['size'][1]}" for p in probes).most_common(5)
    return {
        "sizes": {
            "width": [widths[0], int(statistics.median(widths)), widths[-1]],
            "height": [heights[0], int(statistics.median(heights)), heights[-1]],
            "most_common": dict(common),
        },
        "modes": dict(Counter(p["mode"] for p in probes).most_common()),
        "formats": dict(Counter(p["format"] for p in probes).most_common()),
    }


def _duplicates(found: Scan, probes: list[dict], good: list[int]) -> list[dict]:
    groups = defaultdict(list)
    for i in good:
        groups[probes[i]["sha256"]].append(i)
    duplicates = []
    for members in groups.values():
        if len(members) < 2:
            continue
        classes = sorted({found.labels[i] for i in members})
        subsets = [SUBSETS[s] for s in sorted({max(found.subsets[i], TRAIN) for i in members})]
        problems = []
        if len(classes) > 1:
            problems.append(f"in {len(classes)} classes: {', '.join(classes)}")
        if "test" in subsets and len(subsets) > 1:
            problems.append(f"in {' and '.join(subsets)}")
        duplicates.append(
            {"paths": [found.paths[i] for i in members], "classes": classes, "problems": problems}
        )
    return sorted(duplicates, key=lambda d: (not d["problems"], d["paths"]))


def print_report(report: dict, console) -> None:
    """The report as rich tables."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console.print(
        f"[bold]{escape(report['source'])}[/] ({report['layout']}): {report['images']} "
        f"usable images of {report['files']} files, {len(report['classes'])} classes"
    )
    console.print(f"layout: {report['layout']}: {report['layout_reason']}", markup=False)
    for warning in report["warnings"]:
        console.print(f"warning: {warning}", markup=False)
    table = Table(title="Classes")
    table.add_column("class")
    table.add_column("images", justify="right")
    splits = [s for s in SUBSETS if any(s in c for c in report["classes"].values())]
    for name in splits:
        table.add_column(name, justify="right")
    for name, counts in report["classes"].items():
        table.add_row(Text(name), str(counts["images"]), *(str(counts.get(s, 0)) for s in splits))
    console.print(table)
    if report["imbalance"] is not None:
        console.print(f"imbalance (largest / smallest class): {report['imbalance']:.1f}x")
    if report["sizes"]:
        w, h = report["sizes"]["width"], report["sizes"]["height"]
        console.print(
            f"sizes (min / median / max): width {w[0]} / {w[1]} / {w[2]}, "
            f"height {h[0]} / {h[1]} / {h[2]}; most common "
            + ", ".join(f"{s} ({n})" for s, n in report["sizes"]["most_common"].items())
        )
        console.print(
            "modes: " + ", ".join(f"{m} ({n})" for m, n in report["modes"].items()), markup=False
        )
        console.print(
            "formats: " + ", ".join(f"{f} ({n})" for f, n in report["formats"].items()),
            markup=False,
        )
    console.print(f"[bold]{len(report['bad'])} file(s) a search would skip[/]")
    for bad in report["bad"]:
        console.print(f"  {bad['path']}: {bad['reason']}", markup=False)
    console.print(f"[bold]{len(report['duplicates'])} group(s) of identical images[/]")
    for group in report["duplicates"]:
        note = f" [red]({escape('; '.join(group['problems']))})[/]" if group["problems"] else ""
        console.print("  " + escape(" = ".join(group["paths"])) + note)
