#!/usr/bin/env python3
"""A tiny stand-in for `kubectl kustomize`, for machines without kubectl: it renders exactly the
features deploy/ uses (resources, namespace, labels without selectors, configMapGenerator from
files, images, JSON 6902 patches with add/remove/replace/move) and refuses anything else.
.ci/validate-manifests.py uses kubectl when present and checks this renderer against it."""
import copy
import hashlib
import json
import pathlib
import sys

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "configMapGenerator", "images", "patches"}


def _pointer(doc, path):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    return parent, parts[-1]


def _remove(doc, path):
    parent, key = _pointer(doc, path)
    return parent.pop(int(key)) if isinstance(parent, list) else parent.pop(key)


def _add(doc, path, value):
    parent, key = _pointer(doc, path)
    if isinstance(parent, list):
        parent.append(value) if key == "-" else parent.insert(int(key), value)
    else:
        parent[key] = value


def json6902(doc, ops):
    for op in ops:
        kind = op["op"]
        if kind == "add":
            _add(doc, op["path"], copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, op["path"])
        elif kind == "replace":
            _remove(doc, op["path"])
            _add(doc, op["path"], copy.deepcopy(op["value"]))
        elif kind == "move":
            _add(doc, op["path"], _remove(doc, op["from"]))
        else:
            raise SystemExit(f"mini_kustomize: unsupported patch op {kind}")


def _containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def render(directory: pathlib.Path) -> list[dict]:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - SUPPORTED
    if unknown:
        raise SystemExit(f"mini_kustomize: {directory}: unsupported fields {sorted(unknown)}")
    docs: list[dict] = []
    for res in k.get("resources", []):
        path = directory / res
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    renames = {}
    for gen in k.get("configMapGenerator", []):
        data = {pathlib.Path(f).name: (directory / f).read_text() for f in gen["files"]}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{gen['name']}-{digest}"
        renames[gen["name"]] = name
        docs.insert(0, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    for doc in docs:
        for vol in doc.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            if "configMap" in vol and vol["configMap"]["name"] in renames:
                vol["configMap"]["name"] = renames[vol["configMap"]["name"]]
        for c in _containers(doc):
            for img in k.get("images", []):
                repo, _, _ = c["image"].partition(":")
                if repo == img["name"]:
                    c["image"] = f"{img.get('newName', repo)}:{img['newTag']}"
        if "namespace" in k:
            doc["metadata"]["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            if set(label) - {"pairs"}:
                raise SystemExit("mini_kustomize: only labels.pairs is supported")
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    for patch in k.get("patches", []):
        target = patch["target"]
        if set(patch) != {"target", "patch"}:
            raise SystemExit("mini_kustomize: only inline patches with a target are supported")
        for doc in docs:
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                json6902(doc, yaml.safe_load(patch["patch"]))
    return docs


if __name__ == "__main__":
    print(yaml.safe_dump_all(render(pathlib.Path(sys.argv[1])), sort_keys=False), end="")
