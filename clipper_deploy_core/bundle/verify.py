"""Read and verify a bundle without loading it: no plugin and no unpickler is imported here, so the processes
that only check bundles (the cluster process, the managers) never import cloudpickle."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..exceptions import BundleError, BundleIntegrityError, ClipperException
from .manifest import FUNC_NAME, MANIFEST_NAME, Manifest, bundle_digest, sha256_file


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` except the manifest, keyed by posix relative path."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            raise BundleError(f"bundle file {p.relative_to(root)} is a symlink; bundles hold regular files only")
        if p.is_file() and p != root / MANIFEST_NAME:
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


def read_manifest(bundle_dir: Path | str) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a clipper-deploy bundle: {MANIFEST_NAME} is missing")
    return Manifest.from_json(path.read_text(), str(path))


def verify_bundle(bundle_dir: Path | str, expected_digest: str | None = None,
                  expected_model: tuple[str, str] | None = None) -> Manifest:
    """Check the manifest's digest (when known), that it holds ``expected_model`` (name, version) when
    given, and every file's sha256; return the manifest."""
    root = Path(bundle_dir)
    manifest = read_manifest(root)
    if expected_model is not None and (manifest.name, manifest.version) != expected_model:
        raise BundleError(f"bundle is {manifest.name}:{manifest.version}, not {':'.join(expected_model)}")
    if expected_digest is not None and bundle_digest(root) != expected_digest:
        raise BundleIntegrityError(f"bundle {root}: manifest digest {bundle_digest(root)} does not match the "
                                   f"registered digest {expected_digest}; the bundle was changed after deploy")
    actual = hash_tree(root)
    missing = sorted(set(manifest.files) - set(actual))
    extra = sorted(set(actual) - set(manifest.files))
    changed = sorted(f for f in manifest.files if f in actual and actual[f] != manifest.files[f])
    if missing or extra or changed:
        parts = [f"{label}: {', '.join(files)}" for label, files in
                 (("missing", missing), ("not in manifest", extra), ("sha256 mismatch", changed)) if files]
        raise BundleIntegrityError(f"bundle {root} failed its integrity check ({'; '.join(parts)}); "
                                   f"it was tampered with or truncated, redeploy it")
    if FUNC_NAME not in manifest.files:
        raise BundleIntegrityError(f"bundle {root} has no {FUNC_NAME}")
    return manifest


def validate_pkgs(pkgs: Sequence[str] | None) -> list[str]:
    """``pkgs_to_install`` as clean requirement strings: a package name with optional extras, version
    specifiers and markers (PEP 508). Options, paths and URLs are refused: each could make pip run code
    from somewhere other than the package index."""
    if pkgs is None or (isinstance(pkgs, (list, tuple)) and not pkgs):
        return []
    from packaging.requirements import InvalidRequirement, Requirement  # 0.1 s or more: only when there are pkgs

    if isinstance(pkgs, str) or not all(isinstance(p, str) and p.strip() for p in pkgs):
        raise ClipperException(f"pkgs_to_install must be a list of non-empty strings, got {pkgs!r}")
    for p in pkgs:
        # Each entry becomes one pip argument (never a shell word); pip reads a leading '-' as an option.
        if p.strip().startswith("-"):
            raise ClipperException(f"pkgs_to_install entry {p!r} looks like a pip option; "
                                   f"give requirement specifiers only")
        try:
            req = Requirement(p)
        except InvalidRequirement as e:
            raise ClipperException(f"pkgs_to_install entry {p!r} is not a package name with version specifiers "
                                   f"(paths and URLs are refused): {e}") from None
        if req.url:
            raise ClipperException(f"pkgs_to_install entry {p!r} names a URL; give a package name and version "
                                   f"specifiers only")
    return [p.strip() for p in pkgs]
