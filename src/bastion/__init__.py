"""Bastion: find, review and remove terrorist and violent extremist content (TVEC).

Package map (data flows top to bottom; see docs/architecture.md):

- ``content``   sniff what a file is from its bytes, load it safely
- ``signals``   one module per signal type (pdq, vpdq, tmk, md5, sha256, url, text)
- ``banks``     named collections of known content with TVEC labels; import and export formats
- ``matching``  the PDQ index and the matcher that checks signals against every enabled bank
- ``storage``   SQLAlchemy models, Alembic migrations, sessions
- ``cli``       the ``bastion`` command
"""

__version__ = "0.1.0"
