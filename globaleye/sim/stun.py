"""The camera's STUN query (§15 step 3): its address as the platform's STUN server sees it.

The retransmitting Binding client is txturn's (:mod:`txturn.stunclient`); this module
keeps the simulator's names for it (the simulated camera's NAT helpers import them).
"""

from __future__ import annotations

from txturn.stunclient import BindingTransactions, is_stun, mapped_address

__all__ = ["BindingTransactions", "is_stun", "mapped_address"]
