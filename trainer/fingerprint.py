"""Print a fingerprint of what an install depends on, so launchers skip unchanged installs.

python -m trainer.fingerprint "<torch spec and index>" requirements.txt [more files…]
"""

import hashlib
import sys


def fingerprint(label: str, files: list[str]) -> str:
    digest = hashlib.sha256(f"{label}\n{sys.version}\n".encode())
    for name in files:
        with open(name, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


if __name__ == "__main__":
    print(fingerprint(sys.argv[1], sys.argv[2:]))
