"""Download a model version's files from the model store and check their sha256.

Runs inside the inference pod's init container as `python3 -c <this file> BASE_URL TARGET FILES_JSON DEADLINE`,
with the server image's own Python: standard library only, no code of ours baked into an image.

On a first deploy the weights may not be in the store yet (an import job still copying, or a push still
running): a file that is missing, or a store that does not answer yet, is waited for with backoff, saying
what is missing, until DEADLINE seconds have passed. A file whose sha256 differs from the configured one
fails at once: waiting would not change it. A file already fetched by an earlier attempt is kept when it
matches, so a restarted pod does not download gigabytes again.
"""

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

FIRST_WAIT_SECONDS = 2
MAX_WAIT_SECONDS = 30


class Corrupt(Exception):
    """The file is there but is not the configured one."""


def fetch(
    base_url: str,
    target: str,
    files: list[dict[str, object]],
    deadline_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    give_up = clock() + deadline_seconds
    for artifact in files:
        path = str(artifact["path"])
        expected = artifact.get("sha256")
        destination = os.path.join(target, path)
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        if os.path.exists(destination) and _matches(destination, expected, artifact.get("size")):
            log(f"kept {path} (already fetched)")
            continue
        wait = FIRST_WAIT_SECONDS
        while True:
            try:
                digest = _download(f"{base_url}/{path}", destination + ".part")
                break
            except OSError as error:
                reason = _reason(error)
                if clock() + wait > give_up:
                    raise SystemExit(
                        f"{path}: {reason}; gave up after {deadline_seconds:.0f}s. Put the file in the model store "
                        "(`llm-mesh models push`, or the version's import job) and the pod retries."
                    ) from None
                log(f"waiting for {path}: {reason}; next try in {wait}s")
                sleep(wait)
                wait = min(wait * 2, MAX_WAIT_SECONDS)
        if expected and digest != expected:
            os.remove(destination + ".part")
            raise SystemExit(f"{path}: sha256 {digest} does not match the configured {expected}")
        os.replace(destination + ".part", destination)
        log(f"fetched {path}")


def _reason(error: OSError) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}" + (" (not in the model store yet)" if error.code == 404 else "")
    if isinstance(error, urllib.error.URLError):
        return f"model store not reachable ({error.reason})"
    return str(error)


def _matches(path: str, sha256: object, size: object) -> bool:
    if size is not None and os.path.getsize(path) != size:
        return False
    if sha256 is None:
        return size is not None
    return _sha256(path) == sha256


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, destination: str) -> str:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    fetch(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]))
