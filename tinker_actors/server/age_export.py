"""age encryption of external checkpoints (``save_weights_external(..., age_encryption_recipients=...)``).

Each exported file is encrypted to every recipient (``age1...`` X25519 keys or
``ssh-ed25519``/``ssh-rsa`` public keys) with `pyrage` and stored as
``<file>.age``; the plain file is removed, so only a recipient's identity can
read the weights. pyrage is imported when encryption is asked for: a server
without it refuses the request with a 400 that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .http import bad

__all__ = ["MAX_RECIPIENTS", "parse_recipients", "encrypt_dir"]

MAX_RECIPIENTS = 10


def parse_recipients(recipients: list[str]) -> list[Any]:
    """The recipients as pyrage objects; a 400 names the first bad one."""
    if len(recipients) > MAX_RECIPIENTS:
        raise bad(f"age_encryption_recipients: at most {MAX_RECIPIENTS}, got {len(recipients)}")
    try:
        import pyrage
    except ImportError:
        raise bad("age_encryption_recipients: this server has no age support (install pyrage)") from None
    parsed = []
    for i, text in enumerate(recipients):
        try:
            if text.startswith("age1"):
                parsed.append(pyrage.x25519.Recipient.from_str(text))
            elif text.startswith("ssh-"):
                parsed.append(pyrage.ssh.Recipient.from_str(text))
            else:
                raise ValueError("not an age1... or ssh- public key")
        except Exception as exc:  # pyrage raises its own RecipientError, or ValueError
            raise bad(f"age_encryption_recipients[{i}]: {str(exc)[:120]}") from None
    return parsed


def encrypt_dir(directory: Path, recipients: list[Any]) -> None:
    """Replace every file of ``directory`` by its age encryption ``<name>.age``."""
    import pyrage

    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink()):
        target = path.with_name(path.name + ".age")
        target.write_bytes(pyrage.encrypt(path.read_bytes(), recipients))
        path.unlink()
