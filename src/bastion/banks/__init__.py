"""Banks: named collections of known content (their signals) with TVEC labels, and the designation lists behind them.

Use :class:`bastion.banks.service.BankService`; labels follow :mod:`bastion.banks.taxonomy`, entity names resolve
through :mod:`bastion.banks.entities`, files come and go through :mod:`bastion.banks.formats`.
"""
