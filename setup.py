"""Build hook for Bastion's one C extension: the PDQ multi-index (see src/bastion/matching/_pdqindex.c).

The extension is optional: without a C compiler Bastion installs and falls back to the slower NumPy index.
"""

import platform

from setuptools import Extension, setup

_flags = ["-O3", "-std=c99"]
if platform.machine().lower() in {"x86_64", "amd64"}:
    _flags.append("-mpopcnt")

setup(
    ext_modules=[
        Extension(
            "bastion.matching._pdqindex",
            sources=["src/bastion/matching/_pdqindex.c"],
            extra_compile_args=_flags,
            optional=True,
        )
    ]
)
