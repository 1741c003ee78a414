#!/usr/bin/env python3
"""Writes a single-layer OCI image archive FROM scratch, ready for `ctr images import`.

The real node cannot pull anything, so its images (pause, probe, CoreDNS) are a static binary
plus a few empty directories, packed here byte for byte reproducibly (fixed mtimes, owners and
order): the same inputs give the same image digest.

usage: oci_image.py --name localhost/probe:1 --out probe.tar --file SRC:/probe
                    [--dir /tmp:1777] [--user 65532:65532] --entrypoint /probe [ARG...]
"""
import argparse
import hashlib
import io
import json
import sys
import tarfile


def tar_layer(files, dirs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for path, mode in dirs:
            entries.append((path.strip("/"), None, mode))
        for src, dst in files:
            entries.append((dst.strip("/"), src, 0o755))
        # parents first, then by name: a deterministic order
        for name, src, mode in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if src is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                with open(src, "rb") as f:
                    data = f.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="image reference, e.g. localhost/probe:1")
    ap.add_argument("--out", required=True, help="archive to write")
    ap.add_argument("--file", action="append", default=[], help="SRC:DST, a file in the image")
    ap.add_argument("--dir", action="append", default=[], help="PATH[:MODE], an empty directory")
    ap.add_argument("--user", default="", help="USER of the image config (empty: root)")
    ap.add_argument("--entrypoint", nargs=argparse.REMAINDER, required=True)
    args = ap.parse_args()

    if ":" not in args.name.rsplit("/", 1)[-1]:
        sys.exit(f"oci_image.py: --name {args.name!r} needs a tag")
    files = []
    for spec in args.file:
        src, sep, dst = spec.partition(":")
        if not sep or not dst.startswith("/"):
            sys.exit(f"oci_image.py: --file {spec!r}: expected SRC:/absolute/path")
        files.append((src, dst))
    dirs = []
    for spec in args.dir:
        path, _, mode = spec.partition(":")
        dirs.append((path, int(mode, 8) if mode else 0o755))

    layer = tar_layer(files, dirs)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": args.entrypoint, "Env": ["PATH=/usr/local/bin:/"]},
        "rootfs": {"type": "layers", "diff_ids": [blob(layer)]},
    }
    if args.user:
        config["config"]["User"] = args.user
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob(layer),
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": blob(manifest_bytes),
                "size": len(manifest_bytes),
                # containerd takes the full reference from this annotation
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    members = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
    ]
    for data in (layer, config_bytes, manifest_bytes):
        members.append(("blobs/sha256/" + blob(data)[7:], data))
    with tarfile.open(args.out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = 0o644
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    print(blob(manifest_bytes))


if __name__ == "__main__":
    main()
