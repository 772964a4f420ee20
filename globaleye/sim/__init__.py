"""The camera simulator: the device side of the same protocols, for demos, tests and load."""



def main() -> None:
    """The ``globaleye-sim`` command (:func:`globaleye.extras.run_with_extra`)."""
    from globaleye.extras import run_with_extra

    run_with_extra("globaleye.sim.__main__", "globaleye-sim", "sim")
