"""Writes a Wasm module as an OCI image layout that Istio's WasmPlugin (and any OCI registry
client such as skopeo, crane or oras) can use: the "compat" variant of the Wasm image
specification, a one-layer image whose layer holds `plugin.wasm`, with the manifest annotation
`module.wasm.image/variant: compat`.

    python packaging/oci_layout.py dist/acp_filter.wasm dist/oci --tag 0.1.0

The layout is reproducible: the same module always gives the same digests (fixed timestamps,
no host details). Push it with e.g. `skopeo copy oci:dist/oci:0.1.0 docker://REGISTRY/acp-filter:0.1.0`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EPOCH = "1970-01-01T00:00:00Z"


def _layer(module: bytes) -> tuple[bytes, bytes]:
    """(gzip-compressed tar, uncompressed tar) of one file `plugin.wasm`, owner root, mode 0644, mtime 0."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime = len(module), 0o644, 0
        tar.addfile(info, io.BytesIO(module))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue(), raw.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layout(module_path: Path, out: Path, tag: str) -> str:
    """Writes the layout to `out` (replacing it); returns the manifest digest."""
    module = module_path.read_bytes()
    layer, uncompressed = _layer(module)
    config = json.dumps({
        "created": EPOCH, "architecture": "wasm", "os": "wasip1",
        "config": {"Labels": {"org.opencontainers.image.title": module_path.name}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(uncompressed)]},
        "history": [{"created": EPOCH, "created_by": "packaging/oci_layout.py"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": _digest(layer), "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
        "annotations": {"module.wasm.image/variant": "compat"},
    }, sort_keys=True).encode()
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / _digest(blob).removeprefix("sha256:")).write_bytes(blob)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": _digest(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (out / "index.json").write_text(json.dumps(index, sort_keys=True))
    return _digest(manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    print(write_layout(args.module, args.out, args.tag))


if __name__ == "__main__":
    main()
