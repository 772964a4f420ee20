"""Pure wire codecs of the device protocols: no I/O, bytes in, attrs objects out."""
