"""The client API's faces (§8, §9.1): the SOAP codec and resource, and the SOAP mapping onto the application layer."""
