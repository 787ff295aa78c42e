"""Resource usage of the running process, exact from the kernel (getrusage).

Snakemake's benchmark files sample CPU time and RSS every 30 s once a job has run 15 s, so
for jobs of a minute or two they miss part of the CPU time and possibly the peak; these
figures do not.
"""

from __future__ import annotations

import resource
import sys


def process_usage() -> dict[str, float]:
    """CPU seconds (user + system, all threads) and peak RSS in MB of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss_kb = ru.ru_maxrss / 1024 if sys.platform == "darwin" else ru.ru_maxrss  # bytes on macOS
    return {
        "process_cpu_seconds": round(ru.ru_utime + ru.ru_stime, 2),
        "process_peak_rss_mb": round(rss_kb / 1024, 1),
    }
