"""Read a file a user already has and detect what it is: a kohya_ss GUI JSON, an sd-scripts
``--config_file`` TOML, or text holding an ``accelerate launch … *_train_network.py …`` line.
Every failure is a ConfigError naming the file and the fix (exit 2), never a traceback."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from lorakit import families
from lorakit.convert import _toml
from lorakit.convert.flags import is_dest, parse_flags
from lorakit.convert.gui import FLUX_SCRIPT, GUI_SCRIPTS, TRAINS, read_gui
from lorakit.convert.model import ImportRefused, Row, SdArgs, Source, bad_file

MAX_BYTES = 4 * 1024 * 1024
SCRIPTS = {script: word for word, script in GUI_SCRIPTS.items()}  # script → the GUI's word for its model line
REFUSED_SCRIPTS = {
    "train_network.py": "an SD 1.x/2.x LoRA launch (train_network.py)",
    "train_db.py": "an SD 1.x/2.x DreamBooth launch (train_db.py)",
    "fine_tune.py": "an SD 1.x/2.x fine-tune launch (fine_tune.py)",
    "sdxl_train.py": "an SDXL full fine-tune launch (sdxl_train.py)",
    "sd3_train.py": "an SD 3 full fine-tune launch (sd3_train.py)",
    "train_textual_inversion.py": "a textual-inversion launch",
    "sdxl_train_textual_inversion.py": "a textual-inversion launch",
    "flux_train.py": "a Flux.1 fine-tune launch",
}
_CONTINUATION = re.compile(r"[ \t]*(\\|\^|`)[ \t]*\r?\n")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\")
_UNRESOLVED = re.compile(r"\$\(|\$\{?[A-Za-z_]|%[A-Za-z_]\w*%")


def read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise bad_file(
                path, "is larger than 4 MiB: not a training config", "import the GUI JSON, TOML or launch script"
            )
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise bad_file(path, "no such file", "check the path") from None
    except IsADirectoryError:
        raise bad_file(
            path, "is a folder", "give the config file itself (a .json, .toml or a script with the launch line)"
        ) from None
    except UnicodeDecodeError:
        raise bad_file(path, "is not text (UTF-8)", "import the GUI JSON, TOML or launch script") from None
    except OSError as exc:
        raise bad_file(path, f"cannot be read ({exc.strerror or exc})", "check its permissions") from None


def read_source(path: Path, family: str | None = None) -> Source:
    """Detect the kind of ``path`` and parse it into sd-scripts arguments."""
    text = read_text(path)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise bad_file(
                path,
                f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); truncated or edited by hand?",
                "save it again from the kohya_ss GUI",
            ) from None
        if not isinstance(data, dict):
            raise bad_file(
                path,
                f"holds a JSON {type(data).__name__}, not a GUI config (an object of settings)",
                "import a config saved from the GUI's LoRA tab",
            )
        if data and all(isinstance(v, dict) for v in data.values()):
            raise ImportRefused([f"{path}: a metadata file (every value is an object), not a training config"])
        source = read_gui(data, path)
    elif path.suffix.lower() == ".toml" or _looks_toml(stripped):
        source = read_toml(path, text, family)
    elif "_train" in text and ".py" in text:
        source = read_launch_line(path, text, family)
    else:
        raise bad_file(
            path,
            "is not a kohya_ss GUI JSON, an sd-scripts TOML nor a launch line (no *_train_network.py found)",
            "import the GUI's saved .json, the config_lora-*.toml next to your LoRA, "
            "or a script with the accelerate launch line",
        )
    return _family(source, family, path)


def _looks_toml(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    return bool(re.match(r"\[[\w.\s\"-]+\]\s*$|[\w\"-]+\s*=", first.strip()))


def _family(source: Source, family: str | None, path: Path) -> Source:
    """The GUI word of ``source`` (its script) → a lorakit family: the registry's one family
    of that script, or, when several share it (SD 3.5), --family or the checkpoint's name."""
    script = GUI_SCRIPTS[source.family]
    candidates = [f for f in families.FAMILIES.values() if f.script == script]
    if len(candidates) == 1:
        if family is not None and family != candidates[0].name:
            raise ImportRefused(
                [f"{path}: this is a {candidates[0].line} config ({script}); --family {family} does not fit it"]
            )
        source.family = candidates[0].name
        return source
    if family is not None and families.get(family).script == script:
        source.family = family
        return source
    ckpt = str(source.args.values.get("pretrained_model_name_or_path", "")).lower()
    for fam in candidates:
        if fam.checkpoint_word and fam.checkpoint_word in Path(ckpt).name:
            source.family = fam.name
            source.notes.append(f"{fam.line} {fam.checkpoint_word}: from the checkpoint's file name")
            return source
    sizes = " or ".join(f.checkpoint_word for f in candidates)
    raise ImportRefused(
        [f"{path}: an SD 3 config, and nothing in it says {candidates[0].line} {sizes}"],
        fix="run the import again with " + " or ".join(f"--family {f.name}" for f in candidates),
    )


