"""Free text on the command line is taken as typed: predict's `text=`, `input=` and `output=`, the `ckpt=` file of
predict and eval, a run's `+meta.<name>` notes.

Hydra reads every override through its grammar and then through OmegaConf, which is right for settings and wrong for
text a person wrote: `true` becomes True, `1e3` becomes 1000.0, `null` becomes nothing, a comma makes a sweep, an
apostrophe or a non-ASCII letter is a parse error, and `${...}` is an interpolation, resolved whenever the value is
read (`text="a ${x} film"` ends in a traceback; `${oc.env:HOME}` silently becomes the home directory). So before
Hydra sees the command line, each free-text value that Hydra would not read back as itself is rewritten into the one
spelling that Hydra and OmegaConf read back as exactly that text.

A value the user quoted for Hydra (`'text="ein Hund läuft"'`, as earlier versions needed) means what Hydra reads
inside the quotes; any other value means every character as typed.
"""

from __future__ import annotations

import re

# Per command, the settings whose values are text a person wrote: exact keys, and groups (ending in ".") whose every
# key is such text. (Elsewhere such a key is no setting, and Hydra's refusal of it is the message.) Left to Hydra:
# settings where `null` means "none" (ckpt_path, a task's optional files) and Hydra's own directories, whose
# defaults are interpolations (`${now:...}`).
FREE_TEXT = {
    "src.predict": ("text", "input", "output", "ckpt", "target", "attention"),
    "src.eval": ("ckpt",),
    "src.analyze": ("ckpt", "out"),
    "src.run": ("meta.",),
}

_OVERRIDE = re.compile(r"(\+{0,2})([\w.-]+)=(.*)", re.DOTALL)  # `key=value`, `+key=value`, `++key=value`


def is_free_text(command: str, key: str) -> bool:
    names = FREE_TEXT.get(command, ())
    return any(key.startswith(name) if name.endswith(".") else key == name for name in names)


def hydra_literal(text: str) -> str:
    """`text` written as an override value that Hydra and OmegaConf read back as exactly `text`.

    Two layers of escaping, inside out. OmegaConf: `${` starts an interpolation unless a backslash precedes it, and
    backslashes right before `${` escape each other, so a run of n of them becomes 2n, plus one for the `${`.
    Hydra: in single quotes, a quote is escaped with a backslash, and backslashes right before a quote (or before
    the closing one) escape each other, so such a run is doubled; all other backslashes are plain characters."""
    for_omegaconf = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    quotes_escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", for_omegaconf)
    return "'" + re.sub(r"(\\+)\Z", lambda m: m.group(1) * 2, quotes_escaped) + "'"


def _as_hydra_reads_it(key: str, value: str) -> object:
    """What Hydra's override grammar makes of `key=value` before OmegaConf (a str, a number, a list, a sweep), or
    None where it cannot parse it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"{key}={value}").value()
    except Exception:  # Hydra's parse errors come in several types; any of them means "not as typed"
        return None


def meant_text(key: str, value: str) -> str:
    """The text a user means by `key=value`: inside quotes, what Hydra and OmegaConf read there, escapes included
    (`\\${` is `${`), but never interpolated; otherwise the value as typed, character for character."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        read = _as_hydra_reads_it(key, value)
        if isinstance(read, str):
            # OmegaConf's escapes, undone as hydra_literal makes them: n backslashes before `${` stand for n // 2
            # (an odd one escaped the `${`; with an even count it was an interpolation, taken here as text).
            return re.sub(r"(\\+)\$\{", lambda m: "\\" * (len(m.group(1)) // 2) + "${", read)
    return value


def free_text_as_typed(command: str, argv: list[str]) -> list[str]:
    """`command`'s command line (src.run, src.eval, src.predict) with every free-text override that Hydra would not
    read back as its text rewritten so that it does; everything else (settings, flags such as -m) unchanged."""
    rewritten = []
    for argument in argv:
        match = _OVERRIDE.fullmatch(argument)
        if match is not None and is_free_text(command, match.group(2)):
            plus, key, value = match.groups()
            text = meant_text(key, value)
            if "${" in text or _as_hydra_reads_it(key, value) != text:
                argument = f"{plus}{key}={hydra_literal(text)}"
        rewritten.append(argument)
    return rewritten
