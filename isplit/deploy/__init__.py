"""Running a split for real: export of the two halves (:mod:`.export`), the wire protocol,
the server and the device client."""
