"""How TensorRT finds a plugin: by (name, version, namespace)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class PluginId:
    name: str
    version: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.namespace}::{self.name} v{self.version}" if self.namespace else f"{self.name} v{self.version}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "namespace": self.namespace}

    @classmethod
    def from_dict(cls, entry: dict) -> "PluginId":
        return cls(entry["name"], entry["version"], entry.get("namespace", ""))
