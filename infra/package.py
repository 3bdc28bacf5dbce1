"""Build the deployable artifacts of the library.

    python infra/package.py [--out dist] [--wheel]

Writes ``<out>/cdp-<version>.zip`` (the ``cdp`` package, for ``spark-submit --py-files``)
and, with ``--wheel``, the wheel (``pip wheel``). The jobs are submitted from ``jobs/``:

    spark-submit --master <url> --py-files dist/cdp-<version>.zip jobs/ingest.py --env cluster
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_zip(out: Path) -> Path:
    sys.path.insert(0, str(ROOT / "lib"))
    from cdp import __version__

    out.mkdir(parents=True, exist_ok=True)
    target = out / f"cdp-{__version__}.zip"
    package = ROOT / "lib" / "cdp"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, path.relative_to(ROOT / "lib").as_posix())
    return target


def build_wheel(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return sorted(out.glob("cdp_spark-*.whl"))[-1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "dist"))
    parser.add_argument("--wheel", action="store_true", help="also build the wheel")
    args = parser.parse_args()
    out = Path(args.out)
    print(build_zip(out))
    if args.wheel:
        print(build_wheel(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
