"""txturn: a standalone Twisted STUN/TURN library (codec in ``txturn.stun``).

It deliberately does not import ``globaleye``: the platform depends on it, not the
other way round.
"""

__all__: list[str] = []
