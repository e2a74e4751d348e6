"""Command line: `python -m fastlstm info` and `python -m fastlstm bench [...]`."""
from __future__ import annotations

import sys


def _info() -> int:
    import fastlstm
    info = fastlstm.info()
    print(f"fastlstm {info['version']}")
    b = info["build"]
    print(f"build:        {b['build_type']}, {b['compiler']}, OpenMP {b['openmp']}, "
          f"native={'ON' if b['native'] else 'OFF'}, CUDA={'ON' if 'cuda' in info['backends'] else 'OFF'}")
    feats = [k for k, v in info["cpu_features"].items() if v]
    print(f"cpu features: {' '.join(feats) or '(none detected)'}")
    print(f"kernel path:  {info['isa']} (available: {', '.join(info['isas_available'])}; "
          f"override with FASTLSTM_ISA)")
    print(f"threads:      {info['num_threads']} (of {info['num_procs']} processors)")
    print(f"backends:     {', '.join(info['backends'])}")
    print(f"cuda:         {info['cuda']}")
    print(f"jax:          {_jax_line(info)}")
    return 0


def _jax_line(info) -> str:
    """Whether fastlstm.jax can be used: the handlers in this build, and jax."""
    if not info["jax_ffi"]:
        return ("no XLA FFI handlers in this build (built without jaxlib's headers): "
                "fastlstm.jax is unavailable")
    from importlib import metadata
    major, minor = info["jax_ffi_api"]
    try:
        have = f"jax {metadata.version('jax')} installed"
    except metadata.PackageNotFoundError:
        have = "jax not installed (pip install jax; fastlstm's `jax` extra has it)"
    return f"XLA FFI handlers built (FFI API {major}.{minor}); {have}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m fastlstm {info,bench} [options]\n"
             "  info   version, build options, CPU features, threads, backends, CUDA, jax\n"
             "  bench  time fastlstm against the NumPy reference and installed peers "
             "(bench --help)")
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not argv:  # as argparse does for a missing subcommand
        print(usage, file=sys.stderr)
        print("error: a command is required: info or bench", file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "info":
        return _info()
    if cmd == "bench":
        from . import bench
        return bench.main(rest) or 0
    print(f"unknown command {cmd!r}; expected 'info' or 'bench'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
