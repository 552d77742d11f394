"""Images: the content store (OCI layout), manifests, layer unpacking, rootfs mounts and imports.

Also home of the registry client (`registry`, `auth`, `reference`).
"""
