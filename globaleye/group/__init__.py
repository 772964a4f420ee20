"""Province ↔ group (§6): the group platform's side and the province's client of its group."""
