"""Experiment configs: TOML files validated against one schema, shipped with the package.

A config is plain data (nested dicts) with six sections plus a header::

    name = "fmnist_lt100_lpl"          # required; the run's name
    description = "..."                 # optional
    [paper]                             # optional: which cell of Tables I-X this run reproduces
    table = "IV"  row = "LA"  column = "100:1"
    [data]    name, root, seed, params, augment, loader, sampler, sampler_params, batch_size,
              eval_batch_size, drop_last
    [model]   name, params
    [loss]    name, params              # a registry name (``lpl_train.losses.build_loss``) and its arguments
    [optim]   name, lr, momentum, nesterov, weight_decay, l2_all, grad_clip
    [schedule] epochs, kind, milestones, gamma, factors, warmup_epochs, warmup_iters, warmup_start_factor
    [train]   seed, device, amp, channels_last, compile, compile_loss, progress, eval_every,
              loss_variation, loss_variation_every, capture, sync_batchnorm, tensorboard

:func:`validate_config` fills defaults and rejects unknown keys and wrong types with one message that names
the key, the value and what is allowed. ``--set section.key=value`` overrides are parsed as TOML values.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "SCHEMA",
    "apply_override",
    "config_dir",
    "dumps_toml",
    "find_config",
    "list_configs",
    "load_config",
    "schedule_warnings",
    "validate_config",
]


class ConfigError(ValueError):
    """A config is malformed: unknown key, wrong type, bad value or missing file."""


_REQUIRED = object()

# section -> key -> (allowed python types, default, allowed values or None)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any, tuple | None]]] = {
    "": {
        "name": ((str,), _REQUIRED, None),
        "description": ((str,), "", None),
    },
    "paper": {
        "table": ((str,), _REQUIRED, ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")),
        "row": ((str,), _REQUIRED, None),
        "column": ((str,), _REQUIRED, None),
    },
    "data": {
        "name": ((str,), _REQUIRED, None),
        "root": ((str, type(None)), None, None),
        "seed": ((int,), 0, None),
        "params": ((dict,), {}, None),
        "augment": ((str,), "auto", None),
        "loader": ((dict,), {}, None),
        "sampler": ((str,), "none", ("none", "class_aware")),
        "sampler_params": ((dict,), {}, None),
        "batch_size": ((int,), 128, None),
        "eval_batch_size": ((int,), 512, None),
        "drop_last": ((bool,), False, None),
    },
    "model": {
        "name": ((str,), _REQUIRED, None),
        "params": ((dict,), {}, None),
    },
    "loss": {
        "name": ((str,), _REQUIRED, None),
        "params": ((dict,), {}, None),
    },
    "optim": {
        "name": ((str,), "sgd", ("sgd", "adam", "adamw")),
        "lr": ((float, int), 0.1, None),
        "momentum": ((float, int), 0.9, None),
        "nesterov": ((bool,), False, None),
        "weight_decay": ((float, int), 0.0, None),
        "l2_all": ((float, int), 0.0, None),
        "grad_clip": ((float, int), 0.0, None),
    },
    "schedule": {
        "epochs": ((int,), _REQUIRED, None),
        "kind": ((str,), "step", ("step", "cosine", "constant")),
        "milestones": ((list,), [], None),
        "gamma": ((float, int), 0.1, None),
        "factors": ((list,), [], None),
        "warmup_epochs": ((int,), 0, None),
        "warmup_iters": ((int,), 0, None),
        "warmup_start_factor": ((float, int), 0.0, None),
    },
    "train": {
        "seed": ((int,), 0, None),
        "device": ((str,), "auto", None),
        "amp": ((str,), "auto", ("auto", "bf16", "fp16", "off")),
        "channels_last": ((str, bool), "auto", None),
        "compile": ((bool,), False, None),
        "compile_loss": ((bool,), False, None),
        "progress": ((bool,), True, None),
        "eval_every": ((int,), 1, None),
        "loss_variation": ((bool,), True, None),
        "loss_variation_every": ((int,), 10, None),
        "capture": ((str,), "auto", ("auto", "off", "graph", "compile")),
        "sync_batchnorm": ((bool,), False, None),
        "tensorboard": ((bool,), False, None),
    },
}

_OPTIONAL_SECTIONS = ("paper",)


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "float", str: "string", bool: "boolean", list: "array",
             dict: "table", type(None): "absent"}  # fmt: skip
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(where: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types)
    if isinstance(value, bool) and bool not in types:
        ok = False  # TOML true/false is not a number here
    if not ok:
        raise ConfigError(
            f"config key {where!r} has value {value!r} of type {type(value).__name__}; "
            f"expected {_type_names(types)}"
        )


def validate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a parsed config and return a new dict with every default filled in.

    Raises:
        ConfigError: on an unknown section or key, a missing required key, a value of the wrong type or
            outside its allowed range; the message names the key, the value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a table (dict), got {type(raw).__name__}")
    sections = [s for s in SCHEMA if s]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SCHEMA[""]:
            continue
        if key not in SCHEMA or key == "":  # "" is the header's slot in SCHEMA, not a section
            allowed = sorted(list(SCHEMA[""]) + sections)
            raise ConfigError(
                f"unknown config key {key!r}; allowed top-level keys: {', '.join(allowed)}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"config section [{key}] must be a table, got {value!r}")
    for section, keys in SCHEMA.items():
        if section == "":
            src = {k: v for k, v in raw.items() if k in keys}
        elif section not in raw and section in _OPTIONAL_SECTIONS:
            continue
        else:
            src = raw.get(section, {})
        dst: dict[str, Any] = {}
        for key, value in src.items():
            where = f"{section}.{key}" if section else key
            if key not in keys:
                raise ConfigError(
                    f"unknown config key {where!r}; allowed in "
                    f"{'[' + section + ']' if section else 'the header'}: {', '.join(sorted(keys))}"
                )
            types, _default, choices = keys[key]
            _check_type(where, value, types)
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"config key {where!r} has value {value!r}; allowed: {', '.join(map(str, choices))}"
                )
            dst[key] = copy.deepcopy(value)
        for key, (_types, default, _c) in keys.items():
            if key in dst:
                continue
            where = f"{section}.{key}" if section else key
            if default is _REQUIRED:
                raise ConfigError(f"config key {where!r} is required but missing")
            dst[key] = copy.deepcopy(default)
        if section == "":
            out.update(dst)
        else:
            out[section] = dst
    _check_values(out)
    return out


#: The largest float32: the optimiser's hyper-parameters meet float32 weights, and torch refuses a value
#: beyond it only when the first step runs.
_FLOAT32_MAX = 3.4028234663852886e38


def _positive(where: str, value: Any, *, zero_ok: bool = False) -> None:
    bad = value < 0 if zero_ok else value <= 0
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        need = "a finite number >= 0" if zero_ok else "a finite number > 0"
        raise ConfigError(f"config key {where!r} has value {value!r}; expected {need}")
    if where.startswith(("optim.", "schedule.")) and value > _FLOAT32_MAX:
        raise ConfigError(
            f"config key {where!r} has value {value!r}; expected at most {_FLOAT32_MAX:.4g} "
            "(the largest float32, in which the optimiser computes)"
        )


def _check_values(cfg: dict[str, Any]) -> None:
    if not cfg["name"] or any(c in cfg["name"] for c in "/\\ ") or set(cfg["name"]) == {"."}:
        raise ConfigError(f"config key 'name' has value {cfg['name']!r}; expected a non-empty name "
                          "without spaces or slashes, not '.' or '..'")  # fmt: skip
    for where, value in (
        ("data.batch_size", cfg["data"]["batch_size"]),
        ("data.eval_batch_size", cfg["data"]["eval_batch_size"]),
        ("schedule.epochs", cfg["schedule"]["epochs"]),
        ("train.eval_every", cfg["train"]["eval_every"]),
        ("train.loss_variation_every", cfg["train"]["loss_variation_every"]),
        ("optim.lr", cfg["optim"]["lr"]),
    ):
        _positive(where, value)
    for where, value in (
        ("data.seed", cfg["data"]["seed"]),
        ("train.seed", cfg["train"]["seed"]),
        ("optim.momentum", cfg["optim"]["momentum"]),
        ("optim.weight_decay", cfg["optim"]["weight_decay"]),
        ("optim.l2_all", cfg["optim"]["l2_all"]),
        ("optim.grad_clip", cfg["optim"]["grad_clip"]),
        ("schedule.warmup_epochs", cfg["schedule"]["warmup_epochs"]),
        ("schedule.warmup_iters", cfg["schedule"]["warmup_iters"]),
        ("schedule.warmup_start_factor", cfg["schedule"]["warmup_start_factor"]),
        ("schedule.gamma", cfg["schedule"]["gamma"]),
    ):
        _positive(where, value, zero_ok=True)
    # numpy's RandomState (long-tail subsampling) takes seeds below 2**32, torch.manual_seed below 2**64
    for where, top in (("data.seed", 2**32 - 1), ("train.seed", 2**64 - 1)):
        section, key = where.split(".")
        if cfg[section][key] > top:
            raise ConfigError(
                f"config key {where!r} has value {cfg[section][key]!r}; expected an integer in [0, {top}]"
            )
    # a momentum of 1 or more: SGD's velocity would never decay, the step would grow without bound
    if cfg["optim"]["momentum"] >= 1:
        raise ConfigError(
            f"config key 'optim.momentum' has value {cfg['optim']['momentum']!r}; expected a number in "
            "[0, 1)"
        )
    sched = cfg["schedule"]
    ms = sched["milestones"]
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms) or any(
        b <= a for a, b in zip(ms, ms[1:], strict=False)
    ):
        raise ConfigError(
            f"config key 'schedule.milestones' has value {ms!r}; expected strictly increasing "
            "positive integers (epochs)"
        )
    fs = sched["factors"]
    if fs:
        if not all(
            isinstance(f, int | float) and not isinstance(f, bool) and 0 <= f <= _FLOAT32_MAX
            for f in fs
        ):
            raise ConfigError(
                f"config key 'schedule.factors' has value {fs!r}; expected finite numbers >= 0 "
                f"(at most {_FLOAT32_MAX:.4g}, the largest float32)"
            )
        if len(fs) != len(ms):
            raise ConfigError(
                f"config key 'schedule.factors' has {len(fs)} entries but 'schedule.milestones' has "
                f"{len(ms)}; give one lr multiplier per milestone (or none, to use gamma)"
            )
    if sched["warmup_epochs"] and sched["warmup_iters"]:
        raise ConfigError("config keys 'schedule.warmup_epochs' and 'schedule.warmup_iters' are both set; "
                          "choose one")  # fmt: skip
    if sched["warmup_start_factor"] > 1:
        raise ConfigError(f"config key 'schedule.warmup_start_factor' has value "
                          f"{sched['warmup_start_factor']!r}; expected a number in [0, 1]")  # fmt: skip
    cl = cfg["train"]["channels_last"]
    if isinstance(cl, str) and cl != "auto":
        raise ConfigError(
            f"config key 'train.channels_last' has value {cl!r}; allowed: auto, true, false"
        )
    dev = cfg["train"]["device"]
    if not (dev in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:(0|[1-9][0-9]*)", dev)):
        raise ConfigError(
            f"config key 'train.device' has value {dev!r}; allowed: auto, cpu, cuda, cuda:N, mps"
        )
    for section in ("data", "model", "loss"):
        _check_plain(f"{section}.params", cfg[section]["params"])
    _check_plain("data.loader", cfg["data"]["loader"])
    _check_plain("data.sampler_params", cfg["data"]["sampler_params"])


def _check_plain(where: str, value: Any) -> None:
    """Params tables may nest tables and arrays of scalars, nothing else (so they survive a TOML copy)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(f"{where}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(f"{where}[{i}]", v)
    elif not isinstance(value, bool | int | float | str):
        raise ConfigError(
            f"config key {where!r} has value {value!r}; expected TOML scalars, arrays, tables"
        )


def schedule_warnings(cfg: dict[str, Any]) -> list[str]:
    """Events of a validated config that can never happen in its ``schedule.epochs`` (0-indexed epochs):
    a DRW switch (``loss.params.drw_epoch``), lr milestones or a warm-up at or past the last epoch, as
    after ``--epochs 2`` on a 200-epoch recipe; and SGD's momentum or Nesterov set for Adam/AdamW, which
    ignore them. The run is still valid; the messages say what it skips."""
    epochs = cfg["schedule"]["epochs"]
    out = []
    drw = cfg["loss"]["params"].get("drw_epoch")
    if isinstance(drw, int) and not isinstance(drw, bool) and drw >= epochs:
        out.append(
            f"loss.params.drw_epoch={drw} >= schedule.epochs={epochs}: DRW re-weighting never "
            "switches on in this run"
        )
    late = [m for m in cfg["schedule"]["milestones"] if m >= epochs]
    if late and cfg["schedule"]["kind"] == "step":
        out.append(
            f"schedule.milestones {late} are at or past schedule.epochs={epochs}: those lr steps never "
            "happen in this run"
        )
    if cfg["schedule"]["kind"] != "step" and (
        cfg["schedule"]["milestones"] or cfg["schedule"]["factors"]
    ):
        out.append(
            f"schedule.milestones {cfg['schedule']['milestones']} (and factors) are ignored by "
            f'schedule.kind={cfg["schedule"]["kind"]!r}; they apply only to kind = "step"'
        )
    if cfg["schedule"]["warmup_epochs"] > epochs:
        out.append(
            f"schedule.warmup_epochs={cfg['schedule']['warmup_epochs']} > schedule.epochs={epochs}: "
            "the run ends inside the warm-up"
        )
    o = cfg["optim"]
    # SGD's keys given to Adam/AdamW, which take neither (their beta1 is 0.9, momentum's default)
    unused = [k for k, v in (("momentum", o["momentum"] != 0.9), ("nesterov", o["nesterov"])) if v]
    if o["name"] != "sgd" and unused:
        out.append(
            " and ".join(f"optim.{k}={json.dumps(o[k])}" for k in unused)
            + f" {'is' if len(unused) == 1 else 'are'} not used by optim.name={json.dumps(o['name'])} "
            "(SGD only; the first-moment decay of Adam and AdamW stays 0.9)"
        )
    return out


# ----------------------------------------------------------------------------------------------- files
def config_dir() -> Path:
    """Folder of the configs shipped with the package."""
    return Path(str(resources.files("lpl_train") / "configs"))


def list_configs() -> list[str]:
    """Sorted names of the shipped configs (file stems)."""
    return sorted(p.stem for p in config_dir().glob("*.toml"))


def find_config(name_or_path: str | Path) -> Path:
    """Resolve a shipped config name (``-`` and ``_`` interchangeable) or a path to a TOML file."""
    if not isinstance(name_or_path, str | Path):
        raise TypeError(f"config must be a name or a path, got {type(name_or_path).__name__}")
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if p.is_dir():
            raise ConfigError(f"config {str(p)!r} is a folder, not a config file (.toml)")
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        return p
    stem = str(name_or_path).replace("-", "_")
    cand = config_dir() / f"{stem}.toml"
    if cand.is_file():
        return cand
    names = list_configs()
    close = [n for n in names if stem in n][:5] or difflib.get_close_matches(
        stem, names, n=5, cutoff=0.6
    )
    hint = f"; similar: {', '.join(close)}" if close else "; see `lpl-train list`"
    raise ConfigError(
        f"no config named {str(name_or_path)!r} (not a file, not a shipped config){hint}"
    )


#: Config keys a resumed or re-run run may change: they do not change what is computed (the description is
#: free text, which ``--epochs`` appends to).
VOLATILE_KEYS = (
    "description",
    "train.progress",
    "train.device",
    "train.capture",
    "train.tensorboard",
)


def schema_defaults() -> dict[str, Any]:
    """``section.key`` (``key`` for the top level) → default, for every key the config schema gives a
    default to (not the required ones, nor those whose default is None: TOML writes no None)."""
    return {f"{sec}.{key}" if sec else key: spec[1] for sec, keys in SCHEMA.items()
            for key, spec in keys.items() if spec[1] is not None and spec[1] is not _REQUIRED}  # fmt: skip


def computed_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys of a config (as stored in a run folder) that decide what its run computes: a schema
    key the config lacks (it was written before the key existed) stands for its default, which is how that
    run was trained; :data:`VOLATILE_KEYS` and a ``[run]`` provenance table are left out."""
    flat = flatten_keys(cfg)
    for k, v in schema_defaults().items():
        flat.setdefault(k, v)
    return {k: v for k, v in flat.items() if k not in VOLATILE_KEYS and not k.startswith("run.")}


def flatten_keys(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"dotted.key": value}`` (the names ``--set`` and error messages use)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_keys(v, key + "."))
        else:
            out[key] = v
    return out


def parse_value(text: str) -> Any:
    """Parse ``text`` as a TOML value (``3``, ``0.1``, ``true``, ``[1, 2]``, ``"x"``); bare words, and text
    that is more than one value (``1\nw = 2`` would set a second key), are strings."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return doc["v"] if doc.keys() == {"v"} else text


def apply_override(cfg: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Return a copy of the raw ``cfg`` with ``assignment`` (``"section.key=value"``, nested with dots) applied.

    The value is parsed as TOML; the result is not validated here (call :func:`validate_config`).
    """
    if not isinstance(assignment, str) or "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    path, text = assignment.split("=", 1)
    keys = [k.strip() for k in path.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"override {assignment!r} has an empty key; expected section.key=value")
    out = copy.deepcopy(cfg)
    node = out
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {assignment!r}: {k!r} is a value, not a table")
        node = nxt
    node[keys[-1]] = parse_value(text.strip())
    return out


def load_config(
    name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (), epochs: int | None = None
) -> dict[str, Any]:
    """Read a config (shipped name or path), apply ``--set`` overrides and ``--epochs``, validate it."""
    path = find_config(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"position {exc.start}); a config is a TOML file"
        ) from None
    if isinstance(raw.get("methods"), list) and isinstance(raw.get("datasets"), dict):
        raise ConfigError(
            f"{str(path)!r} is a study file (datasets x methods x grids), not a run config: run it with "
            f"`lpl-train study {path}`"
        )
    for ov in overrides:
        raw = apply_override(raw, ov)
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        schedule = raw.setdefault("schedule", {})
        if isinstance(schedule, dict):  # else validate_config names the section that is not a table
            recipe = schedule.get("epochs")
            schedule["epochs"] = epochs
            # say what actually runs
            if recipe != epochs and isinstance(raw.get("description"), str):
                raw["description"] += (
                    f" [run for {epochs} epochs (--epochs) instead of the recipe's {recipe}]"
                )
    return validate_config(raw)


# ------------------------------------------------------------------------------------------- writing
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            return {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan")
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} of type {type(v).__name__} as TOML")


def _toml_string(s: str) -> str:
    # JSON's escapes are TOML's, but JSON leaves DEL (U+007F) bare, which a TOML string may not hold
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(k: str) -> str:
    # a bare key is ASCII letters, digits, _ and - (str.isalnum() also takes é, ², ١)
    bare = k and k.isascii() and k.replace("_", "").replace("-", "").isalnum()
    return k if bare else _toml_string(k)


def dumps_toml(cfg: dict[str, Any]) -> str:
    """Write a config (header scalars, then one ``[section]`` per table) as TOML that parses back equal."""
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in cfg.items()
        if not isinstance(v, dict) and v is not None
    ]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{_toml_key(k)}]")
            lines.extend(
                f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None
            )
    return "\n".join(lines) + "\n"
