"""Hash exchanges behind one interface (base.Exchange): the forum hub, ThreatExchange, Tech Against Terrorism,
files in their formats. See base.py."""
