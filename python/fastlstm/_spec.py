"""The cell specs as Python sees them: read from the extension
(csrc/include/fastlstm/cell_spec.h states them once). Parameter names, shapes,
per-direction order and init of every cell come from here."""
from __future__ import annotations

import re

from . import _core

SPECS = _core.cell_specs()  # name -> {gates, gate_order, states, proj, peephole, params}


def stem(name: str) -> str:
    """The spec name of a parameter name: 'weight_ln_ih_l2_reverse' -> 'weight_ln_ih';
    a cell's names ('weight_ih') are their own."""
    m = re.fullmatch(r"(.+)_l\d+(?:_reverse)?", name)
    return name if m is None else m.group(1)


def suffixes(bidirectional: bool) -> tuple:
    """The name suffix of each direction."""
    return ("", "_reverse") if bidirectional else ("",)


def direction_params(cell: str, bias: bool, proj: bool, peephole: bool) -> list:
    """The cell's parameters a direction has with these options, in the order
    the kernels and the framework ops take them (each a dict of the spec)."""
    want = {"always": True, "bias": bias, "proj": proj, "peephole": peephole}
    return [p for p in SPECS[cell]["params"] if want[p["when"]]]


def direction_slots(cell: str, k: int, sfx: str, bias: bool, proj: bool,
                    peephole: bool) -> tuple:
    """One name per parameter of the cell's spec, in its order, or None where
    this direction has no such parameter: the kernels' per-direction tuple."""
    want = {"always": True, "bias": bias, "proj": proj, "peephole": peephole}
    return tuple(f"{p['name']}_l{k}{sfx}" if want[p["when"]] else None
                 for p in SPECS[cell]["params"])


def _extent(e, gates: int, I: int, H: int, P: int) -> int | None:
    return {None: None, "gh": gates * H, "h": H, "ho": P or H, "i": I, "p": P, "three": 3}[e]


def shape(p: dict, cell: str, I: int, H: int, P: int) -> tuple:
    """The shape of parameter p (a spec entry) in a layer of input size I."""
    g = SPECS[cell]["gates"]
    dims = (_extent(p["rows"], g, I, H, P), _extent(p["cols"], g, I, H, P))
    return tuple(d for d in dims if d is not None)


def layer_weight_names(cell: str, k: int, bidirectional: bool, bias: bool, proj: bool,
                       peephole: bool) -> list:
    """Layer k's parameter names in the order the framework ops take them:
    per direction, the spec's order."""
    return [f"{p['name']}_l{k}{sfx}" for sfx in suffixes(bidirectional)
            for p in direction_params(cell, bias, proj, peephole)]


def param_shapes(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, bidirectional: bool = False, proj_size: int = 0,
                 peephole: bool = False) -> dict:
    """Every parameter's name and shape, in registration order: torch's order
    (layer, direction, spec order), then the trailing ones (peepholes), which
    torch has not, in the same walk."""
    H, P = hidden_size, proj_size
    D = 2 if bidirectional else 1
    ps = direction_params(cell, bias, P > 0, peephole)
    walk = [(k, sfx, input_size if k == 0 else D * (P or H))
            for k in range(num_layers) for sfx in suffixes(bidirectional)]
    return {f"{p['name']}_l{k}{sfx}": shape(p, cell, I, H, P)
            for trailing in (False, True) for k, sfx, I in walk
            for p in ps if p["trailing"] == trailing}
