"""The camera simulator: the device side of the same protocols, for demos, tests and load."""



def main() -> None:
    """The ``globaleye-sim`` command (:func:`globaleye.util.extras.run_with_extra`)."""
    from globaleye.util.extras import run_with_extra

    run_with_extra("globaleye.sim.__main__", "globaleye-sim", "sim")
