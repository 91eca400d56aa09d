"""The industry forum: a hub where member platforms share hashes (never content) with labels, feedback and an
incident protocol, and the member side that joins a hub as an exchange of an organisation.

- :mod:`bastion.forum.signing`  Ed25519 over canonical JSON: members sign, the hub and members verify
- :mod:`bastion.forum.hub`      HubService: members, contributions, feedback, consensus, retractions, incidents, feed
- :mod:`bastion.forum.api`      the hub's own FastAPI app (``bastion forum serve``)
- :mod:`bastion.forum.exchange` ForumExchange: a hub behind :class:`bastion.exchanges.base.Exchange`
- :mod:`bastion.forum.member`   join a hub, share banks with it
- :mod:`bastion.forum.sync`     the member's sync: pull deltas by cursor, push shared hashes, send review feedback
- :mod:`bastion.forum.incidents` rescans recent uploads against incident hashes (new decision versions)

See docs/forum.md.
"""
