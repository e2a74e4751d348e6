"""Replay fuzz inputs through fuzz_core.one_input (no atheris needed):
    python tests/fuzz/replay.py DIR_OR_FILE...
Before each input its path is written to $FUZZ_REPLAY_CURRENT (if set), so a
crash that kills the process (a sanitizer report) still names its input."""
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fuzz_core  # noqa: E402


def main(args):
    files = sorted(f for a in map(pathlib.Path, args)
                   for f in (a.iterdir() if a.is_dir() else [a]) if f.is_file())
    current = os.environ.get("FUZZ_REPLAY_CURRENT")
    for f in files:
        if current:
            pathlib.Path(current).write_text(str(f))
        fuzz_core.one_input(f.read_bytes())
    print(f"replayed {len(files)} inputs: {dict(fuzz_core.STATS)}")


if __name__ == "__main__":
    main(sys.argv[1:])
