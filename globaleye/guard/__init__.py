"""Safety against strangers: the key guard, connection limits, the limited HTTP site, the TLS profile, the operator guard."""
