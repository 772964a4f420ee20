"""The camera simulator: the device side of the same protocols, for demos, tests and load."""