def read_toml(path: Path, text: str, family: str | None) -> Source:
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise bad_file(
            path,
            f"is not valid TOML ({exc}); truncated or edited by hand?",
            "fix the line named, or import the GUI's JSON",
        ) from None
    if "datasets" in data:
        raise ImportRefused(
            [f"{path}: an sd-scripts dataset config (--dataset_config), not a training config"],
            fix="import the training TOML (--config_file) or the launch line instead; "
            "lorakit reads the dataset folder itself",
        )
    if {"settings", "server", "folders"} & data.keys() and "pretrained_model_name_or_path" not in data:
        raise ImportRefused([f"{path}: the kohya_ss GUI's own settings file (config.toml), not a training config"])
    flat: dict[str, Any] = {}
    for key, value in data.items():  # sd-scripts flattens every table (train_util.py read_config_from_file)
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    fam = _toml_family(flat, path, family)
    script = GUI_SCRIPTS[fam]
    args = SdArgs()
    rows: list[Row] = []
    for key, value in flat.items():
        args.set(key, value, key)
    for key in list(args.values):
        if (
            not is_dest(script, key)
            and key not in ("epoch", "noise_offset_type", "lowvram")
            and not key.startswith("loraplus_")
        ):
            rows.append(Row(key, args.pop(key), "dropped", f"not an argument of {script}: sd-scripts ignores it"))
    return Source("sd-scripts-toml", fam, args, rows)


def _toml_family(flat: dict[str, Any], path: Path, family: str | None) -> str:
    if flat.get("v2") or flat.get("v_parameterization"):
        raise ImportRefused([f"{path}: an SD 2.x config (v2 / v_parameterization); {TRAINS}"])
    if family is not None and families.get(family).script in SCRIPTS:
        return SCRIPTS[families.get(family).script]
    # Flux.1: its network modules, or the autoencoder only flux_train_network.py takes
    flux_modules = {f.lora_module for f in families.FAMILIES.values() if f.script == FLUX_SCRIPT}
    if flat.get("network_module") in flux_modules | {"networks.oft_flux"} or "ae" in flat:
        return SCRIPTS[FLUX_SCRIPT]
    if flat.get("network_module") == "networks.lora_sd3" or {"clip_g", "t5xxl"} & flat.keys():
        return "sd3"
    return "sdxl"


def split_command(text: str) -> list[list[str]]:
    """The command lines in ``text`` (comments and continuations handled), each as tokens."""
    joined = _CONTINUATION.sub(" ", text)
    out: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "REM ", "rem ", "::")):
            continue
        if _WINDOWS_PATH.search(line):  # "D:\x": backslashes are path separators, not escapes
            line = line.replace("\\", "\\\\")
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ConfigErrorLine(line, str(exc)) from None
        out.append(tokens)
    return out


class ConfigErrorLine(ValueError):
    def __init__(self, line: str, why: str) -> None:
        super().__init__(f"{why}: {line[:80]}")


def read_launch_line(path: Path, text: str, family: str | None) -> Source:
    try:
        commands = split_command(text)
    except ConfigErrorLine as exc:
        raise bad_file(path, f"a line cannot be split into arguments ({exc})", "close the quote on that line") from None
    launches = []
    for tokens in commands:
        for i, token in enumerate(tokens):
            name = Path(token.replace("\\", "/")).name
            if name.endswith(".py") and (name in SCRIPTS or name in REFUSED_SCRIPTS or "train" in name):
                launches.append((name, tokens[i + 1 :]))
                break
    if not launches:
        raise bad_file(
            path,
            "holds no sd-scripts training command (no *_train_network.py)",
            "import a script with the accelerate launch line",
        )
    if len(launches) > 1:
        raise bad_file(
            path,
            f"holds {len(launches)} training launches ({', '.join(n for n, _ in launches)})",
            "put the one launch to import in its own file (lorakit imports one run at a time)",
        )
    script, tokens = launches[0]
    if script in REFUSED_SCRIPTS or script not in SCRIPTS:
        what = REFUSED_SCRIPTS.get(script, f"a launch of {script}")
        raise ImportRefused([f"{path}: {what}; {TRAINS}"])
    bad = [t for t in tokens if _UNRESOLVED.search(t)]
    if bad:
        raise bad_file(
            path,
            f"uses shell variables lorakit cannot resolve ({', '.join(bad[:3])})",
            "replace the variables with their values (or import the printed command) and import again",
        )
    parsed, problems = parse_flags(script, tokens)
    args = SdArgs()
    rows: list[Row] = [Row(script, "", "dropped", f"the training script: family {SCRIPTS[script]}")]
    config_file = next((f.value for f in parsed if f.dest == "config_file"), None)
    notes: list[str] = []
    if config_file:  # the TOML first, the command line's flags override it (train_util.py)
        toml_path = Path(str(config_file))
        if toml_path.suffix != ".toml":
            toml_path = toml_path.with_name(toml_path.name + ".toml")
        if not toml_path.is_absolute():
            toml_path = path.parent / toml_path
        inner = read_toml(toml_path, read_text(toml_path), family)
        args, rows = inner.args, rows + inner.rows
        notes.append(f"read --config_file {toml_path}")
    for flag in parsed:
        if flag.dest != "config_file":
            args.set(flag.dest, flag.value, flag.token)
    for problem in problems:
        rows.append(Row("(command line)", "", "unknown", problem))
    return Source("launch-line", SCRIPTS[script], args, rows, notes)
