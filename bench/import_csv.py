"""CSV import of 100,000 rows: preview, apply, and the same file again; prints rows per second and peak memory.

    .venv/bin/python bench/import_csv.py [--rows 100000] [--bad 0.01]

Targets (issue 14): at least 5,000 rows per second for the preview and for applying; peak
memory under 300 MB. On a shared, loaded machine the wall-clock rate says little: the table
also gives each step's CPU seconds (its child process's, start-up included) and rows per CPU
second. The file has one row per device (70% of the users have one device, 30%
two) and ``--bad`` of the rows carry a bad email. Each step runs in its own child process
("the web request" for the preview, "the worker" for applying) whose peak RSS is read with
os.wait4; the database is a fresh SQLite file under a temporary KMCONSOLE_VAR_DIR (or
DATABASE_URL if set, which must point at an empty, migrated database you can throw away).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env(var_dir: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
    env.setdefault("KMCONSOLE_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    env.setdefault("KMCONSOLE_VAR_DIR", var_dir)
    env.setdefault("DJANGO_SETTINGS_MODULE", "kmconsole.settings")
    env.update(DEBUG="0", LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))  # DEBUG would keep every query in memory
    return env


def make_csv(rows: int, bad: float) -> bytes:
    from users.csv_import import COLUMNS

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.header for c in COLUMNS])
    every_bad = round(1 / bad) if bad else 0
    n = written = 0
    platforms = ["iOS", "iPadOS", "macOS", "Android", "Windows"]
    while written < rows:
        n += 1
        devices = 2 if n % 10 < 3 else 1
        for d in range(min(devices, rows - written)):
            written += 1
            email = "not-an-email" if every_bad and written % every_bad == 0 else f"user{n}@example.org"
            writer.writerow(
                [f"user{n}", f"User Number {n}", email, f"user{n}@corp.example", f"Dept {n % 40}", "yes",
                 f"SER{n:07d}{d}", platforms[(n + d) % 5], "Activated", "iPhone 16", "18.1"]
            )  # fmt: skip
    return out.getvalue().encode("utf-8")


def child(step: str, path: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kmconsole.settings")
    django.setup()
    from users.csv_import import import_apply, import_preview
    from users.models import UserImport

    started = time.perf_counter()
    if step == "preview":
        data = Path(path).read_bytes()
        user_import = import_preview(data=data, filename="bench.csv")
        rows = user_import.total_rows
        summary = {"preview": user_import.preview | {"samples": None}, "encoding": user_import.encoding}
    else:
        user_import = UserImport.objects.latest("pk")
        user_import = import_apply(import_id=user_import.pk)
        rows = user_import.accepted_rows
        summary = {"result": user_import.result}
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, **summary}))


def run_child(step: str, path: Path, env: dict[str, str]) -> tuple[dict, float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", step, "--file", str(path)], env=env, stdout=subprocess.PIPE
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{step} failed ({status})")
    cpu = usage.ru_utime + usage.ru_stime  # the child's CPU seconds (startup included)
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bad", type=float, default=0.01)
    parser.add_argument("--child")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return
    with tempfile.TemporaryDirectory(prefix="kmc-bench-import-") as tmp:
        env = _env(tmp)
        os.environ.update(env)
        import django

        django.setup()
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
        path = Path(tmp) / "bench.csv"
        path.write_bytes(make_csv(args.rows, args.bad))
        database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
        size = path.stat().st_size / 1024 / 1024
        print(f"{args.rows:,} rows, {size:.1f} MB, {database}; load average {os.getloadavg()}")
        heads = ("rows", 8), ("seconds", 8), ("rows/s", 8), ("CPU s", 6), ("rows/CPU s", 10), ("peak MB", 8)
        print(f"{'step':<22} " + " ".join(f"{head:>{width}}" for head, width in heads) + "  outcome")
        for step, label in (("preview", "preview (new file)"), ("apply", "apply"),
                            ("preview", "preview (same again)"), ("apply", "apply (same again)")):  # fmt: skip
            result, peak, cpu = run_child(step, path, env)
            rate = result["rows"] / result["seconds"]
            cpu_rate = result["rows"] / cpu
            outcome = result.get("preview") or result.get("result")
            outcome = {k: v for k, v in outcome.items() if k in ("users", "devices", "rejected")}
            print(
                f"{label:<22} {result['rows']:>8,} {result['seconds']:>8.1f} {rate:>8,.0f} {cpu:>6.1f}"
                f" {cpu_rate:>10,.0f} {peak:>8.0f}  {outcome}"
            )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
