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
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m fastlstm {info,bench} [options]\n"
              "  info   version, build options, CPU features, threads, backends\n"
              "  bench  time fastlstm against the NumPy reference and installed peers "
              "(bench --help)")
        return 0
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
