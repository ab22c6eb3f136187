"""Download a model version's files from the model store and check their sha256; exits non-zero on any miss.

Runs inside the inference pod's init container as `python3 -c <this file> BASE_URL TARGET FILES_JSON`, with
the server image's own Python: standard library only, no code of ours baked into an image.
"""

import hashlib
import json
import os
import sys
import time
import urllib.request


def fetch(base_url: str, target: str, files: list[dict[str, str]], attempts: int = 5) -> None:
    for artifact in files:
        path = artifact["path"]
        destination = os.path.join(target, path)
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                digest = _download(f"{base_url}/{path}", destination + ".part")
                break
            except OSError as error:
                if attempt == attempts:
                    raise SystemExit(f"{path}: {error}") from None
                time.sleep(min(2**attempt, 30))
        expected = artifact.get("sha256")
        if expected and digest != expected:
            os.remove(destination + ".part")
            raise SystemExit(f"{path}: sha256 {digest} does not match the configured {expected}")
        os.replace(destination + ".part", destination)
        print(f"fetched {path}", flush=True)


def _download(url: str, destination: str) -> str:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    fetch(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
