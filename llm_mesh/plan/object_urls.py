"""`s3://bucket/prefix` and `gs://bucket/prefix` as their parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectUrl:
    scheme: str  # "s3" or "gs"
    bucket: str
    prefix: str  # "" or ending in "/": a folder of objects

    @classmethod
    def parse(cls, url: str) -> ObjectUrl:
        scheme, _, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        return cls(scheme, bucket, f"{prefix}/" if prefix else "")

    def key(self, path: str) -> str:
        return f"{self.prefix}{path}"
