"""This process's resident set from /proc (Linux), and the fresh child
processes the memory, leak and 2^31 tests measure in (a clean RSS): a child
runs a script with tests/ on its path, so that it imports this module too."""
import json
import pathlib
import subprocess
import sys

TESTS = str(pathlib.Path(__file__).resolve().parent)


def status() -> dict:
    """{"VmHWM": peak bytes, "VmRSS": resident bytes} of this process."""
    d = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmHWM", "VmRSS"):
                d[k] = int(v.split()[0]) * 1024
    return d


def reset_peak() -> int:
    """Reset VmHWM to the current resident set, which it returns."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then VmHWM keeps older peaks: the measure can only over-estimate
    return status()["VmRSS"]


def run_child(script: str, args=(), timeout=300, env=None):
    """The JSON value a child running `script` (argv: args) prints last."""
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {TESTS!r})\n"
                           + script] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, (f"the child exited with {proc.returncode} (a negative "
                                  f"code is a signal: a crash)\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
