"""Compliance with the law: what authorities send and what the platform owes them and its users.

- authorities, removal orders and referrals (TCO Art. 3 and 4), threat-to-life escalations (TCO Art. 14(5), DSA
  Art. 18): :mod:`.authorities`, :mod:`.orders`, :mod:`.escalation`, :mod:`.smtp`;
- preservation (TCO Art. 6), users' rights (statements of reasons, notices, complaints) and transparency reports:
  the modules of the rights work beside them.

Services here write through the same paths as everything else (decisions, audit log, webhook outbox) and never
import the HTTP, console or CLI layers.
"""
