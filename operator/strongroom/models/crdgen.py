"""Write or check the CRDs in crds/: `python -m strongroom.models.crdgen [--check] DIR`."""

import argparse
import sys
from pathlib import Path

import yaml

from .crd import RESOURCES, Resource, custom_resource_definition

HEADER = "# Generated from operator/strongroom/models by scripts/gen-crds; do not edit.\n"
# Words YAML 1.1 reads as booleans, which PyYAML writes bare but kubectl's YAML parser
# turns into true/false: a bare `y:` property (an EC JWK's y) became a property named
# "true", and the API server pruned every `y` from Key status.
YAML11_BOOLEANS = frozenset(
    word
    for base in ("y", "yes", "n", "no", "on", "off", "true", "false")
    for word in (base, base.capitalize(), base.upper())
)


class _CrdDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings other YAML parsers read as booleans."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value in YAML11_BOOLEANS:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_CrdDumper.add_representer(str, _represent_str)


def file_name(resource: Resource) -> str:
    return f"{resource.crd_name}.yaml"


def render(resource: Resource) -> str:
    body = yaml.dump(
        custom_resource_definition(resource),
        Dumper=_CrdDumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return HEADER + body


def rendered() -> dict[str, str]:
    """Every CRD file's name and content."""
    return {file_name(resource): render(resource) for resource in RESOURCES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, help="where the CRD files are (crds/)")
    parser.add_argument(
        "--check", action="store_true", help="only say whether the files are up to date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = args.directory / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print(f"stale CRDs: {', '.join(stale)}; run scripts/gen-crds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
