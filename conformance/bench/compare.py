#!/usr/bin/env python3
"""Times conformance runners on the 200,000-data-point benchmark input.

    python3 conformance/bench/compare.py RUNNER [RUNNER...] [--runs N] [--dir DIR]

Generates the input with generate_metrics.py (into DIR, default a folder
under /tmp, reused when present), runs every runner N times (default 3)
under /usr/bin/time -v, and prints the best wall-clock time and the peak
resident set size of each, whole process. The runners' outputs must agree
after check.py's normalisation, and their statistics exactly; the script
fails otherwise.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def normalised(path, check_dir):
    sys.path.insert(0, str(check_dir))
    from check import normalize, render  # noqa: E402

    with open(path, "rb") as fh:
        return render(normalize(json.load(fh)))


def run(runner, data, out_dir, tag):
    output = out_dir / f"output-{tag}.json"
    stats = out_dir / f"stats-{tag}.json"
    cmd = [
        "/usr/bin/time", "-v", runner,
        "--policies", str(data / "policies.json"),
        "--input", str(data / "metrics.json"),
        "--output", str(output),
        "--stats", str(stats),
        "--signal", "metric",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{runner} failed:\n{proc.stderr}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    hours, minutes, seconds = wall.groups()
    elapsed = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    return elapsed, int(rss.group(1)) / 1024, output, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runners", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "tero-conformance-bench"))
    ap.add_argument("--check", default=str(HERE.parents[2] / "shared" / "conformance"),
                    help="folder of check.py (default: shared/conformance next to the checkout)")
    args = ap.parse_args()

    data = Path(args.dir)
    if not (data / "metrics.json").is_file():
        subprocess.run([sys.executable, str(HERE / "generate_metrics.py"), str(data)], check=True)
    size = (data / "metrics.json").stat().st_size
    print(f"input: {size:,} bytes ({size / 2**20:.1f} MiB), 200,000 data points, 10 policies")

    results = []
    for i, runner in enumerate(args.runners):
        timings = [run(runner, data, data, str(i)) for _ in range(args.runs)]
        best = min(t[0] for t in timings)
        peak = max(t[1] for t in timings)
        results.append((runner, best, peak, timings[-1][2], timings[-1][3]))
        print(f"{runner}: best {best:.2f} s of {args.runs}, peak RSS {peak:.0f} MiB")

    first = results[0]
    for other in results[1:]:
        if normalised(first[3], args.check) != normalised(other[3], args.check):
            sys.exit(f"outputs of {first[0]} and {other[0]} differ")
        if json.loads(Path(first[4]).read_text()) != json.loads(Path(other[4]).read_text()):
            sys.exit(f"statistics of {first[0]} and {other[0]} differ")
    if len(results) > 1:
        print("outputs (normalised) and statistics agree")


if __name__ == "__main__":
    main()
