"""A family's part of the launch, from the registry's data (lorakit/families/): its model-file
flags, the launch flags only it takes, and the flags it always passes."""

from __future__ import annotations

from lorakit.config.schema import TrainSpec

Flags = list[tuple[str, str | None]]  # (flag name without --, value or None for a switch)


def path_or_placeholder(value: object, key: str) -> str:
    """A model path, or a visible placeholder in a dry run where it is not set yet."""
    return str(value) if value is not None else f"<{key}>"


def model_flags(spec: TrainSpec) -> Flags:
    """Checkpoint and companion files (required ones always, a placeholder if unset; optional
    ones when set), then the family's own switches and values, then its fixed flags."""
    fam, m = spec.family, spec.model
    flags: Flags = []
    for f in fam.model_files:
        value = getattr(m, f.key)
        if f.required:
            flags.append((f.flag, path_or_placeholder(value, f"model.{f.key}")))
        elif value is not None:
            flags.append((f.flag, str(value)))
    for o in fam.option_flags:
        section, key = o.key.split(".")
        value = getattr(getattr(spec, section), key)
        if o.switch and value:
            flags.append((o.flag, None))
        elif not o.switch and value:
            flags.append((o.flag, str(value)))
    flags += list(fam.fixed_flags)
    return flags
