"""The ``twistd globaleye`` plugin: runs the roles named in the configuration file."""

from twisted.application.service import ServiceMaker

globaleye = ServiceMaker(
    "GlobalEye",
    "globaleye.platform.tap",
    "Mobile Store-Watch platform: device gateway, registration, STUN/TURN",
    "globaleye",
)
