def fingerprint(value: str) -> str:
    """What may be shown of a secret: at most its last 4 characters, and nothing of a short one."""
    value = value.strip()
    return value[-4:] if len(value) >= 16 else ""
