"""The client API of spec §8/§9.1 (and the province↔group calls of §6) as SOAP 1.1 document/literal over HTTP.

The spec says "Web Service (SOAP/HTTP)" and gives only parameter tables, so the
element names, the namespaces and the WSDL are ours (docs/protocol.md, "Client API
(SOAP)").  Layers, from pure to effectful:

* :mod:`globaleye.api.soap.envelope`: bytes <-> envelope, safely; SOAP Faults.
* :mod:`globaleye.api.soap.operations`: one declaration per operation, from which the
  request decoder, the response encoder and the WSDL/XSD are all derived, so they
  cannot disagree.
* :mod:`globaleye.api.soap.wsdl`: the WSDL 1.1 document.
* :mod:`globaleye.api.soap.client`: the calling side (a province calling its group, §6).
* :mod:`globaleye.api.soap.resource`: the twisted.web resource (POST envelopes, GET ?wsdl).

No SOAP framework is used: spyne's Twisted transport is broken with current Twisted
and spyne does not run on Python 3.12+; the few hundred lines here are easier to
keep safe than a dependency we would have to patch.
"""
